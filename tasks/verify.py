"""Step: verify the environment is healthy (HTTP checks, kept passing through the soak time)."""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from promoflow.errors import TerminalError
from promoflow.health import run_check
from tasks._shared import project


class VerificationFailed(TerminalError):
    """The release is unhealthy in the environment: roll back, do not retry."""


@task(name="verify", cache_policy=NO_CACHE)
def verify(config: str, promotion_id: int) -> None:
    p = project(config)
    db = p.db
    promotion = db.promotion(promotion_id)
    app = p.config.app(promotion.app)
    env = p.config.environment(promotion.environment)
    with db.step(promotion_id, "verify", checks=len(app.health_checks), soak_seconds=env.soak_seconds) as detail:
        deadline = time.monotonic() + env.soak_seconds
        rounds = 0
        while True:
            rounds += 1
            results = [run_check(check) for check in app.health_checks]
            detail.update(rounds=rounds, results=[r.as_dict() for r in results])
            failed = [r for r in results if not r.healthy]
            if failed:
                raise VerificationFailed(
                    f"{promotion.app} is unhealthy in {promotion.environment}: "
                    + "; ".join(f"{r.url} {r.message}" for r in failed)
                )
            if time.monotonic() >= deadline:
                break
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0)))
        db.update_promotion(promotion_id, state="verified")
