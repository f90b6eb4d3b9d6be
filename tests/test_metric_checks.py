"""Metric checks against a real Prometheus (Debian's), scraping an exporter whose counters each test sets, through
the CLI on the session's Prefect server: a healthy release passes, a release whose error ratio rises is rolled back
by itself, and no data fails, passes or waits as configured. Every look is in the records."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import Sandbox
from tests.prometheus_server import RealPrometheus
from tests.test_promotion_flows import history, start_cli, wait_for

pytestmark = pytest.mark.prefect

REQUESTER = {"PROMOFLOW_USER": "rita"}
DEV_RETRY = "    retry: {attempts: 3, backoff_seconds: 1}\n"
CHECKS_AT = "    # health_checks:"


@pytest.fixture(autouse=True)
def _server(prefect_api: str) -> None:
    """Every test here talks to the session's Prefect server."""


def error_ratio(test: str) -> str:
    labels = f'test="{test}",app="{{app}}",env="{{environment}}",version="{{release}}"'
    return (
        f'sum(rate(http_requests_total{{{labels},code=~"5.."}}[5s])) / sum(rate(http_requests_total{{{labels}}}[5s]))'
    )


def configure(sandbox: Sandbox, prometheus: RealPrometheus, check: dict[str, Any]) -> None:
    """dev asks the test's Prometheus; web gets the metric check `check`."""
    sandbox.edit_config(DEV_RETRY, f"{DEV_RETRY}    prometheus: {{url: '{prometheus.url}', timeout_seconds: 30}}\n")
    fields = ", ".join(
        f"{key}: {value!r}" if isinstance(value, str) else f"{key}: {value}" for key, value in check.items()
    )
    sandbox.edit_config(CHECKS_AT, f"    metric_checks:\n      - {{{fields}}}\n{CHECKS_AT}")


def dev_promotions(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    return {p["kind"]: p for p in history(sandbox, "web", "--env", "dev")}


def looks(sandbox: Sandbox, kind: str = "promotion") -> list[dict[str, Any]]:
    found = dev_promotions(sandbox).get(kind)
    return list(found["metric_samples"]) if found else []


def recorded(sandbox: Sandbox) -> int:
    """How many looks the promotion into dev has recorded so far (read from the records while it runs)."""
    db = sandbox.db()
    found = next((p for p in db.promotions("web", "dev") if p.kind == "promotion"), None)
    return len(db.metric_samples(found.id)) if found else 0


def artifact(promotion_id: int) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def read() -> str:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"promotion-{promotion_id}"]))
            )
        return str(max(found, key=lambda a: a.created).data)  # type: ignore[arg-type,return-value]

    return asyncio.run(read())


def test_a_healthy_release_passes_its_metric_checks(sandbox: Sandbox, prometheus: RealPrometheus) -> None:
    web = prometheus.exporter.app("healthy", app="web", env="dev", version="1.2.0")
    web.errors_per_scrape = 0
    query = error_ratio("healthy")
    filled = query.replace("{app}", "web").replace("{environment}", "dev").replace("{release}", "1.2.0")
    prometheus.wait_for(filled, "the healthy app's error ratio")
    configure(
        sandbox,
        prometheus,
        {"name": "error-ratio", "query": query, "max": 0.05, "for_seconds": 3, "interval_seconds": 1},
    )
    sandbox.publish("1.2.0")

    promoted = sandbox.cli("promote", "web", "--to", "dev", "--release", "1.2.0", env=REQUESTER)
    assert promoted.returncode == 0, promoted.stderr

    promotion = dev_promotions(sandbox)["promotion"]
    assert promotion["state"] == "succeeded"
    seen = looks(sandbox)
    assert {s["outcome"] for s in seen} == {"pass"}
    first, last = (datetime.fromisoformat(seen[i]["taken_at"]) for i in (0, -1))
    assert len(seen) >= 2 and (last - first).total_seconds() >= 3  # a look right away, the last 3 s or more later
    assert {(s["check_name"], s["query"], s["threshold"]) for s in seen} == {("error-ratio", filled, "max 0.05")}
    assert all(s["value"] == 0 for s in seen)
    [verify] = [s for s in promotion["steps"] if s["name"] == "verify"]
    assert verify["outcome"] == "succeeded" and verify["detail"]["metrics"][0]["state"] == "passed"
    shown = artifact(promotion["id"])
    assert f"| error-ratio | max 0.05 | {len(seen)} | 0 | 0 | 0 | {'▅' * len(seen)} | 0 |" in shown
    assert f"- error-ratio: `{filled}`" in shown


