"""Cluster targets: how a merged change reaches an environment's cluster, and how it is judged healthy there.

`environments[].cluster.target` names one; each is a module here that registers a class implementing
`Target`: `none` (the merge is the change), `kubernetes` (server-side apply with prune, then rollout
status), `argocd` and `flux` (the controller syncs the merged commit; promoflow waits for it to report
that commit healthy). A new target is one module and its registration.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from pkgutil import iter_modules
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from promoflow.errors import TerminalError

if TYPE_CHECKING:
    from promoflow.clusters.kubernetes import ObjectRef
    from promoflow.config import Environment
    from promoflow.engine.context import Context
    from promoflow.project import Project


class VerificationFailed(TerminalError):
    """The release is unhealthy in the environment: roll back, do not retry."""


class AppliedObject(BaseModel):
    """One object a `kubernetes` apply sent (the inventory the next apply prunes against)."""

    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)
    api_version: str = Field(alias="apiVersion")
    kind: str
    namespace: str | None = None
    name: str
    stale_deadline: str | None = Field(
        None,
        description="a Deployment changed while it still reported an earlier rollout's progress deadline: "
        "that condition's lastUpdateTime, which verification does not count as this rollout failing",
    )

    @classmethod
    def of(cls, ref: ObjectRef, stale_deadline: str | None = None) -> AppliedObject:
        return cls(
            api_version=ref.api_version,
            kind=ref.kind,
            namespace=ref.namespace,
            name=ref.name,
            stale_deadline=stale_deadline,
        )

    def ref(self) -> ObjectRef:
        from promoflow.clusters.kubernetes import ObjectRef

        return ObjectRef(self.api_version, self.kind, self.namespace, self.name)


class Applied(BaseModel):
    """The `apply` step's output."""

    target: str
    note: str = ""
    revision: str | None = Field(None, description="argocd/flux: the merged commit the controller must report")
    applied: list[AppliedObject] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list)
    pruned: list[str] = Field(default_factory=list)
    terminating: list[str] = Field(default_factory=list, description="pruned, their finalizers still running")
    requests: int = 0
    reused: bool = Field(False, description="an earlier run had applied it: nothing was sent again")


class Rollout(BaseModel):
    object: str
    healthy: bool
    message: str


class Sync(BaseModel):
    healthy: bool
    message: str
    observed: dict[str, Any] = Field(default_factory=dict)


class Verified(BaseModel):
    """What the target saw of the change in the cluster (the `verify` step adds the HTTP checks)."""

    rollouts: list[Rollout] | None = None
    sync: Sync | None = None


class Target(Protocol):
    @property
    def name(self) -> str: ...

    def apply(self, ctx: Context) -> Applied: ...

    def check(self, ctx: Context, applied: Applied) -> Verified:
        """Wait for the change to take effect; raises VerificationFailed when it does not."""
        ...


Factory = Callable[["Project", "Environment"], Target]
TARGETS: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    def add(factory: Factory) -> Factory:
        TARGETS[name] = factory
        return factory

    return add


def target_for(project: Project, environment: Environment) -> Target:
    name = environment.cluster.target
    if name not in TARGETS:
        if name not in known():
            raise TerminalError(f"Unknown cluster target {name!r}: promoflow has {', '.join(known())}.")
        import_module(f"{__name__}.{name}")
    return TARGETS[name](project, environment)


def known() -> list[str]:
    return sorted(m.name for m in iter_modules(__path__) if not m.name.startswith("_"))
