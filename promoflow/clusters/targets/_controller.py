"""What the `argocd` and `flux` targets share: the controller pulls the branch; promoflow asks it to sync the
merged commit (unless `sync: false`) and waits until it reports that commit healthy."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from promoflow.clusters.gitops import SyncResult
from promoflow.clusters.kubernetes import KubernetesTarget
from promoflow.clusters.targets import Applied, Sync, VerificationFailed, Verified

if TYPE_CHECKING:
    from promoflow.config import Environment
    from promoflow.engine.context import Context
    from promoflow.project import Project

RequestSync = Callable[[KubernetesTarget, str, str, str], None]  # cluster, name, namespace, revision
WaitSynced = Callable[[KubernetesTarget, str, str, str, float], SyncResult]  # ... revision, timeout


class ControllerSync:
    name: str
    default_namespace: str

    def __init__(self, project: Project, environment: Environment, request: RequestSync, wait: WaitSynced) -> None:
        self.project = project
        self.environment = environment
        self._request = request
        self._wait = wait
        cluster = environment.cluster
        assert cluster.name is not None  # the config model requires it for these targets
        self.object_name = cluster.name
        self.namespace = cluster.namespace or self.default_namespace

    def apply(self, ctx: Context) -> Applied:
        env = self.environment
        revision = ctx.promotion.merge_commit or self.project.workspace.branch_head(env.branch)
        if env.cluster.sync:
            with self.project.cluster(env) as cluster:
                self._request(cluster, self.object_name, self.namespace, revision)
        note = f"{self.name} syncs {env.branch}" + (" (asked to now)" if env.cluster.sync else "")
        return Applied(target=self.name, revision=revision, note=note)

    def check(self, ctx: Context, applied: Applied) -> Verified:
        env = self.environment
        assert applied.revision is not None
        with self.project.cluster(env) as cluster:
            result = self._wait(
                cluster, self.object_name, self.namespace, applied.revision, env.cluster.rollout_timeout_seconds
            )
        if not result.healthy:
            raise VerificationFailed(
                f"{self.name} did not sync {applied.revision[:12]} in {env.name}: {result.message}"
            )
        return Verified(sync=Sync(healthy=result.healthy, message=result.message, observed=result.observed))
