"""Step: order and guards, the environment's baseline, and the app/environment slot (one promotion at a time)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel

from promoflow.engine.results import Done, Gate, StepResult, Terminal, Wait, Waiting
from promoflow.engine.states import UNMERGED, PromotionState
from promoflow.engine.steps import register
from promoflow.promotion import adopt_baseline, check_order, runner_alive

if TYPE_CHECKING:
    from promoflow.engine.context import Context

SLOT_POLL_SECONDS = 0.5


class PreflightOutput(BaseModel):
    adopted_baseline: str | None = None


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
        baseline = adopt_baseline(p, promotion.app, promotion.environment)
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
            if promotion.kind == "promotion" and _newer_request_queued(ctx):
                return Terminal("a newer request of this app was queued", PromotionState.SUPERSEDED)
            now = ctx.clock.now()
            return Wait(
                Waiting(
                    step=self.name,
                    gate=Gate.SLOT,
                    summary=f"promotion {holder.id} of {holder.app} into {holder.environment} to finish",
                    since=ctx.started or now,
                    wake_at=now + timedelta(seconds=SLOT_POLL_SECONDS),
                    decide=f"promoflow history {holder.app}",
                )
            )
        return Done(PreflightOutput(adopted_baseline=baseline.label if baseline else None))


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
