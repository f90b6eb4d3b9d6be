"""A local Prefect server kept in the state directory: started once, found again by every command."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from promoflow.errors import TerminalError

START_TIMEOUT_SECONDS = 90
QUIET_PREFECT = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_UI_ENABLED": "true",
}


@dataclass(frozen=True)
class LocalServer:
    pid: int
    url: str  # http://127.0.0.1:PORT

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"


def _info_file(state: Path) -> Path:
    return state / "prefect" / "server.json"


def _serves_home(url: str, home: Path) -> bool:
    """The server at `url` keeps its database in `home` (it is the one this state directory started)."""
    try:
        return httpx.get(f"{url}/api/admin/settings", timeout=5).json().get("home") == str(home)
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def running(state: Path) -> LocalServer | None:
    try:
        info = json.loads(_info_file(state).read_text())
        server = LocalServer(int(info["pid"]), str(info["url"]))
    except (OSError, ValueError, KeyError):
        return None
    return server if healthy(server.url) else None


def free_port(preferred: int = 4200) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise TerminalError("No free TCP port on 127.0.0.1 for the Prefect server.")


def start(state: Path, port: int | None = None) -> LocalServer:
    """Start `prefect server start` on 127.0.0.1 (or return the one already running)."""
    existing = running(state)
    if existing:
        return existing
    home = state / "prefect"
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **QUIET_PREFECT,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_API_URL": f"{url}/api",
    }
    env.pop("PREFECT_API_URL", None)
    prefect = Path(sys.executable).parent / "prefect"
    # Its database holds Secret blocks and every run's logs: private to the user, like the log.
    with open(os.open(home / "server.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        process = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            umask=0o077,
        )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    # Another server may answer on the port first (one started at the same moment took it): only ours counts.
    while not (healthy(url) and _serves_home(url, home)):
        if process.poll() is not None and healthy(url):  # it lost the port to another server: another port
            return start(state, free_port(0))
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise TerminalError(f"The Prefect server did not start; see {home / 'server.log'}.")
        time.sleep(0.3)
    _info_file(state).write_text(json.dumps({"pid": process.pid, "url": url}))
    return LocalServer(process.pid, url)


def stop(state: Path) -> bool:
    server = running(state)
    _info_file(state).unlink(missing_ok=True)
    if server is None:
        return False
    try:
        os.killpg(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _exited(server.pid):
            return True
        time.sleep(0.1)
    os.killpg(server.pid, signal.SIGKILL)
    return True


def _exited(pid: int) -> bool:
    try:  # our own child stays a zombie (and "alive" to kill(0)) until reaped
        if os.waitpid(pid, os.WNOHANG)[0]:
            return True
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def connect(state: Path, launch: bool) -> LocalServer | None:
    """Point Prefect at $PREFECT_API_URL, or at the local server in `state` (launched if asked).

    Call before importing Prefect: it reads its settings once. Returns the local server used, if any.
    """
    for key, value in QUIET_PREFECT.items():
        os.environ.setdefault(key, value)
    if os.environ.get("PREFECT_API_URL"):
        return None
    local = running(state) or (start(state) if launch else None)
    if not local:
        raise TerminalError("No Prefect server: set PREFECT_API_URL or run `promoflow server start`.")
    os.environ["PREFECT_API_URL"] = local.api_url
    return local


def without_heartbeat() -> None:
    """Run this process's flows without Prefect's flow heartbeat (call after `connect`, before running flows).

    A sync flow run joins its heartbeat thread when it ends, which rounds every run up to a whole second
    (bench/promotion). promoflow does not need it to notice a crashed run: each promotion records the
    process running it, and a re-run resumes it. For the rest of this process only (a CLI command).
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}).__enter__()
