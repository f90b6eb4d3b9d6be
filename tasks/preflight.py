"""Step: check order and guards, record the environment's baseline, take the app/environment slot."""

from __future__ import annotations

import time

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from promoflow.project import Project
from promoflow.promotion import adopt_baseline, check_order, runner_alive
from tasks._shared import project

SLOT_POLL_SECONDS = 0.5


@task(name="preflight", cache_policy=NO_CACHE)
def preflight(config: str, promotion_id: int) -> bool:
    """True when the promotion may go on; False when a newer request superseded it while queued."""
    p = project(config)
    db = p.db
    promotion = db.promotion(promotion_id)
    with db.step(promotion_id, "preflight") as detail:
        check_order(p, promotion)
        baseline = adopt_baseline(p, promotion.app, promotion.environment)
        if baseline:
            detail["adopted_baseline"] = baseline.label
        announced = None
        while (holder := db.try_claim_slot(promotion_id, promotion.app, promotion.environment)) is not None:
            if runner_alive(holder) is False:  # crashed and never re-run: do not wait for it forever
                db.update_promotion(
                    holder.id,  # type: ignore[arg-type]
                    state="failed",
                    error=f"abandoned: its process ended before it finished; promotion {promotion_id} went ahead",
                )
                continue
            if promotion.kind == "promotion" and _newer_request_waiting(p, promotion_id):
                detail["superseded"] = True
                db.update_promotion(promotion_id, state="superseded", error="a newer request was queued")
                return False
            if holder.id != announced:
                announced = holder.id
                detail.setdefault("waited_for", []).append(holder.id)
                db.save_detail(promotion_id, "preflight", detail)  # for `promoflow status`
                get_run_logger().info(
                    "Waiting for promotion %s of %s into %s to finish",
                    holder.id,
                    holder.app,
                    holder.environment,
                )
            time.sleep(SLOT_POLL_SECONDS)
    return True


def _newer_request_waiting(p: Project, promotion_id: int) -> bool:
    promotion = p.db.promotion(promotion_id)
    return any(
        other.id is not None
        and other.id > promotion_id
        and other.state == "pending"
        and other.kind == "promotion"
        and other.slot is None
        for other in p.db.promotions(promotion.app, promotion.environment, limit=20)
    )
