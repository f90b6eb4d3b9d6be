"""The verify step's metric checks, walked by the engine against a fake Prometheus and a clock the test moves: looks
are recorded, the step waits between them, a new process carries on from the records, and a failing check ends the
promotion for a rollback."""

from __future__ import annotations

from datetime import timedelta

import pytest

from promoflow.engine.context import Context
from promoflow.engine.results import Gate, Terminal, Wait
from promoflow.engine.runner import advance
from promoflow.engine.states import PromotionState
from promoflow.errors import TerminalError, TransientError
from promoflow.records import MetricSample
from tests.unit.fakes import FakeMetrics
from tests.unit.world import World

S = PromotionState
DEV_RETRY = "    retry: {attempts: 3, backoff_seconds: 1}\n"
CHECKS_AT = "    # health_checks:"
QUERY = 'sum(rate(errors{app="{app}",env="{environment}",v="{release}"}[1m]))'


def with_checks(world: World, check: str, prometheus: str = "{url: 'http://127.0.0.1:9', timeout_seconds: 25}") -> None:
    """dev gets a Prometheus, web the metric check `check` (YAML flow mapping fields)."""
    world.configure(DEV_RETRY, f"{DEV_RETRY}    prometheus: {prometheus}\n")
    world.configure(
        CHECKS_AT, f"    metric_checks:\n      - {{name: error-ratio, query: '{QUERY}', {check}}}\n{CHECKS_AT}"
    )


def walk(world: World, metrics: FakeMetrics, ctx: Context) -> Context:
    """The same promotion as a new process sees it: a fresh context on the records."""
    return Context(
        world.project,
        ctx.promotion_id,
        clock=world.clock,
        events=world.events,
        forge_override=world.forge,
        target_override=world.target,
        metrics_override=metrics,
    )


def samples(ctx: Context) -> list[MetricSample]:
    return ctx.project.db.metric_samples(ctx.promotion_id)


def test_a_check_looks_every_interval_between_waits_and_a_new_process_carries_on(world: World) -> None:
    with_checks(world, "max: 0.01, for_seconds: 20, interval_seconds: 10")
    metrics = FakeMetrics([0.001, 0.002, 0.004])
    ctx = walk(world, metrics, world.promote("dev"))
    started = world.clock.now()

    first = advance(ctx)
    assert isinstance(first, Wait)
    waiting = first.waiting
    assert (waiting.step, waiting.gate, waiting.wake_at) == ("verify", Gate.METRICS, started + timedelta(seconds=10))
    assert waiting.summary == "metric checks error-ratio 1 look, 0 failing (max 0.01)"
    assert world.state(ctx) == S.APPLIED
    assert metrics.queries == ['sum(rate(errors{app="web",env="dev",v="1.2.0"}[1m]))']

    # woken early (an event): nothing is due, the wait stays as it was
    again = advance(walk(world, metrics, ctx))
    assert isinstance(again, Wait) and again.waiting.wake_at == waiting.wake_at and len(metrics.queries) == 1

    for _ in (10, 20):
        world.clock.advance(10)
        result = advance(walk(world, metrics, ctx))  # each look as a new process would take it
    assert result is None and world.state(ctx) == S.SUCCEEDED
    assert world.target.checks == 1  # the rollout was judged once, before the first look
    assert [(s.outcome, s.value, s.taken_at - started) for s in samples(ctx)] == [
        ("pass", 0.001, timedelta(0)),
        ("pass", 0.002, timedelta(seconds=10)),
        ("pass", 0.004, timedelta(seconds=20)),
    ]
    [verify] = [s for s in ctx.project.db.steps(ctx.promotion_id) if s.name == "verify"]
    assert verify.outcome == "succeeded"
    assert '"rollouts": [{"object": "Deployment default/web"' in verify.detail
    assert '"values": [0.001, 0.002, 0.004]' in verify.detail


