"""Step: merge the request into the environment: `local`, a merge commit naming the promotion, its requester and
approvers; `github`, the pull request merged with the configured method, guarded by the prepared head."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from promoflow import failpoints
from promoflow.engine.results import Done, StepResult, Terminal
from promoflow.engine.states import PromotionState
from promoflow.engine.steps import register
from promoflow.engine.steps.approval import Approved, AwaitApproval
from promoflow.engine.steps.prepare import changed
from promoflow.errors import PromoflowError
from promoflow.forges import Request, local
from promoflow.promotion import shared_request

if TYPE_CHECKING:
    from promoflow.engine.context import Context


class Merged(BaseModel):
    merge_commit: str
    into: str
    head: str
    approvers: list[str]


@register
class Merge:
    name = "merge"
    output = Merged

    def applies(self, ctx: Context) -> bool:
        return changed(ctx)

    def run(self, ctx: Context) -> StepResult:
        p, promotion = ctx.project, ctx.promotion
        request = ctx.output("open_request", Request)
        assert request is not None
        approved = ctx.output(AwaitApproval.name, Approved)
        approvers = approved.approvers if approved else []
        release = p.db.get_release(promotion.release_id)
        forge = ctx.forge
        if PromotionState(promotion.state).ended:  # a rollback superseded it since it was approved
            return Terminal(
                promotion.error or f"promotion {promotion.id} ended before its merge", PromotionState(promotion.state)
            )
        shared = shared_request(p, promotion) is not None  # the first member merges it; the others find that merge
        commit = forge.merge(promotion, request, local.merge_message(promotion, request, approvers, shared))
        failpoints.hit("merge-pushed")  # merged on the forge, not recorded yet: a re-run finds it
        promotion = ctx.move(PromotionState.MERGED, merge_commit=commit)
        p.db.set_current(promotion.app, promotion.environment, release.id, ctx.promotion_id)
        try:
            forge.report(promotion, request, "pending", "Merged; applying and verifying")
        except PromoflowError as error:  # a status is a courtesy: the merge is what counts, and it is recorded
            ctx.log.warning("Could not report promotion %s to the forge: %s", ctx.promotion_id, error)
        failpoints.hit("after-merge")
        return Done(Merged(merge_commit=commit, into=request.base, head=request.head, approvers=approvers))
