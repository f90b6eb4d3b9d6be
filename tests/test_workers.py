"""The multi-machine topology of docker-compose.yml, natively: PostgreSQL, a Prefect server on it, a process work pool
with the deployments of deployments/prefect.yaml, two promoflow workers (docker-compose.yml's worker command: Prefect's
process worker that starts pipeline and watch runs in its own process), the webhook receiver, which runs the watch of
a push itself and hands the releases to the workers.

Ten apps take one release through dev -> staging -> prod at once, with approvals; one worker dies with its flow
runs (SIGKILL to it and to every process it started, as when its machine dies) while promotions run. Every
promotion still finishes, on the other worker, none twice. While every app then waits for its prod approval, the
other worker dies (kill -9) and the next is redeployed (SIGTERM, a new worker started): the approvals resume the
pipelines on the new one. And with GitHub: a pipeline survives its worker dying while it waits for a required
check, then again while it waits for a deployment window (kill -9 then a redeploy's SIGTERM, or the other way).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments import heartbeats
from promoflow.sandbox.github import GitHubStandIn
from promoflow.server import free_port
from tests.conftest import Sandbox
from tests.helpers import (
    WORKER_COMMAND,
    WORKER_ENVIRONMENT,
    Receiving,
    history,
    merges,
    promotion,
    register_deployments,
    request_branches,
    run_state,
    status_of,
    stop,
    wait_for,
)
from tests.kube_servers import StandIn
from tests.registry_fixtures import Pushed, notifying, push_index, start_registry
from tests.test_durable import THEN_STAGING, suspended_waiting, waits_for_its_check
from tests.test_github_flow import PEOPLE, REPO, TOKENS, configure, github_section, merged, pulls
from tests.test_window_restarts import (
    completed_once,
    held_by_the_window,
    opened,
    reconcile_now,
    says_it_waits_for,
    window_opening,
)

pytestmark = [pytest.mark.prefect, pytest.mark.postgres]

APPS = [f"svc{n}" for n in range(10)]
ENVIRONMENTS = ("dev", "staging", "prod")
IMAGE, REPOSITORY = "registry.example.com/fleet/app", "fleet/app"
BASELINE, RELEASE = "0.9.0", "1.0.0"  # what the branches name at first (never published); what is pushed
APPROVER = "uma"
WEBHOOK_SECRET = "workers-webhook-secret-5b0e1d"
STAGING_ROLLOUT_SECONDS = 20

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {app}
  labels: {{app: {app}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {app}}}
  template:
    metadata:
      labels: {{app: {app}}}
    spec:
      containers:
        - name: app
          image: {image}:{tag}
"""


def config_text(registry: str) -> str:
    lines = [
        "version: 1",
        "repository: {url: .promoflow/demo/repo.git, forge: local, layout: branches}",
        "environments:",
    ]
    for env in ENVIRONMENTS:
        approval = "{required: 0}" if env == "dev" else "{required: 1, sources: [ui, cli]}"
        lines += [
            f"  - name: {env}",
            f"    branch: env/{env}",
            f"    cluster: {{target: kubernetes, kubeconfig: kube-{env}.yaml, context: {env}}}",
            f"    approval: {approval}",
        ]
    lines.append("apps:")
    for app in APPS:
        lines += [
            f"  - name: {app}",
            f"    path: apps/{app}",
            f"    images: [{{name: {IMAGE}, source: {{registry: '{registry}', repository: {REPOSITORY}}}}}]",
        ]
    return "\n".join(lines) + "\n"


def git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def build_repository(bare: Path, work: Path) -> None:
    """A bare repository with env/dev, env/staging and env/prod, each holding every app's Deployment at BASELINE."""
    git("init", "--quiet", "--bare", str(bare))
    git("init", "--quiet", "-b", "env/dev", str(work))
    for app in APPS:
        (work / "apps" / app).mkdir(parents=True)
        (work / "apps" / app / "deployment.yaml").write_text(DEPLOYMENT.format(app=app, image=IMAGE, tag=BASELINE))
    git("add", "-A", cwd=work)
    git("-c", "user.name=ops", "-c", "user.email=ops@example.com", "commit", "-qm", "the fleet", cwd=work)
    for env in ENVIRONMENTS[1:]:
        git("branch", f"env/{env}", cwd=work)
    git("push", "--quiet", str(bare), "--all", cwd=work)


