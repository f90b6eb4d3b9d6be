"""Step: the approvals and checks an environment asks for, from people (Prefect UI form, CLI) and the forge
(pull request reviews, commit statuses and check runs), judged by the environment's policy.

It never waits itself: it records what it found and says what is missing. Any counted rejection from the UI
or the CLI ends the promotion; a forge's change request blocks until dismissed or superseded; a failing
required check ends it; a push to the request's branch ends it; the policy's timeout expires it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel

from promoflow import links
from promoflow.approvals import distinct, tally
from promoflow.engine.results import Done, Gate, StepResult, Terminal, Wait, Waiting
from promoflow.engine.states import PromotionState
from promoflow.engine.steps import register
from promoflow.engine.steps.prepare import changed
from promoflow.forges import Request, ReviewDecision
from promoflow.records import Approval, Database

if TYPE_CHECKING:
    from promoflow.engine.context import Context


class Approved(BaseModel):
    approvers: list[str]


@register
class AwaitApproval:
    name = "approval"
    output = Approved

    def applies(self, ctx: Context) -> bool:
        promotion = ctx.promotion
        env = ctx.project.config.environment(promotion.environment)
        wanted = promotion.kind != "rollback" or env.rollback.require_approval
        return changed(ctx) and wanted and bool(env.approval.required or env.checks)

    def run(self, ctx: Context) -> StepResult:
        p, promotion, pid = ctx.project, ctx.promotion, ctx.promotion_id
        env = p.config.environment(promotion.environment)
        policy = env.approval
        request = ctx.output("open_request", Request)
        assert request is not None
        forge = ctx.forge
        look = forge.look(request, policy, promotion.requested_by, env.checks)
        where = f"pull request #{request.number}" if request.number else f"branch {request.branch}"
        if look.head != request.head:
            return Terminal(
                f"Someone pushed to {where}: its head is {look.head[:12]}, promoflow prepared {request.head[:12]}. "
                "Close it and re-run the promotion."
            )
        _record_reviews(p.db, pid, look.reviews)
        # a bundle's one request: a decision on any member's promotion decides it for all of them
        people = [a for a in p.db.request_approvals(promotion) if a.source != "forge" and a.counted]
        rejection = next((a for a in people if a.decision == "reject"), None)
        if rejection is not None:
            return Terminal(f"Promotion {pid} was rejected by {rejection.approver}.", PromotionState.REJECTED)
        reviews = tally(policy, list(look.reviews))
        approvers = distinct([*reviews.approvers, *(a.approver for a in people)])  # people, not decisions
        missing: list[str] = []
        if reviews.outcome == "rejected":
            missing.append(f"{reviews.rejected_by}'s requested changes to be dismissed or approved")
        if len(approvers) < policy.required:
            missing.append(f"approvals {len(approvers)} of {policy.required}")
        pending: dict[str, str] = {}
        if look.checks is not None:
            failed = [g for g in look.checks.contexts if g.state == "failure"]
            if failed:
                return Terminal(
                    f"Required check {failed[0].context} failed on {where}"
                    + (f" ({failed[0].description})" if failed[0].description else "")
                    + ": fix it and re-run the promotion."
                )
            pending = {g.context: g.state for g in look.checks.contexts if g.state != "success"}
            if pending:
                missing.append("checks " + ", ".join(f"{context} ({state})" for context, state in pending.items()))
        if not missing:
            ctx.move(PromotionState.APPROVED)
            return Done(Approved(approvers=approvers))
        if policy.required and len(approvers) >= policy.required:  # say so while the rest is awaited
            missing.insert(0, f"approvals {len(approvers)} of {policy.required}")
        now = ctx.clock.now()
        since = ctx.started or now
        ctx.move(PromotionState.AWAITING_APPROVAL)
        people_decide = bool({"ui", "cli"} & set(policy.sources))
        poll = p.config.repository.github.poll_seconds if p.config.repository.github else None
        return Wait(
            Waiting(
                step=self.name,
                gate=Gate.APPROVAL
                if len(approvers) < policy.required or reviews.outcome == "rejected"
                else Gate.CHECKS,
                summary="; ".join(missing),
                since=since,
                wake_at=now + timedelta(seconds=poll) if poll and forge.wake_events else None,
                expires_at=since + timedelta(seconds=policy.timeout_seconds),
                expires_by=f"{env.name}'s approval timeout ({policy.timeout_seconds} s)",
                required=policy.required,
                approved_by=approvers,
                approvers=list(policy.approvers),
                checks=pending,
                decide=_decide(pid, request, list(policy.sources), links.run_url(promotion)),
                form=people_decide,
            )
        )


def _decide(pid: int, request: Request, sources: list[str], run: str | None) -> list[str]:
    """The commands and links that decide the promotion, as the policy's sources allow."""
    ways = [f"promoflow approve {pid}"] if "cli" in sources else []
    if "ui" in sources and run:
        ways.append(f"Resume at {run}")
    if "forge" in sources and request.url:
        ways.append(f"review at {request.url}")
    return ways


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
