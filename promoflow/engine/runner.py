"""The engine: walk a promotion's steps from where its records say it is, until it waits, must retry, or ends.

Nothing here waits or sleeps: a step that must wait returns `Wait` and the driver decides how (a Prefect
flow suspends its run; a terminal pauses; a unit test moves its clock). Every step's intent is recorded
before it runs and its outcome after, so a driver killed at any moment resumes at the step it was in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from promoflow import failpoints
from promoflow.engine.context import Context
from promoflow.engine.results import Done, RetryAfter, StepResult, Terminal, Wait, Waiting, expiry
from promoflow.engine.states import PromotionState
from promoflow.engine.steps import ORDER, Step, load
from promoflow.errors import PromoflowError, TerminalError, TransientError
from promoflow.forges import Request
from promoflow.records import Promotion

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
    row = db.begin_step(ctx.promotion_id, step.name, at=ctx.clock.now())
    ctx.started = row.started_at
    try:
        result = step.run(ctx)
    except TransientError as error:
        result = RetryAfter(str(error), error.retry_after)
    except TerminalError as error:
        result = Terminal(str(error))
    except BaseException as error:  # a bug: recorded, then raised for the driver to fail loudly
        db.end_step(row, "failed", error=f"unexpected {type(error).__name__}: {error}")
        raise
    if isinstance(result, Wait) and (expired := expiry(ctx.promotion_id, result.waiting, ctx.clock.now())):
        result = expired
    if isinstance(result, Done):
        db.end_step(row, "succeeded", detail=result.output.model_dump(mode="json"))
        failpoints.hit(f"recorded-{step.name}")  # a process killed between steps
        if ctx.promotion.waiting is not None:
            db.update_promotion(ctx.promotion_id, waiting=None)
    elif isinstance(result, Wait):
        waiting = result.waiting
        before = ctx.promotion.waiting
        if before is not None and (kept := Waiting.model_validate_json(before)).step == step.name:
            waiting = waiting.model_copy(update={"suspend_key": kept.suspend_key})  # the driver's, across looks
            result = Wait(waiting)
        db.wait_step(row, waiting.model_dump(mode="json", exclude={"suspend_key"}))
        db.update_promotion(ctx.promotion_id, waiting=waiting.model_dump_json())
    else:
        seen = result.seen.model_dump(mode="json") if isinstance(result, Terminal) and result.seen else None
        db.end_step(row, "failed", detail=seen, error=result.message)
    return result


def advance(ctx: Context, run: RunStep = run_step, steps: Mapping[str, Step] | None = None) -> StepResult | None:
    """Take steps until one waits, must be retried or ends the promotion; None when every step is done.

    `run` runs one step (the flows pass one that runs it as a Prefect task). A terminal result ends the
    promotion in its state here; what follows (a rollback, a comment on the request) is the driver's.
    """
    if PromotionState(ctx.promotion.state).ended:  # maybe by another process (a rollback, the reconcile)
        return outcome(ctx.promotion)
    while (step := next_step(ctx, steps)) is not None:
        result = run(step, ctx)
        if isinstance(result, Terminal):
            end(ctx, result)
            return result
        if not isinstance(result, Done):
            return result
    return None


def outcome(promotion: Promotion) -> Terminal | None:
    """How an ended promotion ended: None if it succeeded."""
    state = PromotionState(promotion.state)
    if state == PromotionState.SUCCEEDED:
        return None
    return Terminal(promotion.error or f"promotion {promotion.id} {state.words}", state)


_ENDED_AS = {
    PromotionState.REJECTED: "was rejected",
    PromotionState.EXPIRED: "expired",
    PromotionState.SUPERSEDED: "was superseded",
    PromotionState.CANCELLED: "was cancelled",
}
# Requests that will never be merged are closed; a rejected or failed one stays open for people to read.
_CLOSES = frozenset({PromotionState.EXPIRED, PromotionState.SUPERSEDED, PromotionState.CANCELLED})


def end(ctx: Context, result: Terminal) -> None:
    """End the promotion as `result` says and tell the forge (a failed status, a comment; best effort)."""
    ctx.move(result.state, error=result.message, waiting=None)
    verb = _ENDED_AS.get(result.state, "failed verification" if result.roll_back else "failed")
    tell_forge(ctx, f"Promotion {ctx.promotion_id} {verb}: {result.message}", close=result.state in _CLOSES)


def tell_forge(ctx: Context, text: str, *, close: bool = False) -> None:
    """A failure status on the promotion's merged commit, and `text` on its request (closing it if `close`).
    Best effort: the outcome is recorded already; a forge outage must not change it."""
    request = ctx.output("open_request", Request)
    forge = ctx.forge
    try:
        forge.report(ctx.promotion, request, "failure", text)
        if request is not None:
            if close:
                forge.close(request, text)
            else:
                forge.comment(request, text)
    except PromoflowError as error:
        ctx.log.warning("Could not tell the forge about promotion %s: %s", ctx.promotion_id, error)
