"""Step: verify the environment is healthy (HTTP checks, kept passing through the soak time)."""

from __future__ import annotations

import json
import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from promoflow.clusters.gitops import wait_synced
from promoflow.clusters.health import rollout_status
from promoflow.clusters.kubernetes import ObjectRef
from promoflow.config import Environment
from promoflow.errors import TerminalError
from promoflow.health import run_check
from promoflow.project import Project
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
        if env.cluster.target == "kubernetes":
            detail["rollouts"] = _rollouts(p, promotion_id, env)
        elif env.cluster.target in ("argocd", "flux"):
            detail["sync"] = _synced(p, promotion_id, env)
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


def _rollouts(p: Project, promotion_id: int, env: Environment) -> list[dict[str, object]]:
    """Wait for the workloads this promotion applied to roll out; the first that cannot fails the promotion."""
    applied = p.db.last_step(promotion_id, "apply")
    refs = [ObjectRef.from_dict(r) for r in json.loads(applied.detail).get("applied", [])] if applied else []
    with p.cluster(env) as cluster:
        results = rollout_status(cluster, refs, env.cluster.rollout_timeout_seconds)
    failed = [r for r in results if not r.healthy]
    if failed:
        raise VerificationFailed(
            f"{p.db.promotion(promotion_id).app} did not roll out in {env.name}: "
            + "; ".join(f"{r.ref}: {r.message}" for r in failed)
        )
    return [r.as_dict() for r in results]


def _synced(p: Project, promotion_id: int, env: Environment) -> dict[str, object]:
    """Wait until Argo CD or Flux reports the merged commit synced and healthy."""
    applied = p.db.last_step(promotion_id, "apply")
    revision = json.loads(applied.detail).get("revision") if applied else None
    if not revision:
        raise TerminalError(f"Promotion {promotion_id} has no merged revision to wait for: re-run it.")
    with p.cluster(env) as cluster:
        result = wait_synced(cluster, env.cluster, revision)
    if not result.healthy:
        raise VerificationFailed(f"{env.cluster.target} did not sync {revision[:12]} in {env.name}: {result.message}")
    return result.as_dict()
