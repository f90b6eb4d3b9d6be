"""Step: apply the merged change to the environment's cluster.

Target `none`: the merge is the change. Target `kubernetes`: render the app from the environment
branch, server-side apply it, prune what promoflow applied before and no longer renders.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from promoflow.clusters.kubernetes import ObjectRef
from promoflow.clusters.render import render
from tasks._shared import project


@task(name="apply", cache_policy=NO_CACHE)
def apply(config: str, promotion_id: int) -> None:
    p = project(config)
    db = p.db
    promotion = db.promotion(promotion_id)
    env = p.config.environment(promotion.environment)
    app = p.config.app(promotion.app)
    with db.step(promotion_id, "apply", target=env.cluster.target) as detail:
        if env.cluster.target == "none":
            detail["note"] = "cluster target none: a GitOps controller or a person applies the merged branch"
        else:
            with p.workspace.checkout(env.branch) as tree:
                objects = render(tree / app.path)
            before = db.last_outcome(promotion.app, promotion.environment, "apply") or {}
            previous = [ObjectRef.from_dict(r) for r in before.get("applied", [])]
            with p.cluster(env) as cluster:
                result = cluster.apply(
                    promotion.app, promotion.environment, objects, previous=previous, force=env.cluster.force
                )
            detail.update(
                applied=[r.as_dict() for r in result.applied],
                changed=[str(r) for r in result.changed],
                pruned=[str(r) for r in result.pruned],
                requests=result.requests,
            )
        db.update_promotion(promotion_id, state="applied")
