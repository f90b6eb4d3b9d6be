"""Shared real parts: one Prefect server per test session, a fresh sandbox (git repo + OCI layout) per test."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.kube_servers import kube_server, real_kube
from tests.prometheus_server import prometheus

# fixtures: a real kube-apiserver per test process, and the stand-in; a real Prometheus per test process
__all__ = ["kube_server", "prometheus", "real_kube"]

if TYPE_CHECKING:
    from playwright.sync_api import Browser

ROOT = Path(__file__).resolve().parent.parent

# Telemetry off (offline machine); set before anything imports Prefect.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `prefect server start` on 127.0.0.1, shared by the session, stopped by PID at the end."""
    from promoflow import server

    state = tmp_path_factory.mktemp("prefect-server")
    running = server.start(state, port=server.free_port(0))
    os.environ["PREFECT_API_URL"] = running.api_url
    os.environ["PREFECT_HOME"] = str(state / "client")
    if "prefect.context" in sys.modules:
        # Prefect read its settings when a test before this one imported it: read them again, or this
        # process keeps no API URL and every flow run says "No Prefect server".
        sys.modules["prefect.context"].refresh_global_settings_context()
    try:
        yield running.api_url
    finally:
        server.stop(state)


@pytest.fixture(autouse=True)
def _prefect_left_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used the session's Prefect server: its deployments and unfinished flow runs are deleted.
    The next test on this server must not find a deployment left READY by a killed serve process (a watch hands
    its releases to it instead of running the pipeline), nor runs that a new serve process would pick up with
    another test's promotions.yaml."""
    yield
    api = os.environ.get("PREFECT_API_URL")
    if "prefect_api" not in request.fixturenames or not api:
        return
    import httpx

    unfinished = ["SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"]
    with httpx.Client(base_url=api, timeout=30) as client:

        def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
            # The server may reset a kept-alive connection (seen in CI): each request here may be repeated.
            for attempt in range(3):
                try:
                    return client.request(method, url, **kwargs)
                except httpx.TransportError:
                    if attempt == 2:
                        raise
                    time.sleep(1)
            raise AssertionError("unreachable")

        for deployment in request("POST", "/deployments/filter", json={}).json():
            request("DELETE", f"/deployments/{deployment['id']}")
        query = {"flow_runs": {"state": {"type": {"any_": unfinished}}}}
        for run in request("POST", "/flow_runs/filter", json=query).json():
            request("DELETE", f"/flow_runs/{run['id']}")


@dataclass
class Sandbox:
    """A demo-shaped project in a temporary directory: promotions.yaml, repo.git, an OCI layout, records."""

    base: Path

    @property
    def config(self) -> Path:
        return self.base / "promotions.yaml"

    @property
    def repo(self) -> Path:
        return self.base / ".promoflow" / "demo" / "repo.git"

    @property
    def layout(self) -> Path:
        return self.base / ".promoflow" / "demo" / "oci" / "web"

    def publish(self, tag: str, payload: bytes | None = None) -> str:
        from promoflow.sources import oci_layout

        return oci_layout.publish(self.layout, tag, payload=payload)

    def edit_config(self, old: str, new: str) -> None:
        text = self.config.read_text()
        assert old in text, old
        self.config.write_text(text.replace(old, new))

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, cwd=self.base, env=env, timeout=timeout)

    def cli_json(self, *args: str) -> object:
        result = self.cli(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", "--git-dir", str(self.repo), *args], check=True, capture_output=True, text=True
        ).stdout

    def db(self):  # type: ignore[no-untyped-def]
        from promoflow.project import Project

        return Project.load(self.config).db

    def waiting(self, env: str):  # type: ignore[no-untyped-def]
        """The promotion of web waiting for approval in `env`, if any (from the records, without the CLI)."""
        return next((p for p in self.db().promotions("web", env) if p.state == "awaiting_approval"), None)


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 180, inherit: bool = True
) -> subprocess.CompletedProcess[str]:
    """`promoflow ARGS` in a subprocess; `env` adds to this process's environment, or replaces it (`inherit=False`:
    nothing of the session, such as the shared Prefect server's PREFECT_API_URL, reaches the command)."""
    return subprocess.run(
        [sys.executable, "-m", "promoflow", *args],
        cwd=cwd,
        env={**(os.environ if inherit else {}), "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    from promoflow import demo

    demo.write_config(tmp_path)
    demo.build_sandbox(tmp_path)
    return Sandbox(tmp_path)


@pytest.fixture
def background() -> Iterator[list[subprocess.Popen[str]]]:
    """CLI processes a test starts in the background; any still running (waiting for an approval) at its end are
    killed."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate()


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module", name="chromium")
def chromium_fixture() -> Iterator[Callable[[], Browser]]:
    """Debian's chromium under Playwright, launched on first use; its absence fails the test (never skips)."""
    running: list[Browser] = []
    with contextlib.ExitStack() as stack:

        def get() -> Browser:
            if not CHROMIUM.exists():
                pytest.fail(
                    f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`); "
                    "these tests drive it through Playwright and never download a browser.",
                    pytrace=False,
                )
            if not running:
                from playwright.sync_api import sync_playwright

                playwright = stack.enter_context(sync_playwright())
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
                stack.callback(browser.close)
                running.append(browser)
            return running[0]

        yield get


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL cluster in a temporary directory on 127.0.0.1; yields its base URL."""
    from promoflow.errors import TerminalError
    from promoflow.sandbox.postgres import throwaway_postgres

    try:
        with throwaway_postgres() as cluster:
            yield cluster.url("psycopg").rsplit("/", 1)[0]
    except TerminalError as error:
        pytest.fail(str(error))


@pytest.fixture
def postgres_url(postgres_server: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database for one test."""
    import re

    import sqlalchemy

    name = "t_" + re.sub(r"\W", "_", request.node.name.lower())[-50:]
    engine = sqlalchemy.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"{postgres_server}/{name}"
