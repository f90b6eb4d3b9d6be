"""The approval wait: a paused run with a form (Prefect UI), resumed by a click or by the CLI.

Every decision is recorded with its source; the environment's policy decides what counts. A run cancelled while
it waits (in the UI, or by a rollback that took the environment) ends the wait.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, Literal, cast
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.context import FlowRunContext, get_run_context
from prefect.exceptions import Abort, ObjectNotFound
from prefect.input import RunInput, keyset_from_paused_state
from prefect.input.run_input import Keyset
from prefect.states import Paused, Running, State
from prefect.utilities.asyncutils import run_coro_as_sync
from prefect.utilities.engine import propose_state_sync
from pydantic import Field, ValidationError

from promoflow.approvals import judge, tally
from promoflow.config import ApprovalPolicy
from promoflow.errors import PromoflowError, TerminalError, TransientError
from promoflow.project import Project
from promoflow.promotion import require_decidable, superseded
from promoflow.records import Approval

PAUSE_POLL_SECONDS = 1


class ApprovalRejected(TerminalError):
    """Someone allowed to decide rejected the promotion."""


class ApprovalForm(RunInput):
    """The form a person fills in on the paused run (Prefect UI: Resume)."""

    decision: Literal["approve", "reject"] = Field("approve", description="Approve or reject the promotion.")
    approver: str = Field(description="Your name, as listed in the environment's approvers.")
    comment: str = Field("", description="Why (kept in the records).")


def await_approvals(project: Project, promotion_id: int, policy: ApprovalPolicy, description: str) -> list[str]:
    """Pause until the policy's quorum is met; return the counted approvers."""
    db = project.db
    logger = get_run_logger()
    deadline = time.monotonic() + policy.timeout_seconds
    while True:
        count = tally(policy, db.approvals(promotion_id))  # type: ignore[arg-type]
        if count.outcome == "rejected":
            raise ApprovalRejected(f"Promotion {promotion_id} was rejected by {count.rejected_by}.")
        if count.outcome == "approved":
            db.update_promotion(promotion_id, state="approved")
            return list(count.approvers)
        db.update_promotion(promotion_id, state="awaiting_approval")
        logger.info(
            "Promotion %s needs %s more approval(s): click Resume on this run in the Prefect UI, "
            "or run `promoflow approve %s`.",
            promotion_id,
            count.missing,
            promotion_id,
        )
        with db.step(promotion_id, "await_approval", missing=count.missing) as detail:
            form = ApprovalForm.with_initial_data(
                description=description
                + f"\n\n**{count.missing} more approval(s) needed.** "
                + (f"Allowed approvers: {', '.join(policy.approvers)}." if policy.approvers else ""),
                decision="approve",
            )
            answer = pause_for_decision(project, promotion_id, form, deadline)
            if answer is None:
                raise TerminalError(
                    f"No decision on promotion {promotion_id} within {policy.timeout_seconds} s; request it again."
                )
            decision = receive(project, promotion_id, policy, answer.approver, answer.decision, answer.comment)
            detail.update(
                approver=decision.approver,
                decision=decision.decision,
                source=decision.source,
                counted=decision.counted,
                reason=decision.reason,
            )


def pause_for_decision(
    project: Project,
    promotion_id: int,
    form: type[RunInput],
    deadline: float,
    until: float | None = None,
    wake: Callable[[], bool] | None = None,
) -> ApprovalForm | None:
    """Pause this flow run with `form` (the UI's Resume, `promoflow approve`) until a person answers: their
    decision. At `until` (default: `deadline`, both `time.monotonic()`), or when `wake()` says something else
    happened, the run goes on without one: None. A run cancelled meanwhile raises: `Superseded` when a rollback
    took the environment, else a terminal error."""
    context = FlowRunContext.get()
    assert context is not None and context.flow_run is not None
    run_id = context.flow_run.id
    paused: State[Any] = Paused(
        timeout_seconds=max(int(deadline - time.monotonic()), 1), reschedule=False, pause_key=uuid.uuid4().hex
    )
    keyset = keyset_from_paused_state(paused)
    paused.state_details.run_input_keyset = {str(k): v for k, v in keyset.items()}
    until = deadline if until is None else min(until, deadline)
    with get_client(sync_client=True) as client:
        try:
            state = propose_state_sync(client, paused, flow_run_id=run_id)
        except Abort as error:  # the run ended meanwhile: cancelled before it paused
            check_wanted(project, promotion_id)
            raise TerminalError(f"Prefect refused to pause the run for approval ({error}).") from None
        if not state.is_paused():
            raise TerminalError(f"Prefect refused to pause the run for approval ({state.type.value}).")
        form.save(keyset)
        while True:
            time.sleep(PAUSE_POLL_SECONDS)
            run: Any = client.read_flow_run(run_id)
            if run.state is not None and run.state.is_running():
                return _answer(keyset)
            if run.state is not None and (run.state.is_cancelling() or run.state.is_final()):
                check_wanted(project, promotion_id)
                raise TerminalError(
                    f"The run waiting on promotion {promotion_id} was cancelled ({run.state.type.value}); "
                    "nothing was merged: request the promotion again."
                )
            if time.monotonic() >= until or (wake is not None and wake()):
                break
        # Nobody answered: run on. `force`: the pause has not expired yet.
        result: Any = client.set_flow_run_state(run_id, Running(), force=True)
        if result.state is not None and not result.state.is_running():
            raise TerminalError(f"Prefect did not let the run continue ({result.state.type.value}).")
    try:  # someone may have answered just before the run went on
        return _answer(keyset)
    except ValidationError:  # no answer: the form's required fields are empty
        return None


