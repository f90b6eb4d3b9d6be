"""Step: merge the promotion branch into the environment branch with a merge commit naming it."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from promoflow import failpoints
from promoflow.forges import local
from tasks._shared import project


@task(name="merge", cache_policy=NO_CACHE)
def merge(config: str, promotion_id: int, approvers: list[str]) -> str:
    p = project(config)
    db = p.db
    promotion = db.promotion(promotion_id)
    release = db.get_release(promotion.release_id)
    env = p.config.environment(promotion.environment)
    assert promotion.request_branch and promotion.request_head
    with db.step(promotion_id, "merge", into=env.branch, head=promotion.request_head) as detail:
        commit = p.workspace.merge(
            env.branch,
            promotion.request_branch,
            promotion.request_head,
            local.merge_message(promotion, release, promotion.request_branch, approvers),
        )
        detail["merge_commit"] = commit
        db.update_promotion(promotion_id, state="merged", merge_commit=commit)
        db.set_current(promotion.app, promotion.environment, release.id, promotion_id)
    failpoints.hit("after-merge")
    return commit
