"""The approval wait: a paused run with a form (Prefect UI), resumed by a click or by the CLI.

Every decision is recorded with its source; the environment's policy decides what counts.
"""

from __future__ import annotations

import time
from typing import Literal
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.context import get_run_context
from prefect.exceptions import ObjectNotFound
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.utilities.asyncutils import run_coro_as_sync
from pydantic import Field

from promoflow.approvals import judge, tally
from promoflow.config import ApprovalPolicy
from promoflow.errors import PromoflowError, TerminalError, TransientError
from promoflow.project import Project
from promoflow.promotion import require_decidable
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
            try:
                answer = pause_flow_run(
                    wait_for_input=form, timeout=policy.timeout_seconds, poll_interval=PAUSE_POLL_SECONDS
                )
            except Exception as error:
                if type(error).__name__ == "FlowPauseTimeout":
                    raise TerminalError(
                        f"No decision on promotion {promotion_id} within {policy.timeout_seconds} s; request it again."
                    ) from None
                raise
            decision = receive(project, promotion_id, policy, answer.approver, answer.decision, answer.comment)
            detail.update(
                approver=decision.approver,
                decision=decision.decision,
                source=decision.source,
                counted=decision.counted,
                reason=decision.reason,
            )


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
