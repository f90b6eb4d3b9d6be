"""Step: apply the merged change to the environment's cluster, through its target (see promoflow/clusters/targets)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promoflow.clusters.targets import Applied
from promoflow.engine.results import Done, StepResult
from promoflow.engine.states import PromotionState
from promoflow.engine.steps import register

if TYPE_CHECKING:
    from promoflow.engine.context import Context


@register
class Apply:
    name = "apply"
    output = Applied

    def applies(self, ctx: Context) -> bool:
        return True

    def run(self, ctx: Context) -> StepResult:
        applied = ctx.target().apply(ctx)
        ctx.move(PromotionState.APPLIED)
        return Done(applied)
