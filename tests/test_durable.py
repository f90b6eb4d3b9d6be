"""Durable promotions: waits hold no process, and any promoflow process may die at any moment.

Real parts only: the session's Prefect server, `python -m deployments.serve` and the CLI as processes killed by
signal, a real git repository. After every restart the records, Prefect's run states and `promoflow status`
agree, and nothing is done twice (one request branch and one merge commit per environment).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Sandbox
from tests.helpers import REQUESTER, awaiting, history, run_state, served, start_cli, wait_for

pytestmark = pytest.mark.prefect


@pytest.fixture(autouse=True)
def _server(prefect_api: str) -> None:
    """Every test here talks to the session's Prefect server."""


def merges(sandbox: Sandbox, branch: str) -> list[str]:
    return sandbox.git("log", "--merges", "--format=%s", branch).splitlines()


def request_branches(sandbox: Sandbox, env: str) -> list[str]:
    return [b for b in sandbox.git("branch", "--list", f"promoflow/{env}/*").split() if b != "*"]


def suspended_waiting(sandbox: Sandbox, env: str) -> dict[str, Any] | None:
    """The promotion into `env` waiting for approval, once its run is suspended (no process holds it)."""
    found = awaiting(sandbox, env)
    if found and run_state(found["flow_run_id"]) == ("PAUSED", "Suspended"):
        return found
    return None


def status_of(sandbox: Sandbox, env: str) -> dict[str, Any]:
    rows = sandbox.cli_json("status")
    assert isinstance(rows, list)
    return next(r for r in rows if r["app"] == "web" and r["environment"] == env)


@pytest.mark.parametrize("crash", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_pipeline_waiting_for_approval_survives_its_serve_process(
    sandbox: Sandbox, tmp_path: Path, crash: signal.Signals
) -> None:
    sandbox.publish("1.2.0")
    log = tmp_path / "serve.log"
    with served(sandbox, log) as serving:
        submitted = sandbox.cli("pipeline", "web", "--no-wait", env=REQUESTER)
        assert submitted.returncode == 0, submitted.stderr
        staging = wait_for(lambda: suspended_waiting(sandbox, "staging"), timeout=120, what="staging to wait")
        serving.stop(crash)

    # Nothing runs now: the wait is in the records and in Prefect, and they agree.
    assert run_state(staging["flow_run_id"]) == ("PAUSED", "Suspended")
    assert status_of(sandbox, "staging")["waiting"]["promotion"] == staging["id"]

    # The approval is recorded even though no process can act on it yet; the run is put back on the schedule.
    approved = sandbox.cli("approve", str(staging["id"]), "--as", "uma")
    assert approved.returncode == 0, approved.stderr
    assert "put back on the schedule" in approved.stdout

    with served(sandbox, log) as serving:
        prod = wait_for(lambda: suspended_waiting(sandbox, "prod"), timeout=120, what="prod to wait")
        serving.stop(crash)
    with served(sandbox, log):
        approved = sandbox.cli("approve", str(prod["id"]), "--as", "uma")
        assert approved.returncode == 0, approved.stderr
        wait_for(
            lambda: (
                all(p["state"] == "succeeded" for p in history(sandbox, "web") if p["kind"] == "promotion")
                and len(history(sandbox, "web")) >= 4
            ),
            timeout=120,
            what="the pipeline to finish",
        )
        run = wait_for(lambda: run_state(prod["flow_run_id"])[0] == "COMPLETED", timeout=60, what="the run to complete")
        assert run

    for env in ("dev", "staging", "prod"):
        assert len(request_branches(sandbox, env)) == 1, env
        assert len(merges(sandbox, f"env/{env}")) == 1, env
        assert status_of(sandbox, env)["waiting"] is None
    decided = [a for p in history(sandbox, "web") for a in p["approvals"]]
    assert [(a["approver"], a["source"], a["counted"]) for a in decided] == [("uma", "cli", True)] * 2


def test_a_terminal_promotion_killed_while_waiting_is_carried_on_by_approve(sandbox: Sandbox) -> None:
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    running = start_cli(sandbox, "promote", "web", "--to", "staging")
    staging = wait_for(lambda: awaiting(sandbox, "staging"), what="staging to wait")
    assert run_state(staging["flow_run_id"])[0] == "PAUSED"
    running.send_signal(signal.SIGKILL)
    running.wait(timeout=30)

    # Nothing serves the deployments: the approval carries the promotion on in the approving process.
    approved = sandbox.cli("approve", str(staging["id"]), "--as", "uma")
    assert approved.returncode == 0, approved.stderr
    assert "carried on in this process" in approved.stdout

    (done,) = [p for p in history(sandbox, "web", "--env", "staging") if p["kind"] == "promotion"]
    assert done["state"] == "succeeded" and done["id"] == staging["id"]
    assert len(request_branches(sandbox, "staging")) == 1
    assert len(merges(sandbox, "env/staging")) == 1
    assert run_state(done["flow_run_id"])[0] == "COMPLETED"
