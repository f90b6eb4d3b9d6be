"""Step: apply the merged change to the environment's cluster.

Target `none`: the merge is the change. Target `kubernetes`: render the app from the environment
branch, server-side apply it, prune what promoflow applied before and no longer renders. Targets
`argocd` / `flux`: ask the controller to sync the merged commit (verify waits for it).
Idempotent per promotion: once it succeeded, a re-run (after a crash before verify) records the same
outcome as reused and sends nothing to the cluster.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from promoflow import failpoints
from promoflow.clusters.gitops import request_sync
from promoflow.clusters.kubernetes import ObjectRef
from promoflow.clusters.render import render
from promoflow.project import Project
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
        elif env.cluster.target in ("argocd", "flux"):
            detail["revision"] = revision = promotion.merge_commit or p.workspace.branch_head(env.branch)
            if env.cluster.sync:
                with p.cluster(env) as cluster:
                    request_sync(cluster, env.cluster, revision)
            detail["note"] = f"{env.cluster.target} syncs {env.branch}" + (
                " (asked to now)" if env.cluster.sync else ""
            )
        elif (done := _applied_before(p, promotion_id)) is not None:
            # re-run after a crash between apply and verify: the cluster has this change; verify it, do not redo it
            detail.update(done, reused=True, requests=0)
        else:
            with p.workspace.checkout(env.branch) as tree:
                objects = render(tree / app.directory(env))
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
            if result.terminating:  # deleted, but their finalizers still run: not waited for
                detail["terminating"] = [str(r) for r in result.terminating]
                get_run_logger().info(
                    "Pruned, still terminating until their finalizers finish: %s", ", ".join(detail["terminating"])
                )
        db.update_promotion(promotion_id, state="applied")
    failpoints.hit("after-apply")


def _applied_before(p: Project, promotion_id: int) -> dict[str, Any] | None:
    """The detail of this promotion's apply if an earlier run of it already succeeded."""
    for step in reversed(p.db.steps(promotion_id)):
        if step.name == "apply" and step.outcome == "succeeded":
            detail: dict[str, Any] = json.loads(step.detail)
            return {key: value for key, value in detail.items() if key not in ("reused", "requests")}
    return None
