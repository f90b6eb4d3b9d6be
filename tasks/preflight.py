"""Step: check order and guards, record the environment's baseline, take the app/environment slot.

A rollback takes the slot at once from a promotion that waits for approval (it is superseded: its run
cancelled, its pull request closed with a comment) and, once it holds the environment, marks the release it
replaces rejected there; a rollback that never got the environment rejects nothing.
"""

from __future__ import annotations

import time
from uuid import UUID

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.states import Cancelled

from promoflow.errors import PromoflowError
from promoflow.project import Project
from promoflow.promotion import adopt_baseline, check_order, culprit, runner_alive
from promoflow.records import Promotion
from tasks._shared import project, pull_request

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
            if promotion.kind == "rollback" and holder.state == "awaiting_approval":
                _supersede(p, holder, promotion)
                detail.setdefault("superseded", []).append(holder.id)
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
        if (bad := culprit(p, promotion)) is not None:
            db.reject_release(promotion.app, promotion.environment, bad.release_id, promotion.reason, bad.id)
            detail["rejected"] = bad.release_id
    return True


def _supersede(p: Project, waiting: Promotion, rollback: Promotion) -> None:
    """End a promotion that waits for approval so that a rollback takes its environment now: recorded as
    superseded (the slot is free), its Prefect run cancelled, its pull request closed with a comment."""
    assert waiting.id is not None
    why = f"rollback {rollback.id} took {waiting.environment}: {rollback.reason or 'rolled back'}"
    p.db.update_promotion(waiting.id, state="superseded", error=why)
    p.db.interrupt_steps(waiting.id, f"superseded: {why}")
    logger = get_run_logger()
    logger.warning("Promotion %s, waiting for approval, is superseded by rollback %s", waiting.id, rollback.id)
    if waiting.flow_run_id:
        try:
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(
                    UUID(waiting.flow_run_id), Cancelled(message=f"Superseded: {why}."), force=True
                )
        except Exception as error:  # the records decide; its run notices them when it next looks
            logger.warning("Could not cancel the run of promotion %s: %s", waiting.id, type(error).__name__)
    if p.config.repository.forge == "github":
        try:
            p.github.close_request(pull_request(p.db, waiting.id), f"Superseded: {why}. Nothing was merged.")
        except PromoflowError as error:
            logger.warning("Could not close the pull request of promotion %s: %s", waiting.id, error)


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