def test_a_release_whose_error_ratio_rises_is_rolled_back_by_itself(
    sandbox: Sandbox, prometheus: RealPrometheus, background: list[subprocess.Popen[str]]
) -> None:
    web = prometheus.exporter.app("rises", app="web", env="dev", version="1.2.0")
    query = error_ratio("rises")
    filled = query.replace("{app}", "web").replace("{environment}", "dev").replace("{release}", "1.2.0")
    prometheus.wait_for(filled, "the app's error ratio")
    check = {"name": "error-ratio", "query": query, "max": 0.05, "for_seconds": 120, "interval_seconds": 1}
    configure(sandbox, prometheus, {**check, "failure_limit": 1})
    sandbox.publish("1.2.0")

    promoting = start_cli(sandbox, "promote", "web", "--to", "dev", "--release", "1.2.0")
    background.append(promoting)
    wait_for(lambda: recorded(sandbox) >= 2 or promoting.poll() is not None, 120, "two looks at the healthy release")
    web.errors_per_scrape = 5  # half the requests fail from now on
    _, said = promoting.communicate(timeout=120)  # the check fails long before its 120 s are over

    assert promoting.returncode == 1, said
    assert "web in dev failed its metric checks: error-ratio: 2 of" in said and "Traceback" not in said
    by_kind = dev_promotions(sandbox)
    promotion, rollback = by_kind["promotion"], by_kind["rollback"]
    assert promotion["state"] == "rolled_back"
    assert promotion["error"].startswith("web in dev failed its metric checks: error-ratio: 2 of ")
    assert "looks failed (max 0.05, no_data: fail, failure_limit 1): 0, " in promotion["error"]
    assert promotion["error"].endswith(f" — query {filled}")
    assert (rollback["state"], rollback["rollback_of"], rollback["release"]["label"]) == (
        "succeeded",
        promotion["id"],
        "1.1.0",
    )
    assert rollback["metric_samples"] == []  # a rollback is not held to the checks

    seen = looks(sandbox)
    outcomes = [s["outcome"] for s in seen]
    assert outcomes[:2] == ["pass", "pass"] and outcomes.count("fail") == 2 and outcomes[-1] == "fail"
    assert [s["value"] for s in seen if s["outcome"] == "fail"][-1] > 0.05
    for value in (s["value"] for s in seen if s["outcome"] == "fail"):
        assert f"{value:.4g}" in promotion["error"]  # the values seen are in the message
    [verify] = [s for s in promotion["steps"] if s["name"] == "verify"]
    assert verify["outcome"] == "failed" and verify["detail"]["metrics"][0]["state"] == "failed"
    status = {(s["app"], s["environment"]): s for s in sandbox.cli_json("status")}  # type: ignore[union-attr]
    assert status[("web", "dev")]["rejected_releases"] == [promotion["release"]["id"]]
    assert status[("web", "dev")]["current_release"]["label"] == "1.1.0"


