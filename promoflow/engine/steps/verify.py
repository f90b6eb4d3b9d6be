"""Step: verify the environment is healthy: the target's own judgement (rollouts, the controller's sync), then
the app's HTTP checks, kept passing through the environment's soak time, then the app's metric checks.

Metric checks look at the environment's Prometheus every `interval_seconds` for `for_seconds`: between looks the
step waits (the driver suspends the run or waits in place), every look is recorded, and the next look carries
on from the records, so a process killed meanwhile loses nothing. What passed before the metric checks is kept
on the wait, not checked again.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from promoflow import metric_checks
from promoflow.clusters.targets import Applied, VerificationFailed, Verified
from promoflow.config import MetricCheck
from promoflow.engine.results import Done, Gate, StepResult, Terminal, Wait, Waiting
from promoflow.engine.states import PromotionState
from promoflow.engine.steps import register
from promoflow.errors import TerminalError, TransientError
from promoflow.health import run_check
from promoflow.records import MetricSample

if TYPE_CHECKING:
    from promoflow.engine.context import Context


class MetricCheckResult(BaseModel):
    name: str
    query: str
    threshold: str
    state: str = Field(description="passed, failed, unreachable or looking")
    looks: int = Field(description="looks that counted")
    failing: int
    values: list[float | None] = Field(description="every look's value, None where it had none")
    reason: str = ""


class Verification(Verified):
    checks: int = 0
    soak_seconds: float = 0
    rounds: int = 0
    results: list[dict[str, Any]] = Field(default_factory=list)
    metrics: list[MetricCheckResult] = Field(default_factory=list)


@register
class Verify:
    name = "verify"
    output = Verification

    def applies(self, ctx: Context) -> bool:
        return True

    def run(self, ctx: Context) -> StepResult:
        p, promotion = ctx.project, ctx.promotion
        app = p.config.app(promotion.app)
        env = p.config.environment(promotion.environment)
        checks = metric_checks.applying(app, env, promotion.kind)
        verification = _seen_before(ctx) if checks else None
        if verification is None:
            verification = Verification(checks=len(app.health_checks), soak_seconds=env.soak_seconds)
            try:
                _health(ctx, verification)
            except VerificationFailed as error:
                return Terminal(str(error), roll_back=True, seen=verification)
        if checks:
            return _metrics(ctx, verification, checks)
        ctx.move(PromotionState.VERIFIED)
        return Done(verification)


def _health(ctx: Context, verification: Verification) -> None:
    """The target's rollouts or sync, then the HTTP checks through the soak time; raises VerificationFailed."""
    p, promotion = ctx.project, ctx.promotion
    app = p.config.app(promotion.app)
    env = p.config.environment(promotion.environment)
    applied = ctx.output("apply", Applied)
    assert applied is not None
    seen = ctx.target().check(ctx, applied)
    verification.rollouts, verification.sync = seen.rollouts, seen.sync
    # Active checking, not waiting: the checks must keep passing for the whole soak time.
    deadline = time.monotonic() + env.soak_seconds
    while True:
        verification.rounds += 1
        results = [run_check(check) for check in app.health_checks]
        verification.results = [r.as_dict() for r in results]
        failed = [r for r in results if not r.healthy]
        if failed:
            raise VerificationFailed(
                f"{promotion.app} is unhealthy in {promotion.environment}: "
                + "; ".join(f"{r.url} {r.message}" for r in failed)
            )
        if time.monotonic() >= deadline:
            break
        time.sleep(min(1.0, max(deadline - time.monotonic(), 0)))


def _seen_before(ctx: Context) -> Verification | None:
    """What an earlier look of this step found before its metric checks began (kept on its wait)."""
    raw = ctx.promotion.waiting
    waiting = Waiting.model_validate_json(raw) if raw else None
    if waiting is None or waiting.step != "verify" or not waiting.seen:
        return None
    return Verification.model_validate(waiting.seen)


