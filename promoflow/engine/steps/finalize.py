"""Step: the release is now the environment's current and last known good; the forge is told."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from promoflow.engine.results import Done, StepResult
from promoflow.engine.states import PromotionState
from promoflow.engine.steps import register
from promoflow.errors import PromoflowError
from promoflow.forges import Request

if TYPE_CHECKING:
    from promoflow.engine.context import Context


class Finalized(BaseModel):
    release: str


@register
class Finalize:
    name = "finalize"
    output = Finalized

    def applies(self, ctx: Context) -> bool:
        return True

    def run(self, ctx: Context) -> StepResult:
        p, promotion = ctx.project, ctx.promotion
        p.db.set_current(promotion.app, promotion.environment, promotion.release_id, ctx.promotion_id)
        p.db.set_known_good(promotion.app, promotion.environment, promotion.release_id)
        promotion = ctx.move(PromotionState.SUCCEEDED, error=None)
        try:
            ctx.forge.report(
                promotion,
                ctx.output("open_request", Request),
                "success",
                f"{p.db.get_release(promotion.release_id).display_name} verified in {promotion.environment}",
            )
        except PromoflowError as error:  # best effort: the outcome is recorded
            ctx.log.warning("Could not report promotion %s to the forge: %s", ctx.promotion_id, error)
        return Done(Finalized(release=promotion.release_id))
