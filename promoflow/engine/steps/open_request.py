"""Step: open the promotion request on the forge (or find the one an earlier run opened)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promoflow import failpoints, links, releases
from promoflow.engine.results import Done, StepResult
from promoflow.engine.steps import register
from promoflow.engine.steps.prepare import Prepare, Prepared, changed
from promoflow.forges import Request, local

if TYPE_CHECKING:
    from promoflow.engine.context import Context


@register
class OpenRequest:
    name = "open_request"
    output = Request

    def applies(self, ctx: Context) -> bool:
        return changed(ctx)

    def run(self, ctx: Context) -> StepResult:
        p, promotion = ctx.project, ctx.promotion
        prepared = ctx.output(Prepare.name, Prepared)
        assert prepared is not None
        release = p.db.get_release(promotion.release_id)
        diff = p.workspace.diff(prepared.base, prepared.branch, prepared.head)
        pins = releases.pins_of(release)
        description = local.describe(promotion, release, pins, prepared.branch, diff, links.run_url(promotion))
        request = ctx.forge.open(
            promotion, prepared.branch, prepared.base, prepared.head, local.title(promotion, release), description
        )
        failpoints.hit("after-open-request")
        return Done(request)
