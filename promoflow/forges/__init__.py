"""Forges: where promotion requests live, behind one interface; one module each, registered by name.

`repository.forge` in promotions.yaml names one: `local` (a branch plus a record, merged by promoflow)
or `github` (pull requests, reviews, statuses and check runs). A new forge is a module that registers a
class implementing `Forge`; nothing else names forges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, Field

from promoflow.errors import TerminalError

if TYPE_CHECKING:
    from promoflow.config import ApprovalPolicy
    from promoflow.project import Project
    from promoflow.records import Promotion

ContextState = Literal["success", "pending", "failure", "missing"]
StatusState = Literal["error", "failure", "pending", "success"]


class Request(BaseModel):
    """A promotion request as it was opened (the `open_request` step's output)."""

    forge: str
    branch: str
    base: str
    head: str = Field(description="the commit promoflow prepared: approvals count on it, the merge takes it")
    title: str
    description: str = Field(description="markdown: the UI's approval form and a pull request's body")
    number: int | None = None
    url: str | None = None
    created: bool = Field(True, description="False: an earlier run had opened it")


@dataclass
class ReviewDecision:
    """One review on a request and whether it counts. Shaped like `promoflow.approvals.Decided`."""

    review_id: int
    approver: str
    state: str  # APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED
    decision: str  # "approve", "reject", or "none" for comments and dismissed reviews
    commit_id: str
    submitted_at: datetime | None
    counted: bool | None = None  # None: not judged yet
    reason: str | None = None


@dataclass(frozen=True)
class GateContext:
    context: str
    state: ContextState
    source: Literal["status", "check_run"] | None
    description: str | None
    target_url: str | None


@dataclass(frozen=True)
class GateStatus:
    sha: str
    outcome: Literal["passed", "pending", "failed"]
    contexts: tuple[GateContext, ...]


@dataclass(frozen=True)
class Look:
    """What the forge says about a request now: its head, its reviews judged by the policy, its checks."""

    head: str
    reviews: tuple[ReviewDecision, ...] = ()
    checks: GateStatus | None = None


class Forge(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def wake_events(self) -> tuple[str, ...]:
        """Prefect event name prefixes that mean "look again" for a promotion waiting on this forge."""
        ...

    @property
    def wake_resources(self) -> tuple[str, ...]:
        """The resources (e.g. this repository) those events must be about; empty: any."""
        ...

    def open(self, promotion: Promotion, branch: str, base: str, head: str, title: str, description: str) -> Request:
        """Open the request, or find the one an earlier run opened (or merged)."""
        ...

    def look(self, request: Request, policy: ApprovalPolicy, requester: str, checks: list[str]) -> Look: ...

    def merge(self, promotion: Promotion, request: Request, message: str) -> str:
        """Merge the request's head into its base; returns the merge commit. Finds an earlier merge first."""
        ...

    def report(self, promotion: Promotion, request: Request | None, state: StatusState, text: str) -> None:
        """Tell the forge how the promotion is going (a commit status); best effort."""
        ...

    def hold(self, promotion: Promotion, request: Request, why: str | None) -> None:
        """Show on the request that it is held before its merge (a freeze, a window, soak: `why`), or no longer
        (None); best effort."""
        ...

    def comment(self, request: Request, text: str) -> None: ...

    def close(self, request: Request, comment: str) -> None:
        """Close a request that will not be merged (superseded, cancelled), saying why."""
        ...


Factory = Callable[["Project"], Forge]
FORGES: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    def add(factory: Factory) -> Factory:
        FORGES[name] = factory
        return factory

    return add


def forge_for(project: Project) -> Forge:
    """The project's forge; its module is imported on first use (PyGithub only when `github` is used)."""
    name = project.config.repository.forge
    if name not in FORGES:
        try:
            import_module(f"promoflow.forges.{name}")
        except ModuleNotFoundError:
            raise TerminalError(f"Unknown forge {name!r}: promoflow has {', '.join(known())}.") from None
    return FORGES[name](project)


def known() -> list[str]:
    from pkgutil import iter_modules

    return sorted(m.name for m in iter_modules(__path__) if not m.name.startswith("_"))
