"""What many test modules share: reading the records through the CLI, polling until something holds, running the
CLI, the served deployments and the webhook receiver as processes, and reading Prefect's view of a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from tests.conftest import ROOT, Sandbox
from tests.registry_fixtures import RunningRegistry, notifying, start_registry

T = TypeVar("T")
REQUESTER = {"PROMOFLOW_USER": "rita"}
# The served watch and reconcile at start only (not every minute, every 30 s): runs only where a test wants them.
RARELY = {"PROMOFLOW_RECONCILE_INTERVAL": "3600", "PROMOFLOW_WATCH_INTERVAL": "3600"}
# A served reconcile every 10 s, not 2: each run is a new Python process of the serve process (at most 5 at once),
# and one every 2 s on a loaded machine queued faster than they finished, so a woken promotion waited minutes for
# its turn (failed in CI three times in test_freezes, once in test_durable).
OFTEN = {"PROMOFLOW_RECONCILE_INTERVAL": "10"}
# docker-compose.yml's worker: its command (python and prefect of this venv) and its settings of Prefect (how often it
# polls the pool, the runs' heartbeats)
_COMPOSE_WORKER = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["worker"]
WORKER_COMMAND = [
    {"python": sys.executable, "prefect": str(Path(sys.executable).parent / "prefect")}.get(arg, arg)
    for arg in _COMPOSE_WORKER["command"]
    if arg != "--with-healthcheck"  # port 8080: one per machine
]
WORKER_ENVIRONMENT = {
    key: str(value)
    for key, value in _COMPOSE_WORKER["environment"].items()
    if key.startswith(("PREFECT_WORKER_", "PREFECT_FLOWS_"))
}
# staging without its approval: what holds a promotion there is what the test sets up
NO_APPROVAL = ("required: 1                 # one approval before the merge", "required: 0")


def wait_for(predicate: Callable[[], T], timeout: float = 60, what: str = "condition", every: float = 0.25) -> T:
    """Poll until `predicate` returns something truthy (returned); fail saying `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def history(sandbox: Sandbox, *args: str) -> list[dict[str, Any]]:
    data = sandbox.cli_json("history", *args)
    assert isinstance(data, list)
    return data


def merges(sandbox: Sandbox, branch: str) -> list[str]:
    return sandbox.git("log", "--merges", "--format=%s", branch).splitlines()


def request_branches(sandbox: Sandbox, env: str) -> list[str]:
    return [b for b in sandbox.git("branch", "--list", f"promoflow/{env}/*").split() if b != "*"]


def promotion(sandbox: Sandbox, promotion_id: int) -> dict[str, Any]:
    return next(p for p in history(sandbox) if p["id"] == promotion_id)


def awaiting(sandbox: Sandbox, env: str) -> dict[str, Any] | None:
    return next((p for p in history(sandbox) if p["environment"] == env and p["state"] == "awaiting_approval"), None)


def status_of(sandbox: Sandbox, env: str, app: str = "web") -> dict[str, Any]:
    """`promoflow status --json`'s row for an app in an environment."""
    rows = sandbox.cli_json("status")
    assert isinstance(rows, list)
    return next(r for r in rows if r["app"] == app and r["environment"] == env)


def start_cli(sandbox: Sandbox, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "promoflow", *args],
        cwd=sandbox.base,
        env={**os.environ, **REQUESTER, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@contextmanager
def running_cli(sandbox: Sandbox, *args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """`start_cli`, killed on the way out if the test did not see it end."""
    run = start_cli(sandbox, *args, env=env)
    try:
        yield run
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()


def flow_run(run_id: str) -> dict[str, Any]:
    """Prefect's view of a flow run (the session server's API)."""
    answer = httpx.get(f"{os.environ['PREFECT_API_URL']}/flow_runs/{run_id}", timeout=10)
    answer.raise_for_status()
    data: dict[str, Any] = answer.json()
    return data


def run_state(run_id: str) -> tuple[str, str]:
    """(type, name) of a flow run's state: ("PAUSED", "Suspended"), ("COMPLETED", "Completed") ..."""
    state = flow_run(run_id)["state"]
    return state["type"], state["name"]


class Served:
    """`python -m deployments.serve` for a sandbox's promotions.yaml, as an operator runs it."""

    def __init__(self, sandbox: Sandbox, log: Path, env: dict[str, str] | None = None) -> None:
        self.sandbox, self.log, self.env = sandbox, log, env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Served:
        self.started = datetime.now(UTC)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "deployments.serve"],
                cwd=ROOT,  # the deployments' entrypoints are relative to the checkout
                env={**os.environ, "PROMOFLOW_CONFIG": str(self.sandbox.config), **REQUESTER, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._ready, timeout=90, what="the deployments to be served", every=0.5)
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"deployments.serve exited {self.process.returncode}: {self.log.read_text()[-3000:]}")
        answer = httpx.get(f"{os.environ['PREFECT_API_URL']}/deployments/name/promote/promote", timeout=10)
        if answer.status_code != 200 or answer.json().get("status") != "READY":
            return False
        # Polled by this process, which registered every deployment first: a serve process of an earlier test
        # leaves the deployments READY (and as it registered them, e.g. `tick` without schedules) for a minute.
        polled = answer.json().get("last_polled")
        return polled is not None and datetime.fromisoformat(polled) >= self.started

    def idle(self) -> bool:
        """No run's process is left under it (a suspended run's process has exited and been reaped)."""
        assert self.process is not None
        tasks = Path(f"/proc/{self.process.pid}/task")
        return not any((task / "children").read_text().split() for task in tasks.iterdir())

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        if self.process is not None:
            stop(self.process, how)


class Receiving:
    """`promoflow webhook --watch-here` for a sandbox on 127.0.0.1:`port`, as an operator runs it: the receiver that
    runs the watch of a push and hosts the pipelines it starts; without `watch_here`, the receiver that runs the
    watch and hands the releases to the `pipeline` deployment's workers (or, with none, the push to Prefect as an
    event for the `watch` deployment's trigger)."""

    def __init__(self, sandbox: Sandbox, port: int, secret: str, log: Path, watch_here: bool = True) -> None:
        self.sandbox, self.port, self.secret, self.log = sandbox, port, secret, log
        self.mode = ["--watch-here"] if watch_here else []
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Receiving:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "promoflow", "webhook", *self.mode, "--port", str(self.port)],
                cwd=self.sandbox.base,
                env={**os.environ, "PROMOFLOW_WEBHOOK_SECRET": self.secret},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._up, timeout=240, what="the webhook receiver to answer", every=0.2)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _up(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the receiver exited {self.process.returncode}: {self.log.read_text()[-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        if self.process is not None:
            stop(self.process, how)


def stop(process: subprocess.Popen[bytes], how: signal.Signals) -> None:
    """Stop a process started in its own session by signal: SIGTERM to it alone, as a redeploy does (`docker stop`);
    SIGKILL to it and every process it started, as a machine dying does."""
    if process.poll() is not None:
        return
    if how == signal.SIGKILL:
        os.killpg(process.pid, how)
    else:
        process.send_signal(how)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@contextmanager
def served(sandbox: Sandbox, log: Path, env: dict[str, str] | None = None) -> Iterator[Served]:
    running = Served(sandbox, log, env).start()
    try:
        yield running
    finally:
        running.stop(signal.SIGKILL)
        drop_interval_runs()


def drop_interval_runs() -> None:
    """What the served `watch` (one run at a time) and `reconcile` leave on the session's Prefect server for the next
    test that serves them: their runs due while nothing serves them (interval and triggered ones) are dropped, or
    they would all start at once with the next serve process; a run killed with the serve process is ended (named
    apart from Crashed: that would trigger yet another reconcile), or a watch's would hold the deployment's one slot
    until its lease (300 s) ends."""
    api = os.environ["PREFECT_API_URL"]
    query = {
        "deployments": {"name": {"any_": ["watch", "reconcile"]}},
        "flow_runs": {"state": {"type": {"any_": ["SCHEDULED", "PENDING", "RUNNING"]}}},
    }
    for run in httpx.post(f"{api}/flow_runs/filter", json=query, timeout=30).json():
        if run["state_type"] != "SCHEDULED":
            state = {"type": "CRASHED", "name": "Killed", "message": "its serve process was killed"}
            httpx.post(f"{api}/flow_runs/{run['id']}/set_state", json={"state": state, "force": True}, timeout=30)
        else:
            httpx.delete(f"{api}/flow_runs/{run['id']}", timeout=30)


@contextmanager
def receiving(sandbox: Sandbox, port: int, secret: str, log: Path, watch_here: bool = True) -> Iterator[Receiving]:
    running = Receiving(sandbox, port, secret, log, watch_here).start()
    try:
        yield running
    finally:
        running.stop(signal.SIGKILL)


def registry_for_web(sandbox: Sandbox, workdir: Path, port: int, secret: str) -> RunningRegistry:
    """A real registry (Debian's docker-registry) notifying the webhook receiver on 127.0.0.1:`port` of every push;
    the sandbox's web takes its releases from the registry's `demo/web`. The caller stops it."""
    registry = start_registry(workdir / "registry", workdir / "storage", notifying(port, secret))
    sandbox.edit_config(
        "          oci_layout: .promoflow/demo/oci/web     # an OCI image-layout directory",
        f"          registry: {registry.url}\n          repository: demo/web",
    )
    return registry


def register_deployments(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """What docker-compose.yml's `deploy` service runs: the work pool, the deployments, the heartbeat automation."""
    return subprocess.run(
        ["sh", str(ROOT / "deploy" / "register-deployments.sh")],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
