"""Step: merge the promotion request into the environment branch: local, a merge commit naming it; github, the
pull request merged by GitHub with the configured method, guarded by the approved head."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from promoflow import failpoints
from promoflow.forges import local
from promoflow.promotion import superseded
from tasks._shared import project, pull_request, run_url


@task(name="merge", cache_policy=NO_CACHE)
def merge(config: str, promotion_id: int, approvers: list[str]) -> str:
    p = project(config)
    db = p.db
    promotion = db.promotion(promotion_id)
    release = db.get_release(promotion.release_id)
    env = p.config.environment(promotion.environment)
    github = p.config.repository.github
    assert promotion.request_branch and promotion.request_head
    if promotion.slot is None:  # a rollback took the environment while this promotion waited
        raise superseded(promotion)
    message = local.merge_message(promotion, release, promotion.request_branch, approvers)
    # The intent names the approvers: a run that ends inside this step is settled by merging with them again.
    with db.step(promotion_id, "merge", into=env.branch, head=promotion.request_head, approvers=approvers) as detail:
        if github is None:
            commit = p.workspace.merge(env.branch, promotion.request_branch, promotion.request_head, message)
        else:
            number = pull_request(db, promotion_id)
            commit = p.github.merge(number, github.merge_method, promotion.request_head, message)
            detail.update(number=number, method=github.merge_method)
        failpoints.hit("merge-pushed")  # merged on the forge, not recorded yet
        if github is not None:
            p.github.set_commit_status(
                commit, "pending", f"promoflow/{env.name}", "Merged; applying and verifying", run_url(promotion)
            )
        detail["merge_commit"] = commit
        db.update_promotion(promotion_id, state="merged", merge_commit=commit)
        db.set_current(promotion.app, promotion.environment, release.id, promotion_id)
    failpoints.hit("after-merge")
    return commit