@dataclass
class Topology:
    """The processes of the topology, each started in its own session and stopped by PID."""

    base: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *argv: str, extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(self.base / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                list(argv),
                cwd=self.base,
                env={**os.environ, **self.env, **(extra or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.base / f"{name}.log").read_text(errors="replace")[-4000:]

    def stop_all(self) -> None:
        for process in self.processes.values():
            for pid in descendants(process.pid):
                _kill(pid)
            stop(process, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """Every process `pid` started and those they started, still running (flow runs start in their own session)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:  # it ended meanwhile
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def docker_stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a worker as `docker stop` does: SIGTERM, then SIGKILL (to it and its processes) after 30 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        kill_all(process)


def kill_all(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to a worker and every process it started, as when its machine dies."""
    for pid in [process.pid, *descendants(process.pid)]:
        _kill(pid)
    process.wait(timeout=30)


def _kill(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def flow_run_of(pid: int) -> str | None:
    """The flow run a process of a worker runs (Prefect hands it over in the environment)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:  # it ended meanwhile
        return None
    for item in environ:
        if item.startswith(b"PREFECT__FLOW_RUN_ID="):
            return item.split(b"=", 1)[1].decode()
    return None


@pytest.fixture
def prefect_on_postgres(
    postgres_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A Prefect server of this test's own, its database in PostgreSQL (one per test: they may run at once); stopped
    by PID at the end."""
    import sqlalchemy

    from promoflow import server

    name = "prefect_" + re.sub(r"\W", "_", request.node.name.lower().removeprefix("test_"))[-55:]  # params apart
    engine = sqlalchemy.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    state = tmp_path / "prefect-server"
    with monkeypatch.context() as scoped:
        database = postgres_server.replace("postgresql+psycopg", "postgresql+asyncpg")
        scoped.setenv("PREFECT_API_DATABASE_CONNECTION_URL", f"{database}/{name}")
        running = server.start(state, port=free_port(0))
    try:
        yield running.api_url
    finally:
        server.stop(state)


def test_ten_apps_through_three_environments_survive_a_killed_worker(
    tmp_path: Path, prefect_on_postgres: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    api = prefect_on_postgres
    sandbox = Sandbox(tmp_path)
    build_repository(sandbox.repo, tmp_path / "work")
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # prefect and python of this venv
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(tmp_path / "prefect-client"),
        "PROMOFLOW_DATABASE_URL": postgres_url,
        "PROMOFLOW_CONFIG": str(sandbox.config),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    topology = Topology(tmp_path, env)
    cluster = StandIn()
    images: Counter[tuple[str, str]] = Counter()  # image changes of each Deployment, by (namespace, name)

    def count(event: Any) -> None:
        if event.resource != "deployments.apps" or event.type == "DELETED":
            return
        image = event.obj["spec"]["template"]["spec"]["containers"][0]["image"]
        before = event.old["spec"]["template"]["spec"]["containers"][0]["image"] if event.old else None
        if image != before:
            images[event.obj["metadata"]["namespace"], event.obj["metadata"]["name"]] += 1

    cluster.server.cluster.subscribe(count)
    namespaces = {}
    for env_name in ENVIRONMENTS:
        namespaces[env_name] = cluster.namespace(env_name)
        cluster.write_kubeconfig(tmp_path / f"kube-{env_name}.yaml", context=env_name, namespace=namespaces[env_name])
    # staging's rollouts take a while: promotions are running there, on both workers, when one is killed
    cluster.behave(f"{namespaces['staging']}/*", "slow", seconds=STAGING_ROLLOUT_SECONDS)
    port = free_port(0)
    registry = start_registry(tmp_path / "registry", tmp_path / "storage", notifying(port, WEBHOOK_SECRET))
    sandbox.config.write_text(config_text(registry.url))

    with ExitStack() as stack:
        stack.callback(cluster.close)
        stack.callback(registry.stop)
        stack.callback(topology.stop_all)
        registered = register_deployments(tmp_path, env)
        assert registered.returncode == 0, registered.stdout + registered.stderr
        automations = httpx.post(f"{api}/automations/filter", json={}, timeout=10).json()
        assert heartbeats.NAME in [a["name"] for a in automations]
        print(f"deployed after {time.monotonic() - started:.1f} s")
        workers = {
            name: topology.start(name, *WORKER_COMMAND, "--name", name, extra=WORKER_ENVIRONMENT)
            for name in ("worker-a", "worker-b")
        }
        receiver = Receiving(sandbox, port, WEBHOOK_SECRET, tmp_path / "receiver.log", watch_here=False).start()
        stack.callback(receiver.stop, signal.SIGKILL)
        wait_for(lambda: len(_online_workers(api)) >= 2, timeout=120, what="both workers to poll the pool")
        print(f"up after {time.monotonic() - started:.1f} s")

        with httpx.Client(base_url=registry.url, timeout=10) as http:
            push_index(http, REPOSITORY, RELEASE, ["linux/amd64"], Pushed())

        def promotions() -> list[dict[str, Any]]:
            return [p for p in history(sandbox) if p["kind"] == "promotion"]

        def waiting_in(env_name: str) -> list[dict[str, Any]]:
            found = [p for p in promotions() if p["environment"] == env_name and p["state"] == "awaiting_approval"]
            return found if len(found) == len(APPS) else []

        staging = wait_for(lambda: waiting_in("staging"), timeout=240, what="every app to wait in staging", every=1)
        print(f"staging waits after {time.monotonic() - started:.1f} s")
        approve(sandbox, staging)
        # Whichever worker polls first may take every resumed pipeline: the one running promotions is killed.
        seen: dict[str, dict[int, str]] = {}

        def at_work() -> tuple[str, dict[int, str]] | None:
            seen.update({name: promotions_running_in(sandbox, api, w.pid) for name, w in workers.items()})
            return next(((name, found) for name, found in seen.items() if found), None)

        try:
            victim, killed = wait_for(at_work, timeout=240, what="a worker to run promotions")
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out}; last seen {seen}; records {promotions()}") from None
        kill_all(workers[victim])
        killed_at = datetime.now(UTC)
        print(f"killed {victim} running promotions {sorted(killed)} after {time.monotonic() - started:.1f} s")
        survivor = next(name for name in workers if name != victim)

        prod = wait_for(lambda: waiting_in("prod"), timeout=300, what="every app to wait in prod", every=1)
        print(f"prod waits after {time.monotonic() - started:.1f} s")
        # Every pipeline waits suspended, in no process: the last worker's machine dying (kill -9), then a redeploy
        # of the next (SIGTERM, a new one started) lose none of them; the approvals resume them on the new worker.
        kill_all(workers[survivor])
        workers["worker-c"] = start_worker(topology, api, "worker-c")
        assert all(p["state"] == "awaiting_approval" for p in waiting_in("prod"))
        docker_stop(workers["worker-c"])
        workers["worker-d"] = start_worker(topology, api, "worker-d")
        assert all(p["state"] == "awaiting_approval" for p in waiting_in("prod"))
        approve(sandbox, prod)
        done = wait_for(
            lambda: (
                (ps := promotions()) and len(ps) == 3 * len(APPS) and all(p["state"] == "succeeded" for p in ps) and ps
            ),
            timeout=300,
            what="every promotion to succeed",
            every=1,
        )
        print(f"all done after {time.monotonic() - started:.1f} s")

        carried: list[int] = []
        for p in done:
            run = _run(api, p["flow_run_id"])
            # prod ends each app's pipeline: its run completed. An earlier promotion's run may have died after it
            # (with a later promotion of its pipeline, carried on elsewhere): Crashed, by the heartbeat automation,
            # or Abandoned, by the reconcile that carried it on first.
            allowed = {"COMPLETED"} if p["environment"] == "prod" else {"COMPLETED", "CRASHED"}
            assert run["state"]["type"] in allowed, (p, run["state"])
            if p["id"] in killed and datetime.fromisoformat(p["ended_at"]) > killed_at:
                # carried on in a run that started after the kill: on the other worker
                assert p["flow_run_id"] != killed[p["id"]] and datetime.fromisoformat(run["start_time"]) > killed_at
                carried.append(p["id"])
        assert carried, "the kill caught no promotion at work"
        for killed_run in set(killed.values()):  # ended in Prefect too
            assert _run(api, killed_run)["state"]["name"] in ("Abandoned", "Crashed")
        unfinished = {"flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING", "PAUSED", "SCHEDULED"]}}}}
        left = [r for r in httpx.post(f"{api}/flow_runs/filter", json=unfinished, timeout=10).json()]
        # no promotion's run is left unfinished (watch's and reconcile's next runs may be: scheduled, or triggered)
        assert [r["name"] for r in left if "app" in r["parameters"]] == []
        pipelines = httpx.post(f"{api}/flow_runs/filter", json={"deployments": {"name": {"any_": ["pipeline"]}}}).json()
        ran = [r for r in pipelines if r["start_time"]]
        # each in a worker's own process (deployments/worker.py), none in a process of its own
        assert ran and {r["infrastructure_pid"] for r in ran} <= {str(w.pid) for w in workers.values()}

    by = Counter((p["app"], p["environment"]) for p in done)
    assert by == Counter({(app, env_name): 1 for app in APPS for env_name in ENVIRONMENTS})
    for p in done:
        applies = [s for s in p["steps"] if s["name"] == "apply" and s["outcome"] == "succeeded"]
        merges = [s for s in p["steps"] if s["name"] == "merge" and s["outcome"] == "succeeded"]
        assert len(applies) == 1 and len(merges) == 1, p
    board = sandbox.cli_json("status")  # `promoflow status --json`, read from PostgreSQL
    assert isinstance(board, list)
    rows = {(row["app"], row["environment"]): row for row in board}
    for env_name in ENVIRONMENTS:
        merged = sandbox.git("log", "--merges", "--format=%s", f"env/{env_name}").splitlines()
        assert len(merged) == len(APPS), merged
        branches = [b for b in sandbox.git("branch", "--list", f"promoflow/{env_name}/*").split() if b != "*"]
        assert len(branches) == len(APPS), branches
        for app in APPS:
            assert images[namespaces[env_name], app] == 1, (env_name, app, images)
            row = rows[app, env_name]
            assert row["current_release"]["label"] == RELEASE and row["waiting"] == []
    print(f"test took {time.monotonic() - started:.1f} s")