def check_wanted(project: Project, promotion_id: int) -> None:
    """Raise `Superseded` if a rollback took this promotion's environment while it waited."""
    promotion = project.db.promotion(promotion_id)
    if promotion.state == "superseded":
        raise superseded(promotion)


def _answer(keyset: Keyset) -> ApprovalForm:
    return cast(ApprovalForm, ApprovalForm.load(keyset))  # a sync caller gets the form, not a coroutine


def receive(
    project: Project, promotion_id: int, policy: ApprovalPolicy, approver: str, decision: str, comment: str
) -> Approval:
    """Record one decision that reached the flow: a CLI decision was recorded on its way; else it is the UI's."""
    db = project.db
    requester = db.promotion(promotion_id).requested_by
    pending = db.pending_approval(promotion_id, approver, decision)
    source = pending.source if pending else "ui"
    verdict = judge(policy, requester, approver, source, decision, db.approvals(promotion_id))
    if pending and pending.id is not None:
        db.update_approval(pending.id, verdict.counted, verdict.reason)
        pending.counted, pending.reason = verdict.counted, verdict.reason
        return pending
    return db.add_approval(
        Approval(
            promotion_id=promotion_id,
            approver=approver,
            decision=decision,
            source=source,
            comment=comment,
            counted=verdict.counted,
            reason=verdict.reason,
        )
    )


def send_decision(
    project: Project,
    promotion_id: int,
    approver: str,
    decision: Literal["approve", "reject"],
    comment: str,
    wait_seconds: float = 15,
) -> Approval:
    """The CLI side: check the policy first (a refusal changes nothing), record, resume the waiting run."""
    db = project.db
    promotion = db.promotion(promotion_id)
    policy = project.config.environment(promotion.environment).approval
    verdict = judge(policy, promotion.requested_by, approver, "cli", decision, db.approvals(promotion_id))
    if not verdict.counted:
        raise TerminalError(f"{approver} cannot decide promotion {promotion_id}: {verdict.reason}.")
    flow_run_id = _wait_until_paused(project, promotion_id, wait_seconds)
    approval = db.add_approval(
        Approval(promotion_id=promotion_id, approver=approver, decision=decision, source="cli", comment=comment)
    )
    assert approval.id is not None
    try:
        run_coro_as_sync(_resume(flow_run_id, {"decision": decision, "approver": approver, "comment": comment}))
    except Exception as error:
        db.update_approval(approval.id, False, f"not delivered to the waiting run: {type(error).__name__}")
        raise TransientError(
            f"Could not hand the decision to the run waiting on promotion {promotion_id} "
            f"({type(error).__name__}): check the Prefect server is up and try again."
        ) from None
    return approval


def _wait_until_paused(project: Project, promotion_id: int, wait_seconds: float) -> UUID:
    deadline = time.monotonic() + wait_seconds
    while True:
        promotion = project.db.promotion(promotion_id)
        if promotion.state == "awaiting_approval" and promotion.flow_run_id:
            try:
                state = run_coro_as_sync(_flow_run_state(UUID(promotion.flow_run_id)))
            except Exception as error:  # the server is down or unreachable
                raise TransientError(
                    f"Cannot reach the Prefect server holding promotion {promotion_id}'s run "
                    f"({type(error).__name__}): start it with `promoflow server start` or set PREFECT_API_URL."
                ) from None
            if state == StateType.PAUSED:
                return UUID(promotion.flow_run_id)
        require_decidable(promotion)
        if time.monotonic() > deadline:
            raise TerminalError(
                f"Promotion {promotion_id} has not started waiting for approval yet; try again in a moment."
            )
        time.sleep(0.3)


async def _flow_run_state(flow_run_id: UUID) -> StateType | None:
    async with get_client() as client:
        try:
            run = await client.read_flow_run(flow_run_id)
        except ObjectNotFound:
            return None
        return run.state.type if run.state else None


async def _resume(flow_run_id: UUID, run_input: dict[str, str]) -> None:
    async with get_client() as client:
        result = await client.resume_flow_run(flow_run_id, run_input=run_input)
        if result.status.value != "ACCEPT":
            raise PromoflowError(f"the server refused: {result.details}")


def current_flow_run_id() -> str:
    context = get_run_context()
    return str(context.flow_run.id)  # type: ignore[union-attr]