def _metrics(ctx: Context, verification: Verification, checks: list[MetricCheck]) -> StepResult:
    """Look at the checks that are due, record the looks, and judge every check on all its looks so far."""
    promotion = ctx.promotion
    env = ctx.project.config.environment(promotion.environment)
    assert env.prometheus is not None
    db, now = ctx.project.db, ctx.clock.now()
    looks: dict[str, list[MetricSample]] = {c.name: [] for c in checks}
    for sample in db.metric_samples(ctx.promotion_id):
        looks.setdefault(sample.check_name, []).append(sample)
    refused: tuple[str, TerminalError] | None = None  # a check whose look cannot work, and why
    for check in checks:
        due = metric_checks.judge(check, looks[check.name], now, env.prometheus.timeout_seconds)
        # An unreachable Prometheus gets one more look before it ends the promotion.
        if due.state not in ("looking", "unreachable") or (due.next_look and due.next_look > now) or refused:
            continue
        try:
            query = _query(ctx, check)
        except TerminalError as error:
            return Terminal(str(error), seen=verification)
        sample = MetricSample(
            promotion_id=ctx.promotion_id,
            check_name=check.name,
            query=query,
            threshold=metric_checks.threshold(check),
            outcome="error",  # until Prometheus answers
            taken_at=ctx.clock.now(),
        )
        try:
            sample.value = ctx.metrics().query(query)
            sample.outcome = metric_checks.outcome(check, sample.value)
        except TransientError as error:  # not counted; Prometheus's own timeout decides when it is too long
            sample.message = str(error)
        except TerminalError as error:  # no later look can do better: said once the look is recorded
            sample.message, refused = str(error), (check.name, error)
        looks[check.name].append(db.add_metric_sample(sample))
    verdicts = {c.name: metric_checks.judge(c, looks[c.name], now, env.prometheus.timeout_seconds) for c in checks}
    verification.metrics = [_result(c, looks[c.name], verdicts[c.name]) for c in checks]
    where = f"{promotion.app} in {promotion.environment}"
    if refused is not None:
        return Terminal(f"Metric check {refused[0]} of {where} cannot look: {refused[1]}", seen=verification)
    failed = [r for r in verification.metrics if r.state == "failed"]
    if failed:
        return Terminal(
            f"{where} failed its metric checks: "
            + "; ".join(f"{r.name}: {r.reason} — query {r.query}" for r in failed),
            roll_back=True,
            seen=verification,
        )
    unreachable = [r for r in verification.metrics if r.state == "unreachable"]
    if unreachable:
        return Terminal(
            f"The metric checks of {where} got no answer for {env.prometheus.timeout_seconds:g} s "
            f"(prometheus.timeout_seconds): {unreachable[0].reason} The release stays unverified there: roll it back "
            f"(`promoflow rollback {promotion.app} --env {promotion.environment}`) or promote it again once "
            "Prometheus answers.",
            seen=verification,
        )
    if all(r.state == "passed" for r in verification.metrics):
        ctx.move(PromotionState.VERIFIED)
        return Done(verification)
    return Wait(
        Waiting(
            step="verify",
            gate=Gate.METRICS,
            summary="metric checks " + ", ".join(_progress(r) for r in verification.metrics),
            since=ctx.started or now,
            wake_at=min(v.next_look for v in verdicts.values() if v.next_look is not None),
            seen=verification.model_dump(mode="json"),
        )
    )


def _query(ctx: Context, check: MetricCheck) -> str:
    promotion = ctx.promotion
    values = {
        "app": promotion.app,
        "environment": promotion.environment,
        "release": ctx.project.db.get_release(promotion.release_id).label,
    }
    if "{namespace}" in check.query:
        values["namespace"] = _namespace(ctx, check)
    return metric_checks.fill(check.query, **values)


def _namespace(ctx: Context, check: MetricCheck) -> str:
    """The one namespace the `kubernetes` target applied the app into."""
    applied = ctx.output("apply", Applied)
    namespaces = sorted({o.namespace for o in applied.applied if o.namespace}) if applied else []
    if len(namespaces) != 1:
        promotion = ctx.promotion
        found = f"its objects are in {', '.join(namespaces)}" if namespaces else "it applied no namespaced object"
        raise TerminalError(
            f"Metric check {check.name} asks for {{namespace}}, but {promotion.app} has no one namespace in "
            f"{promotion.environment} ({found}): write the namespace into the query."
        )
    return namespaces[0]


def _result(check: MetricCheck, looks: list[MetricSample], verdict: metric_checks.Verdict) -> MetricCheckResult:
    answered = [s for s in looks if s.outcome != "error"]
    return MetricCheckResult(
        name=check.name,
        query=looks[-1].query if looks else check.query,
        threshold=metric_checks.threshold(check),
        state=verdict.state,
        looks=verdict.looks,
        failing=verdict.failing,
        values=[s.value for s in answered],
        reason=verdict.reason,
    )


def _progress(result: MetricCheckResult) -> str:
    """`error-ratio 3 looks, 1 failing (max 0.01)`: what `promoflow status` shows while the checks look."""
    if result.state == "passed":
        return f"{result.name} passed"
    looks = f"{result.looks} look{'' if result.looks == 1 else 's'}"
    return f"{result.name} {looks}, {result.failing} failing ({result.threshold})"
