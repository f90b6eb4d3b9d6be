"""Step: order and guards, the environment's baseline, and the app/environment slot (one promotion at a time)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from promoflow.engine.context import step_output
from promoflow.engine.results import Done, Gate, StepResult, Terminal, Wait, Waiting
from promoflow.engine.states import UNMERGED, PromotionState
from promoflow.engine.steps import register
from promoflow.errors import PromoflowError
from promoflow.forges import Request
from promoflow.promotion import adopt_baseline, check_order, culprit, runner_alive
from promoflow.records import Promotion
from promoflow.releases import newer

if TYPE_CHECKING:
    from promoflow.engine.context import Context

SLOT_POLL_SECONDS = 0.5


class PreflightOutput(BaseModel):
    adopted_baseline: str | None = None
    superseded: list[int] = Field(default_factory=list, description="promotions waiting for approval a rollback ended")
    rejected: str | None = Field(None, description="the release a rollback marked rejected once it held the slot")


@register
class Preflight:
    name = "preflight"
    output = PreflightOutput

    def applies(self, ctx: Context) -> bool:
        return True

    def run(self, ctx: Context) -> StepResult:
        p, promotion = ctx.project, ctx.promotion
        db = p.db
        check_order(p, promotion)
        policy = p.config.environment(promotion.environment).supersede
        baseline = adopt_baseline(p, promotion.app, promotion.environment)
        superseded: list[int] = []
        while (holder := db.try_claim_slot(ctx.promotion_id, promotion.app, promotion.environment)) is not None:
            assert holder.id is not None
            if holder.waiting is None and holder.state in UNMERGED and runner_alive(holder) is False:
                # Its process died before it changed anything, and nobody resumed it: it must not block forever.
                ctx.move(
                    PromotionState.FAILED,
                    holder.id,
                    error=f"abandoned: its process ended before it finished; promotion {promotion.id} went ahead",
                )
                continue
            if promotion.kind == "rollback" and holder.state == PromotionState.AWAITING_APPROVAL:
                why = f"rollback {ctx.promotion_id} took {holder.environment}: {promotion.reason or 'rolled back'}"
                _supersede(ctx, holder, why)  # an emergency does not wait for days of approvals
                superseded.append(holder.id)
                continue
            if policy == "waiting" and _outdates(ctx, holder):
                release = p.db.get_release(promotion.release_id).display_name
                _supersede(ctx, holder, f"promotion {ctx.promotion_id} of the newer release {release} took its place")
                superseded.append(holder.id)
                continue
            if promotion.kind == "promotion" and policy != "never" and _newer_request_queued(ctx):
                return Terminal("a newer request of this app was queued", PromotionState.SUPERSEDED)
            now = ctx.clock.now()
            return Wait(
                Waiting(
                    step=self.name,
                    gate=Gate.SLOT,
                    summary=f"promotion {holder.id} to finish",
                    since=ctx.started or now,
                    wake_at=now + timedelta(seconds=SLOT_POLL_SECONDS),
                    decide=[f"promoflow history {holder.app} --env {holder.environment}"],
                )
            )
        # Only a rollback that holds the environment marks the release it replaces rejected.
        bad = culprit(p, promotion)
        if bad is not None:
            db.reject_release(promotion.app, promotion.environment, bad.release_id, promotion.reason, bad.id)
        return Done(
            PreflightOutput(
                adopted_baseline=baseline.label if baseline else None,
                superseded=superseded,
                rejected=bad.release_id if bad else None,
            )
        )


def _outdates(ctx: Context, holder: Promotion) -> bool:
    """Whether this promotion's release is newer than that of `holder`, a promotion that waits before its merge."""
    promotion = ctx.promotion
    if promotion.kind != "promotion" or holder.kind != "promotion" or holder.waiting is None:
        return False
    if holder.state not in UNMERGED or holder.release_id == promotion.release_id:
        return False
    db = ctx.project.db
    app = ctx.project.config.app(promotion.app)
    return newer(app, db.get_release(promotion.release_id), db.get_release(holder.release_id))


def _supersede(ctx: Context, waiting: Promotion, why: str) -> None:
    """End a promotion that waits before its merge so that this one takes its environment now: recorded as
    superseded (which frees the slot), its run ended, its request closed with a comment saying `why`."""
    assert waiting.id is not None
    message = f"Promotion {waiting.id} was superseded ({why}): nothing was merged."
    ended = ctx.move(PromotionState.SUPERSEDED, waiting.id, error=message, waiting=None)
    ctx.project.db.interrupt_steps(waiting.id, f"superseded: {why}", ("running", "waiting"))
    ctx.log.warning("Promotion %s, waiting, is superseded by promotion %s: %s", waiting.id, ctx.promotion_id, why)
    ctx.events.stop_run(ended, message)
    request = step_output(ctx.project.db, waiting.id, "open_request", Request)
    if request is not None:
        try:
            ctx.forge.close(request, f"Superseded: {why}. Nothing was merged.")
        except PromoflowError as error:  # the records decide; the request can be closed by hand
            ctx.log.warning("Could not close the request of promotion %s: %s", waiting.id, error)


def _newer_request_queued(ctx: Context) -> bool:
    promotion = ctx.promotion
    return any(
        other.id is not None
        and other.id > ctx.promotion_id
        and other.state == PromotionState.PENDING
        and other.kind == "promotion"
        and other.slot is None
        for other in ctx.project.db.promotions(promotion.app, promotion.environment, limit=20)
    )
