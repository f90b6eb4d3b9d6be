"""Decisions on waiting promotions: the approval form of a paused or suspended run (Prefect UI: Resume), and
the CLI's `approve` / `reject`.

Every decision is recorded first, with its source and whether the environment's policy counts it; then the
promotion's run is told to look again. The record is what counts: a run that was busy, or gone, finds it.
"""

from __future__ import annotations

from typing import Literal

from prefect.input import RunInput
from pydantic import Field

from promoflow.approvals import judge
from promoflow.config import ApprovalPolicy
from promoflow.errors import TerminalError
from promoflow.project import Project
from promoflow.promotion import require_decidable
from promoflow.records import Approval


class ApprovalForm(RunInput):
    """The form a person fills in on the paused run (Prefect UI: Resume)."""

    decision: Literal["approve", "reject"] = Field("approve", description="Approve or reject the promotion.")
    approver: str = Field(description="Your name, as listed in the environment's approvers.")
    comment: str = Field("", description="Why (kept in the records).")


def receive(
    project: Project, promotion_id: int, policy: ApprovalPolicy, approver: str, decision: str, comment: str
) -> Approval:
    """Record a decision from the UI's form, counted or not as the policy says."""
    db = project.db
    verdict = judge(
        policy, db.promotion(promotion_id).requested_by, approver, "ui", decision, db.approvals(promotion_id)
    )
    return db.add_approval(
        Approval(
            promotion_id=promotion_id,
            approver=approver,
            decision=decision,
            source="ui",
            comment=comment,
            counted=verdict.counted,
            reason=verdict.reason,
        )
    )


def send_decision(
    project: Project, promotion_id: int, approver: str, decision: Literal["approve", "reject"], comment: str
) -> tuple[Approval, str]:
    """The CLI side: check the policy (a refusal changes nothing), record the decision, wake the promotion's run
    (or, when its run is gone and nothing is served to take it, carry the promotion on in this process).

    Returns the decision and what happened to the run.
    """
    from flows.resume import wake

    db = project.db
    promotion = db.promotion(promotion_id)
    require_decidable(promotion)
    policy = project.config.environment(promotion.environment).approval
    verdict = judge(policy, promotion.requested_by, approver, "cli", decision, db.approvals(promotion_id))
    if not verdict.counted:
        raise TerminalError(f"{approver} cannot decide promotion {promotion_id}: {verdict.reason}.")
    approval = db.add_approval(
        Approval(
            promotion_id=promotion_id,
            approver=approver,
            decision=decision,
            source="cli",
            comment=comment,
            counted=True,
            reason=verdict.reason,
        )
    )
    return approval, wake(project, promotion_id, here=True)
