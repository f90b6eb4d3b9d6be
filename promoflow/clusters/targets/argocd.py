"""The `argocd` target: Argo CD syncs the Application named in `cluster.name` (namespace `argocd` by default)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promoflow.clusters import gitops
from promoflow.clusters.kubernetes import KubernetesTarget
from promoflow.clusters.targets import register
from promoflow.clusters.targets._controller import ControllerSync

if TYPE_CHECKING:
    from promoflow.config import Environment
    from promoflow.project import Project


def _sync(cluster: KubernetesTarget, name: str, namespace: str, revision: str) -> None:
    gitops.request_argocd_sync(cluster, name, namespace, revision=revision)


@register("argocd")
class ArgoCD(ControllerSync):
    name = "argocd"
    default_namespace = "argocd"

    def __init__(self, project: Project, environment: Environment) -> None:
        super().__init__(project, environment, _sync, gitops.wait_argocd)