@pytest.mark.parametrize(
    ("at_checks", "at_window"), [(kill_all, docker_stop), (docker_stop, kill_all)], ids=["kill-9,term", "term,kill-9"]
)
def test_a_pipeline_waiting_for_checks_then_a_window_survives_its_workers(
    sandbox: Sandbox,
    tmp_path: Path,
    prefect_on_postgres: str,
    monkeypatch: pytest.MonkeyPatch,
    at_checks: Callable[[subprocess.Popen[bytes]], None],
    at_window: Callable[[subprocess.Popen[bytes]], None],
) -> None:
    """A pipeline, in its worker's own process, waits for dev's required check on GitHub, suspended. The worker dies
    (`at_checks`: SIGKILL to it and its processes, or a redeploy's SIGTERM) and the check turns green meanwhile: on
    a new worker, the reconcile's poll of GitHub finds it and the pipeline goes on in the same flow run to staging,
    where it waits for a window. That worker dies too (`at_window`): once the window opens the pipeline completes
    on the next one, with one pull request, one merge and one apply per environment. At every stop the records,
    Prefect's run state and `promoflow status` agree."""
    api = prefect_on_postgres
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # prefect and python of this venv
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(tmp_path / "prefect-client"),
        "PROMOFLOW_CONFIG": str(sandbox.config),
        **PEOPLE,  # the requester, and the GitHub token the workers' runs read
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    topology = Topology(tmp_path, env)
    with GitHubStandIn({REPO: sandbox.repo}, tokens=TOKENS) as github, ExitStack() as stack:
        stack.callback(topology.stop_all)
        configure(sandbox, github_section(github.url), THEN_STAGING)
        sandbox.publish("1.2.0")
        registered = register_deployments(tmp_path, env)
        assert registered.returncode == 0, registered.stdout + registered.stderr
        worker = start_worker(topology, api, "worker-a")
        submitted = sandbox.cli("pipeline", "web", "--no-wait")
        assert submitted.returncode == 0, submitted.stderr
        dev = wait_for(lambda: suspended_waiting(sandbox, "dev"), timeout=240, what="dev to wait for its check")
        run = dev["flow_run_id"]  # the pipeline's: both environments' promotions run in it
        assert _run(api, run)["infrastructure_pid"] == str(worker.pid)  # in the worker's own process
        at_checks(worker)

        # Nothing runs it; Prefect, the records and status say the same: it waits for ci/test.
        assert run_state(run) == ("PAUSED", "Suspended")
        waits_for_its_check(sandbox, github, dev["id"])
        # Staging gets a window while no worker has read the configuration, opening after dev is through.
        opens = window_opening(sandbox, after=90, keep_approval=True)
        worker = start_worker(topology, api, "worker-b")
        reconcile_now()  # as its interval would, a little later
        wait = wait_for(
            lambda: held_by_the_window(sandbox, ("PAUSED", "Suspended")), timeout=240, what="the window to hold it"
        )
        assert promotion(sandbox, dev["id"])["state"] == "succeeded"
        staging = promotion(sandbox, wait["promotion"])
        assert staging["flow_run_id"] == run and staging["state"] == "pending"
        says_it_waits_for(sandbox, wait, opens)
        at_window(worker)

        start_worker(topology, api, "worker-c")
        assert run_state(run) == ("PAUSED", "Suspended")
        (wait,) = status_of(sandbox, "staging")["waiting"]
        says_it_waits_for(sandbox, wait, opens)
        wait_for(lambda: opened(opens), timeout=240, what="the window to open")
        reconcile_now()
        wait_for(lambda: run_state(run)[0] == "COMPLETED", timeout=240, what="the pipeline run to complete")
        done = completed_once(sandbox, staging["id"], opens)
        assert done["flow_run_id"] == run  # the suspended run went on, on each new worker: no second one
        assert [merged(github, p.number) for p in pulls(github)] == [True, True]

    dev = promotion(sandbox, dev["id"])
    assert dev["state"] == "succeeded" and dev["flow_run_id"] == run
    assert len(request_branches(sandbox, "dev")) == 1 and len(merges(sandbox, "env/dev")) == 1
    assert [s["outcome"] for s in dev["steps"] if s["name"] == "apply"] == ["succeeded"]
    assert status_of(sandbox, "dev")["waiting"] == []


