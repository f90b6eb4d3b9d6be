"""Fakes of promoflow's own interfaces (a forge, a cluster target, metrics, a clock, an event sink) for the engine's
fast unit tests: the engine and its steps run for real against a real git repository and records (SQLite)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from promoflow.clusters.targets import Applied, AppliedObject, Rollout, VerificationFailed, Verified
from promoflow.config import ApprovalPolicy
from promoflow.engine.context import Context
from promoflow.engine.states import PromotionState
from promoflow.errors import TransientError
from promoflow.forges import GateContext, GateStatus, Look, Request, ReviewDecision, StatusState
from promoflow.records import Promotion


@dataclass
class FakeClock:
    at: datetime = field(default_factory=lambda: datetime(2026, 12, 4, 9, 0, tzinfo=UTC))

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class EventLog:
    seen: list[tuple[int, str]] = field(default_factory=list)

    def emit(self, promotion: Promotion, state: PromotionState) -> None:
        assert promotion.id is not None
        self.seen.append((promotion.id, state.event))

    def notice(self, promotion: Promotion, event: str, said: str) -> None:
        assert promotion.id is not None
        self.seen.append((promotion.id, f"promoflow.promotion.{event}"))

    def stop_run(self, promotion: Promotion, message: str) -> None:
        assert promotion.id is not None
        self.seen.append((promotion.id, "run stopped"))


@dataclass
class FakeForge:
    """Requests kept in memory; reviews and checks set by the test."""

    name: str = "fake"
    wake_events: tuple[str, ...] = ()
    wake_resources: tuple[str, ...] = ()
    opened: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    statuses: list[tuple[StatusState, str]] = field(default_factory=list)
    reviews: list[ReviewDecision] = field(default_factory=list)
    checks: dict[str, str] = field(default_factory=dict)  # context -> success | pending | failure
    head: str | None = None  # what the request's head is now (None: as prepared)
    holds: list[str | None] = field(default_factory=list)  # why it was held, None once it may go

    def open(self, promotion: Promotion, branch: str, base: str, head: str, title: str, description: str) -> Request:
        if branch not in self.opened:
            self.opened.append(branch)
        return Request(forge=self.name, branch=branch, base=base, head=head, title=title, description=description)

    def look(self, request: Request, policy: ApprovalPolicy, requester: str, checks: list[str]) -> Look:
        gates = None
        if checks:
            contexts = tuple(
                GateContext(c, self.checks.get(c, "missing"), "status", None, None)  # type: ignore[arg-type]
                for c in checks
            )
            states = {g.state for g in contexts}
            outcome = "failed" if "failure" in states else "pending" if states - {"success"} else "passed"
            gates = GateStatus(request.head, outcome, contexts)  # type: ignore[arg-type]
        return Look(self.head or request.head, tuple(self.reviews), gates)

    def merge(self, promotion: Promotion, request: Request, message: str) -> str:
        if request.branch not in self.merged:  # merging again finds the earlier merge
            self.merged.append(request.branch)
        return f"{len(self.merged):040x}"

    def report(self, promotion: Promotion, request: Request | None, state: StatusState, text: str) -> None:
        self.statuses.append((state, text))

    def hold(self, promotion: Promotion, request: Request, why: str | None) -> None:
        self.holds.append(why)

    def comment(self, request: Request, text: str) -> None:
        self.comments.append(text)

    def close(self, request: Request, comment: str) -> None:
        self.closed.append(request.branch)
        self.comments.append(comment)


@dataclass
class FakeTarget:
    """A cluster that takes every apply; its health and failures are set by the test."""

    name: str = "fake"
    healthy: bool = True
    transient_failures: int = 0  # applies that fail with a transient error first
    applies: int = 0
    checks: int = 0

    def apply(self, ctx: Context) -> Applied:
        if self.transient_failures:
            self.transient_failures -= 1
            raise TransientError("the API server answered 503")
        self.applies += 1
        web = AppliedObject(api_version="apps/v1", kind="Deployment", namespace="default", name="web")
        return Applied(target=self.name, applied=[web], changed=[str(web.ref())], requests=1)

    def check(self, ctx: Context, applied: Applied) -> Verified:
        self.checks += 1
        if not self.healthy:
            raise VerificationFailed("web did not roll out: ProgressDeadlineExceeded")
        return Verified(rollouts=[Rollout(object="Deployment default/web", healthy=True, message="rolled out")])


@dataclass
class FakeMetrics:
    """A Prometheus whose answers the test lines up: a number, None (no data), or an error to raise."""

    answers: list[float | Exception | None] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)

    def query(self, promql: str) -> float | None:
        self.queries.append(promql)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer
