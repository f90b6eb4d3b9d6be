"""Promotions waiting for a deployment window, and the processes holding them dying meanwhile: the serve process
killed (kill -9) or stopped (SIGTERM) while a promotion waits, suspended, for its environment's window; a terminal
`promoflow promote` killed while it waits in place. Once the window opens, each promotion completes exactly once
(one request branch, one merge, one apply), and the records, Prefect's run state and `promoflow status` agree.

Real parts: the session's Prefect server, `python -m deployments.serve` and the CLI as processes killed by signal,
a real git repository. A window's cron starts on a whole minute: each test gives staging one opening a little
ahead, so it waits at most about two minutes.
"""

from __future__ import annotations

import json
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from promoflow.holds import stamp
from tests.conftest import Sandbox
from tests.helpers import (
    NO_APPROVAL,
    RARELY,
    REQUESTER,
    flow_run,
    merges,
    promotion,
    request_branches,
    run_state,
    served,
    start_cli,
    status_of,
    wait_for,
)

pytestmark = pytest.mark.prefect
# Served deployments are named the same in every test: tests that serve them share one xdist worker.
SERVED = pytest.mark.xdist_group("served")


@pytest.fixture(autouse=True)
def _server(prefect_api: str) -> None:
    """Every test here talks to the session's Prefect server."""


