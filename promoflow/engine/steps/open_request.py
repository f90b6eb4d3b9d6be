"""Step: open the promotion request on the forge (or find the one an earlier run opened)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promoflow import failpoints, links
from promoflow.engine.results import Done, StepResult
from promoflow.engine.steps import register
from promoflow.engine.steps.prepare import Prepare, Prepared, changed
from promoflow.forges import Request, local
from promoflow.promotion import bundle_releases, shared_request

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
        bundle = shared_request(p, promotion)
        if bundle is None:
            title, of = local.title(promotion, release), [release]
        else:  # one request for the whole bundle: the first member opens it, the others find it
            title, of = local.bundle_title(bundle, promotion.environment), bundle_releases(p, bundle, promotion)
        description = local.describe(promotion, title, of, prepared.branch, diff, links.run_url(promotion))
        request = ctx.forge.open(promotion, prepared.branch, prepared.base, prepared.head, title, description)
        failpoints.hit("after-open-request")
        return Done(request)
