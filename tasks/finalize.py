"""Step: record the outcome: the release is now the environment's last known good."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks._shared import project
from tasks.report import report


@task(name="finalize", cache_policy=NO_CACHE)
def finalize(config: str, promotion_id: int) -> None:
    p = project(config)
    db = p.db
    promotion = db.promotion(promotion_id)
    with db.step(promotion_id, "finalize", release=promotion.release_id):
        db.set_current(promotion.app, promotion.environment, promotion.release_id, promotion_id)
        db.set_known_good(promotion.app, promotion.environment, promotion.release_id)
        db.update_promotion(promotion_id, state="succeeded", error=None)
    release = db.get_release(promotion.release_id).display_name
    report(p, promotion_id, "success", f"{release} verified in {promotion.environment}", comment=False)