def window_opening(sandbox: Sandbox, after: float, keep_approval: bool = False) -> datetime:
    """Give staging one window (and no approval, unless `keep_approval`): from the first whole minute at least `after`
    seconds from now (cron, UTC), for 10 minutes, long enough for a slow restart to find it still open. Returns its
    opening."""
    opens = (datetime.now(UTC) + timedelta(seconds=after)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    if not keep_approval:
        sandbox.edit_config(*NO_APPROVAL)
    sandbox.edit_config(
        "    branch: env/staging\n",
        f'    branch: env/staging\n    windows: [{{cron: "{opens.minute} {opens.hour} * * *", duration: 10m}}]\n',
    )
    return opens


def held_by_the_window(sandbox: Sandbox, run: tuple[str, str] | str) -> dict[str, Any] | None:
    """What `status --json` says of the promotion into staging the window holds, once Prefect has its run in
    `run`: a state (type, name), or a type."""
    wait = next((w for w in status_of(sandbox, "staging")["waiting"] if w["gate"] == "window"), None)
    if wait is None:
        return None
    state = run_state(promotion(sandbox, wait["promotion"])["flow_run_id"])
    return wait if run in (state, state[0]) else None


def says_it_waits_for(sandbox: Sandbox, wait: dict[str, Any], opens: datetime) -> None:
    """`promoflow status`, as JSON and as a table, says the promotion waits for staging's window, and until when."""
    assert datetime.fromisoformat(wait["until"]) == opens
    assert wait["waiting_for"].startswith("a window of staging to open (")
    assert wait["waiting_for"].endswith(f"; next at {stamp(opens)})")
    text = sandbox.cli("status").stdout
    assert "a window of staging to open" in text and stamp(opens) in text, text


def reconcile_now() -> None:
    """A run of the served reconcile, as its interval starts one (every 30 s by default). Prefect's scheduler makes
    the interval's runs of a re-registered deployment late, or several at once, on a loaded machine: one run, now."""
    api = os.environ["PREFECT_API_URL"]
    deployment = httpx.get(f"{api}/deployments/name/reconcile/reconcile", timeout=10).json()
    httpx.post(f"{api}/deployments/{deployment['id']}/create_flow_run", json={}, timeout=10).raise_for_status()


def opened(opens: datetime) -> bool:
    return datetime.now(UTC) >= opens


def completed_once(sandbox: Sandbox, pid: int, opens: datetime) -> dict[str, Any]:
    """The promotion succeeded, entering staging only once its window had opened, with one request, one merge and
    one apply; its run completed and `status` shows nothing waiting. Returns the promotion."""
    done = promotion(sandbox, pid)
    assert done["state"] == "succeeded"
    (entry,) = [s for s in done["steps"] if s["name"] == "entry"]
    assert datetime.fromisoformat(entry["started_at"]) < opens <= datetime.fromisoformat(entry["ended_at"])
    assert [s["outcome"] for s in done["steps"] if s["name"] == "apply"] == ["succeeded"]
    assert len(request_branches(sandbox, "staging")) == 1 and len(merges(sandbox, "env/staging")) == 1
    assert run_state(done["flow_run_id"]) == ("COMPLETED", "Completed")
    assert status_of(sandbox, "staging")["waiting"] == []
    return done


@SERVED
@pytest.mark.parametrize("crash", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_promotion_waiting_for_a_window_survives_its_serve_process(
    sandbox: Sandbox, tmp_path: Path, crash: signal.Signals
) -> None:
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    log = tmp_path / "serve.log"
    with served(sandbox, log, env=RARELY) as serving:
        opens = window_opening(sandbox, after=40)
        submitted = sandbox.cli("promote", "web", "--to", "staging", "--no-wait", "--json", env=REQUESTER)
        assert submitted.returncode == 0, submitted.stderr
        pid = json.loads(submitted.stdout)["promotion"]
        wait = wait_for(
            lambda: held_by_the_window(sandbox, ("PAUSED", "Suspended")), timeout=240, what="the window to hold it"
        )
        assert wait["promotion"] == pid
        run = promotion(sandbox, pid)["flow_run_id"]
        wait_for(serving.idle, timeout=240, what="the suspended run's process to exit")  # else a stop cancels it
        serving.stop(crash)

    # Nothing runs it now; Prefect, the records and status say the same: it waits for the window, until its opening.
    assert run_state(run) == ("PAUSED", "Suspended")
    assert promotion(sandbox, pid)["state"] == "pending"
    (wait,) = status_of(sandbox, "staging")["waiting"]
    says_it_waits_for(sandbox, wait, opens)
    assert merges(sandbox, "env/staging") == []

    wait_for(lambda: opened(opens), timeout=180, what="the window to open")
    with served(sandbox, log, env=RARELY):
        reconcile_now()
        wait_for(lambda: run_state(run)[0] == "COMPLETED", timeout=240, what="its run to complete")
    done = completed_once(sandbox, pid, opens)
    assert done["flow_run_id"] == run  # the suspended run went on: no second one


@pytest.mark.parametrize("crash", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_terminal_promotion_killed_while_waiting_for_a_window_is_resumed_once_it_opens(
    sandbox: Sandbox, crash: signal.Signals
) -> None:
    """Waiting in place in a terminal, its process killed (or stopped by SIGTERM): once the window opens, `promoflow
    resume` carries the promotion on in a new run of its own process, once; the dead run ends Crashed (Abandoned,
    saying where its work went, if nothing ended it as it died)."""
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    opens = window_opening(sandbox, after=30)
    running = start_cli(sandbox, "promote", "web", "--to", "staging")
    wait = wait_for(lambda: held_by_the_window(sandbox, "RUNNING"), timeout=240, what="the window to hold it")
    pid, run = wait["promotion"], promotion(sandbox, wait["promotion"])["flow_run_id"]
    os.killpg(running.pid, crash)
    running.wait(timeout=30)

    # Its process is gone; the records and status still say what it waits for.
    (wait,) = status_of(sandbox, "staging")["waiting"]
    says_it_waits_for(sandbox, wait, opens)
    assert merges(sandbox, "env/staging") == []

    wait_for(lambda: opened(opens), timeout=180, what="the window to open")
    resumed = sandbox.cli("resume", str(pid), env=REQUESTER)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip().endswith("it carried on in this process."), resumed.stdout
    done = completed_once(sandbox, pid, opens)
    assert done["flow_run_id"] != run
    stopped = flow_run(run)["state"]
    if crash == signal.SIGKILL:  # nothing ended it as it died: `resume` did, saying where its work went
        assert (stopped["type"], stopped["name"]) == ("CRASHED", "Abandoned"), stopped
        assert f"promotion {pid} carries on in process" in stopped["message"]
    else:  # Prefect's engine ended it as the signal came
        assert (stopped["type"], stopped["name"]) == ("CRASHED", "Crashed"), stopped
