"""The engine: walk a promotion's steps from where its records say it is, until it waits, must retry, or ends.

Nothing here waits or sleeps: a step that must wait returns `Wait` and the driver decides how (a Prefect
flow suspends its run; a terminal pauses; a unit test moves its clock). Every step's intent is recorded
before it runs and its outcome after, so a driver killed at any moment resumes at the step it was in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from promoflow.engine.context import Context
from promoflow.engine.results import Done, RetryAfter, StepResult, Terminal, Wait
from promoflow.engine.states import PromotionState
from promoflow.engine.steps import ORDER, Step, load
from promoflow.errors import TerminalError, TransientError

RunStep = Callable[[Step, Context], StepResult]


def next_step(ctx: Context, steps: Mapping[str, Step] | None = None) -> Step | None:
    """The first step still to take: it applies (which may depend on earlier outputs) and has not succeeded."""
    steps = steps or load()
    for name in ORDER:
        step = steps[name]
        if ctx.output(name, step.output) is None and step.applies(ctx):
            return step
    return None


def run_step(step: Step, ctx: Context) -> StepResult:
    """One step, recorded: intent before, outcome after. A waiting step keeps one open record across looks."""
    db = ctx.project.db
    row = db.begin_step(ctx.promotion_id, step.name)
    try:
        result = step.run(ctx)
    except TransientError as error:
        result = RetryAfter(str(error), error.retry_after)
    except TerminalError as error:
        result = Terminal(str(error))
    except BaseException as error:  # a bug: recorded, then raised for the driver to fail loudly
        db.end_step(row, "failed", error=f"unexpected {type(error).__name__}: {error}")
        raise
    if isinstance(result, Done):
        db.end_step(row, "succeeded", detail=result.output.model_dump(mode="json"))
        if ctx.promotion.waiting is not None:
            db.update_promotion(ctx.promotion_id, waiting=None)
    elif isinstance(result, Wait):
        db.wait_step(row, result.waiting.model_dump(mode="json"))
        db.update_promotion(ctx.promotion_id, waiting=result.waiting.model_dump_json())
    else:
        db.end_step(row, "failed", error=result.message)
    return result


def advance(ctx: Context, run: RunStep = run_step, steps: Mapping[str, Step] | None = None) -> StepResult | None:
    """Take steps until one waits, must be retried or ends the promotion; None when every step is done.

    `run` runs one step (the flows pass one that runs it as a Prefect task). A terminal result ends the
    promotion in its state here; what follows (a rollback, a comment on the request) is the driver's.
    """
    if PromotionState(ctx.promotion.state).ended:
        return None
    while (step := next_step(ctx, steps)) is not None:
        result = run(step, ctx)
        if isinstance(result, Terminal):
            ctx.move(result.state, error=result.message, waiting=None)
            return result
        if not isinstance(result, Done):
            return result
    return None
