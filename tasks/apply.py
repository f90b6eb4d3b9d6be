"""Step: apply the merged change to the cluster. Target `none`: the merge is the change."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks._shared import project


@task(name="apply", cache_policy=NO_CACHE)
def apply(config: str, promotion_id: int) -> None:
    p = project(config)
    promotion = p.db.promotion(promotion_id)
    target = p.config.environment(promotion.environment).cluster.target
    with p.db.step(promotion_id, "apply", target=target) as detail:
        detail["note"] = "cluster target none: a GitOps controller or a person applies the merged branch"
        p.db.update_promotion(promotion_id, state="applied")
