"""The approval wait of `forge: github`: reviews on the pull request are the approvals, required statuses and
check runs on its head are the gates.

promoflow looks at GitHub with a growing interval (up to `github.poll_seconds`) and at once when the webhook
receiver reports a review, status or check run of the repository. Where the environment's policy accepts
approvals from the Prefect UI or the CLI too, the run stays paused with the approval form meanwhile, and
those decisions count alongside the reviews. A counted change request blocks until it is dismissed or the
reviewer approves; a failing required check ends the promotion.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prefect import get_run_logger
from prefect.client.orchestration import get_client

from flows.approval import ApprovalForm, ApprovalRejected, check_wanted, pause_for_decision, receive
from promoflow.approvals import distinct
from promoflow.config import Environment, GitHub
from promoflow.errors import TerminalError
from promoflow.forges.github import EVENT_PREFIX, ForgeVerdict, GateStatus, ReviewDecision
from promoflow.project import Project
from promoflow.records import Approval, Database
from tasks._shared import pull_request

FIRST_POLL_SECONDS = 2.0


@dataclass
class Waiting:
    """Where the wait stands after one look at GitHub."""

    verdict: ForgeVerdict
    gates: GateStatus | None
    approvers: list[str]
    reasons: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not self.reasons


def await_reviews(project: Project, promotion_id: int, env: Environment, description: str) -> list[str]:
    """Wait until the pull request has its approvals and its checks pass on the head promoflow prepared; return
    the counted approvers."""
    github = project.config.repository.github
    assert github is not None
    db = project.db
    logger = get_run_logger()
    number = pull_request(db, promotion_id)
    promotion = db.promotion(promotion_id)
    policy = env.approval
    people = bool({"ui", "cli"} & set(policy.sources))  # else nobody answers a pause: just poll
    deadline = time.monotonic() + policy.timeout_seconds
    interval, said = FIRST_POLL_SECONDS, ""
    wake = _Wake(github)
    with db.step(promotion_id, "await_approval", forge="github", number=number) as detail:
        while True:
            now = _look(project, promotion_id, number, env)
            if now.verdict.head_sha != promotion.request_head:
                raise TerminalError(
                    f"Someone pushed to pull request #{number}: its head is {now.verdict.head_sha[:12]}, promoflow "
                    f"prepared {str(promotion.request_head)[:12]}. Close it and re-run the promotion."
                )
            detail.update(
                approvers=now.approvers,
                gates={g.context: g.state for g in now.gates.contexts} if now.gates else {},
                waiting_for=now.reasons,
            )
            if now.done:
                db.update_promotion(promotion_id, state="approved")
                logger.info("Pull request #%s approved by %s", number, ", ".join(now.approvers) or "policy")
                return now.approvers
            if time.monotonic() > deadline:
                raise TerminalError(
                    f"Pull request #{number} was not ready within {policy.timeout_seconds} s "
                    f"({'; '.join(now.reasons)}); request the promotion again."
                )
            db.update_promotion(promotion_id, state="awaiting_approval")
            message = "; ".join(now.reasons)
            if message != said:
                logger.info("Pull request #%s waits for %s", number, message)
                db.save_detail(promotion_id, "await_approval", detail)  # for `promoflow status`
                said = message
            if people:
                form = ApprovalForm.with_initial_data(
                    description=f"{description}\n\n**Waiting for:** {message}.", decision="approve"
                )
                answer = pause_for_decision(
                    project, promotion_id, form, deadline, time.monotonic() + interval, wake.arrived
                )
                if answer is not None:
                    receive(project, promotion_id, policy, answer.approver, answer.decision, answer.comment)
                    interval = FIRST_POLL_SECONDS
                    continue
            else:
                wake.sleep(interval, deadline)
                check_wanted(project, promotion_id)
            interval = min(interval * 1.5, github.poll_seconds)


def _look(project: Project, promotion_id: int, number: int, env: Environment) -> Waiting:
    """Reviews and UI/CLI decisions judged and recorded, checks read: what is still missing."""
    db = project.db
    policy = env.approval
    verdict = project.github.evaluate(number, policy, db.promotion(promotion_id).requested_by)
    _record_reviews(db, promotion_id, verdict.reviews)
    decisions = [a for a in db.approvals(promotion_id) if a.source != "forge" and a.counted]
    rejection = next((a for a in decisions if a.decision == "reject"), None)
    if rejection is not None:
        raise ApprovalRejected(f"Promotion {promotion_id} was rejected by {rejection.approver}.")
    approvers = distinct([*verdict.approvers, *(a.approver for a in decisions)])
    gates = project.github.gates(verdict.head_sha, env.checks) if env.checks else None
    if gates is not None and gates.outcome == "failed":
        failed = [g for g in gates.contexts if g.state == "failure"]
        raise TerminalError(
            f"Required check {failed[0].context} failed on pull request #{number}"
            + (f" ({failed[0].description})" if failed[0].description else "")
            + ": fix it and re-run the promotion."
        )
    now = Waiting(verdict, gates, approvers)
    if verdict.outcome == "rejected":
        now.reasons.append(f"{verdict.rejected_by}'s requested changes to be dismissed or approved")
    missing = policy.required - len(approvers)
    if missing > 0:
        now.reasons.append(f"{missing} more approval(s)")
    if gates is not None and gates.outcome == "pending":
        pending = [f"{g.context} ({g.state})" for g in gates.contexts if g.state != "success"]
        now.reasons.append("checks " + ", ".join(pending))
    return now


def _record_reviews(db: Database, promotion_id: int, reviews: tuple[ReviewDecision, ...]) -> None:
    """Each review once (keyed by its id), its verdict kept current: a later review can supersede it."""
    known = {a.comment: a for a in db.approvals(promotion_id) if a.source == "forge"}
    for review in reviews:
        key = f"review {review.review_id}"
        counted, reason = bool(review.counted), review.reason or ""
        seen = known.get(key)
        if seen is None:
            db.add_approval(
                Approval(
                    promotion_id=promotion_id,
                    approver=review.approver,
                    decision=review.decision if review.decision != "none" else review.state.lower(),
                    source="forge",
                    comment=key,
                    counted=counted,
                    reason=reason,
                )
            )
        elif (seen.counted, seen.reason) != (counted, reason) and seen.id is not None:
            db.update_approval(seen.id, counted, reason)


class _Wake:
    """Notices the webhook receiver's GitHub events for this repository (Prefect events) between polls."""

    def __init__(self, github: GitHub) -> None:
        self.resource = f"{EVENT_PREFIX}{github.repository}"
        self.since = datetime.now(UTC)

    def arrived(self) -> bool:
        from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

        event_filter = EventFilter(
            event=EventNameFilter(prefix=[EVENT_PREFIX]),
            resource=EventResourceFilter(id=[self.resource]),
            occurred=EventOccurredFilter(since=self.since),
        )
        try:
            with get_client(sync_client=True) as client:
                page = client.read_events(filter=event_filter, limit=1)
        except Exception:  # events are a shortcut; the poll still comes
            return False
        if page.events:
            self.since = max(e.occurred for e in page.events)
            return True
        return False

    def sleep(self, seconds: float, deadline: float) -> None:
        until = min(time.monotonic() + seconds, deadline)
        while time.monotonic() < until:
            if self.arrived():
                return
            time.sleep(1)