def test_a_check_past_its_failure_limit_fails_verification_for_a_rollback(world: World) -> None:
    with_checks(world, "max: 0.01, for_seconds: 300, interval_seconds: 10, failure_limit: 1")
    metrics = FakeMetrics([0.001, 0.02, 0.003, 0.5])
    ctx = walk(world, metrics, world.promote("dev"))
    result = advance(ctx)
    while isinstance(result, Wait):
        world.clock.advance(10)
        result = advance(walk(world, metrics, ctx))
    assert isinstance(result, Terminal) and result.roll_back and result.state == S.FAILED
    assert result.message == (
        "web in dev failed its metric checks: error-ratio: 2 of 4 looks failed (max 0.01, no_data: fail, "
        "failure_limit 1): 0.001, 0.02, 0.003, 0.5 — query "
        'sum(rate(errors{app="web",env="dev",v="1.2.0"}[1m]))'
    )
    assert ctx.promotion.error == result.message and ctx.promotion.waiting is None
    assert [s.outcome for s in samples(ctx)] == ["pass", "fail", "pass", "fail"]
    [verify] = [s for s in ctx.project.db.steps(ctx.promotion_id) if s.name == "verify"]
    assert verify.outcome == "failed" and '"state": "failed"' in verify.detail


def test_an_unreachable_prometheus_is_retried_until_its_own_timeout_then_fails_without_a_rollback(
    world: World,
) -> None:
    with_checks(world, "max: 0.01, for_seconds: 300, interval_seconds: 10")
    down = TransientError("Prometheus at http://127.0.0.1:9 cannot be reached (ConnectError).")
    metrics = FakeMetrics([0.001, down, down, down, down])
    ctx = walk(world, metrics, world.promote("dev"))
    result = advance(ctx)
    while isinstance(result, Wait):
        world.clock.advance(10)
        result = advance(walk(world, metrics, ctx))
    assert isinstance(result, Terminal) and not result.roll_back and result.state == S.FAILED
    assert result.message.startswith(
        "The metric checks of web in dev got no answer for 25 s (prometheus.timeout_seconds): no answer since "
    )
    assert "cannot be reached (ConnectError). The release stays unverified there: roll it back" in result.message
    assert [s.outcome for s in samples(ctx)] == ["pass", "error", "error", "error", "error"]  # 10 s .. 40 s


def test_a_query_prometheus_refuses_ends_the_promotion_at_once(world: World) -> None:
    with_checks(world, "max: 0.01, for_seconds: 300")
    refused = TerminalError("Prometheus at http://127.0.0.1:9 refused the query (400): parse error.")
    ctx = walk(world, FakeMetrics([refused]), world.promote("dev"))
    result = advance(ctx)
    assert isinstance(result, Terminal) and not result.roll_back
    assert result.message == f"Metric check error-ratio of web in dev cannot look: {refused}"
    [look] = samples(ctx)
    assert (look.outcome, look.message) == ("error", str(refused))


@pytest.mark.parametrize(("no_data", "state"), [("fail", S.FAILED), ("pass", S.SUCCEEDED)])
def test_no_data_fails_or_passes_as_configured(world: World, no_data: str, state: PromotionState) -> None:
    with_checks(world, f"max: 0.01, no_data: {no_data}")
    ctx = walk(world, FakeMetrics([None]), world.promote("dev"))
    advance(ctx)
    assert world.state(ctx) == state
    assert [s.outcome for s in samples(ctx)] == ["no_data"]


def test_a_rollback_runs_no_metric_check(world: World) -> None:
    """Its metrics still show the release it replaces for the length of their rate windows."""
    with_checks(world, "max: 0.01")
    metrics = FakeMetrics([])  # any query would fail the test
    ctx = walk(world, metrics, world.promote("dev", kind="rollback"))
    assert advance(ctx) is None and world.state(ctx) == S.SUCCEEDED
    assert samples(ctx) == [] and metrics.queries == []


def test_the_namespace_is_where_the_kubernetes_target_applied_the_app(world: World) -> None:
    world.configure(DEV_RETRY, f"{DEV_RETRY}    cluster: {{target: kubernetes, kubeconfig: nowhere}}\n")
    query = 'sum(up{namespace="{namespace}"})'
    world.configure(DEV_RETRY, f"{DEV_RETRY}    prometheus: {{url: 'http://127.0.0.1:9'}}\n")
    world.configure(CHECKS_AT, f"    metric_checks:\n      - {{name: up, query: '{query}', min: 1}}\n{CHECKS_AT}")
    metrics = FakeMetrics([1.0])
    ctx = walk(world, metrics, world.promote("dev"))
    assert advance(ctx) is None
    assert metrics.queries == ['sum(up{namespace="default"})']  # the fake target applies into `default`
