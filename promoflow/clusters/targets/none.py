"""The `none` target: the merge is the change; a GitOps controller or a person applies the branch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promoflow.clusters.targets import Applied, Verified, register

if TYPE_CHECKING:
    from promoflow.config import Environment
    from promoflow.engine.context import Context
    from promoflow.project import Project


@register("none")
class NoCluster:
    name = "none"

    def __init__(self, project: Project, environment: Environment) -> None:
        return None

    def apply(self, ctx: Context) -> Applied:
        return Applied(
            target=self.name, note="cluster target none: a GitOps controller or a person applies the merged branch"
        )

    def check(self, ctx: Context, applied: Applied) -> Verified:
        return Verified()
