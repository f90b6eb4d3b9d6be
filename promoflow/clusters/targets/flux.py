"""The `flux` target: Flux's kustomize-controller applies the Kustomization named in `cluster.name`
(namespace `flux-system` by default)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promoflow.clusters import gitops
from promoflow.clusters.kubernetes import KubernetesTarget
from promoflow.clusters.targets import register
from promoflow.clusters.targets._controller import ControllerSync

if TYPE_CHECKING:
    from promoflow.config import Environment
    from promoflow.project import Project


def _reconcile(cluster: KubernetesTarget, name: str, namespace: str, revision: str) -> None:
    gitops.request_flux_reconcile(cluster, name, namespace)  # Flux takes the branch's head: the merged commit


@register("flux")
class Flux(ControllerSync):
    name = "flux"
    default_namespace = "flux-system"

    def __init__(self, project: Project, environment: Environment) -> None:
        super().__init__(project, environment, _reconcile, gitops.wait_flux)