def start_worker(topology: Topology, api: str, name: str) -> subprocess.Popen[bytes]:
    """docker-compose.yml's worker, started once it polls the pool."""
    process = topology.start(name, *WORKER_COMMAND, "--name", name, extra=WORKER_ENVIRONMENT)
    wait_for(lambda: name in _online_workers(api), timeout=120, what=f"{name} to poll the pool")
    return process


def approve(sandbox: Sandbox, waiting: list[dict[str, Any]]) -> None:
    """`promoflow approve` for each, several at once (as several people would)."""
    pending = [
        subprocess.Popen(
            [sys.executable, "-m", "promoflow", "approve", str(p["id"]), "--as", APPROVER],
            cwd=sandbox.base,
            env={**os.environ, "COLUMNS": "200"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in waiting
    ]
    for process in pending:
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, out + err


def promotions_running_in(sandbox: Sandbox, api: str, worker: int) -> dict[int, str]:
    """The promotions (id -> flow run) that `worker` and its processes run right now, once each of its pipeline runs has
    claimed its promotion and no pipeline run is being handed to a worker (Pending): the moment to kill it so that
    what dies is promotions at work (a run killed before it claimed its promotion is carried on only after
    TAKE_OVER_SECONDS; one killed between two environments is not carried on: see the README)."""
    children = descendants(worker)
    runs = {run for pid in children if (run := flow_run_of(pid))}
    # pipelines run in the worker's own process (deployments/worker.py), which Prefect names as their process
    running = {"flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}}
    answer = httpx.post(f"{api}/flow_runs/filter", json=running, timeout=10).json()
    runs |= {r["id"] for r in answer if r["infrastructure_pid"] == str(worker)}
    if not runs:
        return {}
    host = socket.gethostname()
    active = sandbox.db().active_promotions()
    claimed = {p.id: p.flow_run_id for p in active if p.runner in {f"{host}:{pid}" for pid in [worker, *children]}}
    working = {pid: run for pid, run in claimed.items() if sandbox.db().promotion(pid).state != "awaiting_approval"}
    for run in runs - set(claimed.values()):
        if "app" in _run(api, run)["parameters"]:  # a pipeline's (not a watch's or a reconcile's) not claimed yet
            return {}  # starting up, or between two environments
    pending = {"flow_runs": {"state": {"type": {"any_": ["PENDING"]}}}}
    if any(
        "app" in run["parameters"] for run in httpx.post(f"{api}/flow_runs/filter", json=pending, timeout=10).json()
    ):
        return {}
    return {pid: run for pid, run in working.items() if pid is not None and run is not None}


def _online_workers(api: str) -> set[str]:
    answer = httpx.post(f"{api}/work_pools/promoflow/workers/filter", json={}, timeout=10)
    return {w["name"] for w in answer.json() if w["status"] == "ONLINE"}


def _run(api: str, run_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10)
    answer.raise_for_status()
    data: dict[str, Any] = answer.json()
    return data
