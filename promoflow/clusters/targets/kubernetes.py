"""The `kubernetes` target: render the app from the environment's branch, server-side apply it (field manager
`promoflow`), prune what promoflow applied there before and no longer renders, then wait for the rollout."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promoflow.clusters.health import rollout_status
from promoflow.clusters.render import render
from promoflow.clusters.targets import Applied, AppliedObject, Rollout, VerificationFailed, Verified, register

if TYPE_CHECKING:
    from promoflow.config import Environment
    from promoflow.engine.context import Context
    from promoflow.project import Project


@register("kubernetes")
class KubernetesApply:
    name = "kubernetes"

    def __init__(self, project: Project, environment: Environment) -> None:
        self.project = project
        self.environment = environment

    def apply(self, ctx: Context) -> Applied:
        p, env = self.project, self.environment
        promotion = ctx.promotion
        app = p.config.app(promotion.app)
        # no link may lead out of the working tree
        objects = p.workspace.on_branch(
            env.branch, lambda tree: render(tree / app.directory(env), tree, app.values_files())
        )
        before = p.db.last_outcome(promotion.app, promotion.environment, "apply")
        previous = [o.ref() for o in Applied.model_validate(before).applied] if before else []
        with p.cluster(env) as cluster:
            result = cluster.apply(promotion.app, env.name, objects, previous=previous, force=env.cluster.force)
        terminating = [str(r) for r in result.terminating]
        if terminating:  # deleted, but their finalizers still run: not waited for
            ctx.log.info("Pruned, still terminating until their finalizers finish: %s", ", ".join(terminating))
        return Applied(
            target=self.name,
            applied=[AppliedObject.of(r, result.stale_deadlines.get(r)) for r in result.applied],
            changed=[str(r) for r in result.changed],
            pruned=[str(r) for r in result.pruned],
            terminating=terminating,
            requests=result.requests,
        )

    def check(self, ctx: Context, applied: Applied) -> Verified:
        """Wait for the workloads this promotion applied to roll out; the first that cannot fails it."""
        env = self.environment
        with self.project.cluster(env) as cluster:
            results = rollout_status(
                cluster,
                [o.ref() for o in applied.applied],
                env.cluster.rollout_timeout_seconds,
                stale_deadlines={o.ref(): o.stale_deadline for o in applied.applied if o.stale_deadline is not None},
            )
        failed = [r for r in results if not r.healthy]
        if failed:
            raise VerificationFailed(
                f"{ctx.promotion.app} did not roll out in {env.name}: "
                + "; ".join(f"{r.ref}: {r.message}" for r in failed)
            )
        return Verified(rollouts=[Rollout(object=str(r.ref), healthy=r.healthy, message=r.message) for r in results])
