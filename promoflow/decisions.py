"""A person's decision on a waiting promotion, from the Prefect UI's form or the CLI: recorded first, with its
source and whether the environment's policy counts it; then the promotion's run is told to look again. The record
is what counts: a run that was busy, or gone, finds it.

No Prefect import on the common path of `promoflow approve` (its run is suspended): a second of the command's
time, from the approval to the promotion going on (bench/promotion).
"""

from __future__ import annotations

from typing import Literal

from promoflow.approvals import judge
from promoflow.errors import TerminalError
from promoflow.prefect_api import wake_if_suspended
from promoflow.project import Project
from promoflow.promotion import require_decidable
from promoflow.records import Approval


def record(
    project: Project,
    promotion_id: int,
    approver: str,
    decision: str,
    comment: str,
    source: Literal["ui", "cli"],
) -> Approval:
    """Record a decision with its source, counted or not as the environment's policy says. From the CLI, a decision
    the policy would not count is refused and nothing is recorded (the person learns why at once); the UI's form
    cannot answer back, so its decision is kept uncounted and the run asks again."""
    db = project.db
    promotion = db.promotion(promotion_id)
    policy = project.config.environment(promotion.environment).approval
    if source == "cli":
        require_decidable(promotion)
    verdict = judge(policy, promotion.requested_by, approver, source, decision, db.approvals(promotion_id))
    if source == "cli" and not verdict.counted:
        raise TerminalError(f"{approver} cannot decide promotion {promotion_id}: {verdict.reason}.")
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


def send(project: Project, promotion_id: int, approver: str, decision: str, comment: str) -> tuple[Approval, str]:
    """The CLI's decision: check the policy (a refusal changes nothing), record it, wake the promotion's run (or,
    when its run is gone and nothing is served to take it, carry the promotion on in this process). Returns the
    decision and what happened to the run. Call after `promoflow.server.connect`."""
    approval = record(project, promotion_id, approver, decision, comment, "cli")
    woken = wake_if_suspended(project, promotion_id)
    if woken is None:
        from promoflow import server

        server.without_heartbeat()  # the promotion may carry on in this process
        from flows.resume import wake

        woken = wake(project, promotion_id, here=True)
    return approval, woken
