"""Drive one promotion's engine inside a Prefect flow run.

Steps run as tasks (tasks/steps.py). When the engine says the promotion waits:
- in a run started from a deployment (served or on a worker), a wait for people or for a time further away
  than a few seconds suspends the run: its process ends and holds nothing. The UI's Resume form, `promoflow
  approve`, a GitHub event or the reconcile deployment puts the run back on the schedule; it starts again
  from the top and the engine carries on from the records.
- in a terminal (`promoflow promote`), the run pauses in place with the same form and looks again when a
  decision is recorded, the form is answered, an event arrives, or the wait's time comes.
Cancelling the run (Prefect UI, `prefect flow-run cancel`) cancels the promotion.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.flow_runs import suspend_flow_run
from prefect.input import keyset_from_base_key, keyset_from_paused_state
from prefect.input.run_input import Keyset
from prefect.states import Paused, Running, State
from prefect.utilities.engine import propose_state_sync
from pydantic import ValidationError

from flows.approval import ApprovalForm, receive
from promoflow import metric_checks
from promoflow.engine.context import Context
from promoflow.engine.results import Terminal, Wait, Waiting
from promoflow.engine.runner import advance, end
from promoflow.engine.states import PromotionState
from promoflow.forges import forge_for
from promoflow.records import Database
from tasks._shared import project
from tasks.steps import PrefectEvents, as_task

# A wait this close is waited out in the process; a longer one (or one for people) suspends a deployment's run.
SUSPEND_BEYOND_SECONDS = 10.0
LOOK_SECONDS = 1.0


def drive(config: str, promotion_id: int, hold_waits: bool = True) -> Terminal | Wait | None:
    """Run the promotion's steps until it ends; None when it succeeded, else how it ended. With `hold_waits` False
    a wait ends the drive too, returned (a group's member promoted beside others: its wait is held after theirs)."""
    p = project(config)
    ctx = Context(p, promotion_id, events=PrefectEvents(p), log=get_run_logger())
    run = as_task(config)
    while True:
        if _cancelling() and not PromotionState(ctx.promotion.state).ended:  # ended elsewhere: advance says how
            cancelled = Terminal("its run was cancelled in Prefect", PromotionState.CANCELLED)
            end(ctx, cancelled)
            publish(ctx)
            return cancelled
        # Before the steps look: a decision recorded while they look is a change the wait must not miss.
        seen = _snapshot(p.db, promotion_id)
        result = advance(ctx, run=run)
        publish(ctx)
        if not isinstance(result, Wait):
            return cast("Terminal | None", result)  # as_task turns a last RetryAfter into a Terminal
        if not hold_waits:
            return result
        hold(ctx, result.waiting, seen)


def stop(config: str, promotion_id: int, why: str, merged: bool) -> None:
    """End a promotion that waits: cancelled, or failed once its change is merged (a rollback undoes it then)."""
    p = project(config)
    ctx = Context(p, promotion_id, events=PrefectEvents(p), log=get_run_logger())
    p.db.interrupt_steps(promotion_id, why, ("running", "waiting"))
    end(ctx, Terminal(why, PromotionState.FAILED if merged else PromotionState.CANCELLED))
    publish(ctx)


def hold(ctx: Context, waiting: Waiting, seen: tuple[object, ...]) -> None:
    """Wait until something may have changed for this promotion (returns), or suspend the run (never returns)."""
    run = _flow_run()
    now = datetime.now(UTC)
    far = waiting.wake_at is None or waiting.wake_at - now > timedelta(seconds=SUSPEND_BEYOND_SECONDS)
    if run.deployment_id is not None and (waiting.form or far):
        _suspend(ctx, waiting)
    else:
        _wait_here(ctx, waiting, seen)


def _suspend(ctx: Context, waiting: Waiting) -> None:
    db = ctx.project.db
    if waiting.suspend_key:  # this run was suspended before: was it resumed with an answer?
        answer = _answer(keyset_from_base_key(f"suspended-{waiting.suspend_key}"))
        db.update_promotion(
            ctx.promotion_id, waiting=waiting.model_copy(update={"suspend_key": None}).model_dump_json()
        )
        if answer is not None:
            _record(ctx, answer)
            return
    key = uuid.uuid4().hex
    db.update_promotion(ctx.promotion_id, waiting=waiting.model_copy(update={"suspend_key": key}).model_dump_json())
    get_run_logger().info(
        "Promotion %s waits for %s: suspending this run (no process waits)", ctx.promotion_id, waiting.summary
    )
    if waiting.form:
        suspend_flow_run(wait_for_input=_form(ctx, waiting), key=key)
    else:
        suspend_flow_run(key=key)


def _wait_here(ctx: Context, waiting: Waiting, before: tuple[object, ...]) -> None:
    """Look again when a decision is recorded, the form is answered, the run is cancelled, an event of the forge
    arrives, or the wait's time comes."""
    db = ctx.project.db
    until = min(t for t in (waiting.wake_at, waiting.expires_at, _far_future()) if t is not None)
    forge = forge_for(ctx.project)
    events = Wake(forge.wake_events, forge.wake_resources)
    run_id = _flow_run().id
    keyset = _pause(run_id, ctx, waiting) if waiting.form else None
    if waiting.form:
        get_run_logger().info(
            "Promotion %s waits for %s: %s.",
            ctx.promotion_id,
            waiting.summary,
            " or ".join(waiting.decide) or "see the records",
        )
    with get_client(sync_client=True) as client:
        while True:
            time.sleep(LOOK_SECONDS)
            state = client.read_flow_run(run_id).state
            if keyset is not None and state is not None and state.is_running():
                answer = _answer(keyset)  # resumed: from the UI's form, or by us below
                if answer is not None:
                    _record(ctx, answer)
                return
            if state is not None and (state.is_cancelling() or state.is_cancelled()):
                return
            if _snapshot(db, ctx.promotion_id) != before or datetime.now(UTC) >= until or events.arrived():
                break
        if keyset is not None:
            # Nobody answered the form: run on, to look again. `force`: the pause has not expired.
            client.set_flow_run_state(run_id, Running(), force=True)
    if keyset is not None and (answer := _answer(keyset)) is not None:  # answered just before the run went on
        _record(ctx, answer)


def _pause(run_id: uuid.UUID, ctx: Context, waiting: Waiting) -> Keyset:
    """Pause the run in place with the approval form (the UI shows Resume); returns the form's keyset."""
    paused: State[Any] = Paused(reschedule=False, pause_key=uuid.uuid4().hex)
    keyset = keyset_from_paused_state(paused)
    paused.state_details.run_input_keyset = {str(k): v for k, v in keyset.items()}
    with get_client(sync_client=True) as client:
        state = propose_state_sync(client, paused, flow_run_id=run_id)
    if not state.is_paused():
        raise RuntimeError(f"Prefect refused to pause the run for approval ({state.type.value})")
    _form(ctx, waiting).save(keyset)
    return keyset


def _form(ctx: Context, waiting: Waiting) -> type[ApprovalForm]:
    from promoflow.forges import Request

    request = ctx.output("open_request", Request)
    description = (request.description if request else "") + f"\n\n**Waiting for:** {waiting.summary}."
    if waiting.approvers:
        description += f" Allowed approvers: {', '.join(waiting.approvers)}."
    return ApprovalForm.with_initial_data(description=description, decision="approve")


def _answer(keyset: Keyset) -> ApprovalForm | None:
    try:
        return cast(ApprovalForm, ApprovalForm.load(keyset))
    except ValidationError:  # no answer: the form's required fields are empty
        return None


def _record(ctx: Context, answer: ApprovalForm) -> None:
    promotion = ctx.promotion
    policy = ctx.project.config.environment(promotion.environment).approval
    receive(ctx.project, ctx.promotion_id, policy, answer.approver, answer.decision, answer.comment)


def _snapshot(db: Database, promotion_id: int) -> tuple[object, ...]:
    """What changes when someone decides (on any member's promotion, for a bundle's one request), freezes or
    unfreezes its environment, or another process ends the promotion (not the steps' own moves)."""
    promotion = db.promotion(promotion_id)
    freezes = [(f.id, f.lifted_at) for f in db.freezes(promotion.environment)]
    return PromotionState(promotion.state).ended, len(db.request_approvals(promotion)), freezes


def _far_future() -> datetime:
    return datetime.now(UTC) + timedelta(days=3650)


def _flow_run() -> Any:
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    return context.flow_run


def _cancelling() -> bool:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(_flow_run().id).state
    return state is not None and (state.is_cancelling() or state.is_cancelled())


class Wake:
    """Notices the events a forge's waits wake on (e.g. the webhook receiver's GitHub reviews of this repository)
    between looks."""

    def __init__(self, prefixes: tuple[str, ...], resources: tuple[str, ...] = ()) -> None:
        self.prefixes, self.resources = list(prefixes), list(resources)
        self.since = datetime.now(UTC)

    def arrived(self) -> bool:
        if not self.prefixes:
            return False
        from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

        event_filter = EventFilter(
            event=EventNameFilter(prefix=self.prefixes),
            resource=EventResourceFilter(id=self.resources) if self.resources else None,
            occurred=EventOccurredFilter(since=self.since),
        )
        try:
            with get_client(sync_client=True) as client:
                page = client.read_events(filter=event_filter, limit=1)
        except Exception:  # events are a shortcut; the wait's own time still comes
            return False
        if page.events:
            self.since = max(e.occurred for e in page.events)
            return True
        return False


def publish(ctx: Context) -> None:
    """The promotion's artifact (key `promotion-<id>`): its request, where it stands, decisions, the looks of its
    metric checks, step timings."""
    from promoflow.forges import Request

    db = ctx.project.db
    promotion = ctx.promotion
    request = ctx.output("open_request", Request)
    lines = [request.description if request else f"## Promotion {promotion.id}", ""]
    lines.append(
        f"**State:** {PromotionState(promotion.state).words}" + (f" — {promotion.error}" if promotion.error else "")
    )
    if promotion.waiting:
        waiting = Waiting.model_validate_json(promotion.waiting)
        decide = " or ".join(waiting.decide)
        lines.append(f"**Waiting for:** {waiting.summary} (since {waiting.since:%Y-%m-%d %H:%M} UTC). {decide}")
    decisions = db.approvals(ctx.promotion_id)
    if decisions:
        lines += ["", "| decision | by | from | counted | why |", "|---|---|---|---|---|"]
        lines += [f"| {a.decision} | {a.approver} | {a.source} | {a.counted} | {a.reason} |" for a in decisions]
    samples = db.metric_samples(ctx.promotion_id)
    if samples:
        lines += ["", *metric_checks.markdown(samples)]
    lines += ["", "| step | attempt | outcome | took |", "|---|---|---|---|"]
    for step in db.steps(ctx.promotion_id):
        took = "" if step.duration_seconds is None else f"{step.duration_seconds:.2f} s"
        lines.append(f"| {step.name} | {step.attempt} | {step.outcome} | {took} |")
    create_markdown_artifact(
        key=f"promotion-{promotion.id}", markdown="\n".join(lines), description=request.title if request else None
    )