@pytest.mark.parametrize(("no_data", "state", "exit_code"), [("fail", "rolled_back", 1), ("pass", "succeeded", 0)])
def test_no_data_fails_or_passes_as_configured(
    sandbox: Sandbox, prometheus: RealPrometheus, no_data: str, state: str, exit_code: int
) -> None:
    query = f'sum(rate(never_exported_total{{test="no-data-{no_data}",app="{{app}}"}}[5s]))'
    configure(sandbox, prometheus, {"name": "traffic", "query": query, "min": 1, "no_data": no_data})
    sandbox.publish("1.2.0")

    promoted = sandbox.cli("promote", "web", "--to", "dev", "--release", "1.2.0", env=REQUESTER)
    assert promoted.returncode == exit_code, promoted.stderr
    promotion = dev_promotions(sandbox)["promotion"]
    assert promotion["state"] == state
    [look] = looks(sandbox)
    assert (look["outcome"], look["value"]) == ("no_data", None)
    if no_data == "fail":
        assert "1 of 1 looks failed (min 1, no_data: fail, failure_limit 0): no data" in promotion["error"]
        assert dev_promotions(sandbox)["rollback"]["state"] == "succeeded"


def test_no_data_waits_for_a_metric_that_appears_after_the_change(
    sandbox: Sandbox, prometheus: RealPrometheus, background: list[subprocess.Popen[str]]
) -> None:
    web = prometheus.exporter.app("no-data-wait", app="web")
    query = 'max(app_ready{test="no-data-wait",app="{app}"})'
    # for_seconds: how long it may wait for data, then how long the data must hold
    check = {"name": "ready", "query": query, "min": 1, "for_seconds": 15, "interval_seconds": 1}
    configure(sandbox, prometheus, {**check, "no_data": "wait"})
    sandbox.publish("1.2.0")

    promoting = start_cli(sandbox, "promote", "web", "--to", "dev", "--release", "1.2.0")
    background.append(promoting)
    wait_for(lambda: recorded(sandbox) >= 1 or promoting.poll() is not None, 120, "a look without data")
    web.ready = True  # the new pods report from now on
    _, said = promoting.communicate(timeout=180)

    assert promoting.returncode == 0, said
    assert dev_promotions(sandbox)["promotion"]["state"] == "succeeded"
    outcomes = [s["outcome"] for s in looks(sandbox)]
    assert outcomes[0] == "no_data" and outcomes[-1] == "pass"
    assert set(outcomes[outcomes.index("pass") :]) == {"pass"}  # the metric stays once it is there


def test_a_check_carries_on_from_its_records_when_its_process_was_killed(
    sandbox: Sandbox, prometheus: RealPrometheus, background: list[subprocess.Popen[str]]
) -> None:
    prometheus.exporter.app("killed", app="web")
    query = 'sum(rate(http_requests_total{test="killed",app="{app}",code=~"5.."}[5s]))'
    prometheus.wait_for(query.replace("{app}", "web"), "the app's errors")
    check = {"name": "errors", "query": query, "max": 0.5, "for_seconds": 15, "interval_seconds": 1}
    configure(sandbox, prometheus, check)
    sandbox.publish("1.2.0")

    promoting = start_cli(sandbox, "promote", "web", "--to", "dev", "--release", "1.2.0")
    background.append(promoting)
    wait_for(lambda: recorded(sandbox) >= 2 or promoting.poll() is not None, 120, "two looks")
    os.kill(promoting.pid, signal.SIGKILL)
    promoting.wait(timeout=30)
    db = sandbox.db()
    [killed] = [p for p in db.promotions("web", "dev") if p.kind == "promotion"]
    assert killed.state == "applied" and killed.id is not None
    before = [(s.taken_at, s.value) for s in db.metric_samples(killed.id)]

    resumed = sandbox.cli("resume", str(killed.id), env=REQUESTER)
    assert resumed.returncode == 0, resumed.stderr
    assert "carried on in this process" in resumed.stdout

    promotion = dev_promotions(sandbox)["promotion"]
    assert promotion["state"] == "succeeded"
    after = db.metric_samples(killed.id)
    assert [(s.taken_at, s.value) for s in after[: len(before)]] == before  # the looks before the kill count
    assert (after[-1].taken_at - after[0].taken_at).total_seconds() >= 15
    assert [s["outcome"] for s in promotion["steps"] if s["name"] == "verify"] == ["succeeded"]  # one record
