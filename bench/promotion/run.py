"""Benchmark: one release dev -> staging -> prod on a warm local Prefect server, three ways.

- cli: each measured pair runs the pipeline flow in this process (orchestrated, as the CLI does) and the same
  steps with the engine alone (direct), each on a fresh sandbox, with the flow heartbeat on and off.
- served: `promoflow pipeline --no-wait` to `python -m deployments.serve`, until the pipeline's run has ended,
  paired with a direct run.
- approval: a pipeline whose staging and prod wait for an approval with their run suspended; the time from
  `promoflow approve` (or a Resume through Prefect's API, as the UI's form sends it) to the promotion's next
  recorded step starting; through the served deployments, then through promoflow's worker on a work pool.
Per server backend (SQLite, PostgreSQL) one server, warmed up once, and one fresh client process.
Writes results.json and results.md beside this file (a part not measured keeps its earlier results).
Run: .venv/bin/python bench/promotion/run.py [--runs N] [--only cli|served|approval]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's bench/ and promoflow/

from bench.machine import machine as bench_machine
from tests.conftest import Sandbox
from tests.helpers import (
    WORKER_COMMAND,
    WORKER_ENVIRONMENT,
    Served,
    drop_interval_runs,
    register_deployments,
    stop,
    wait_for,
)

HERE = Path(__file__).resolve().parent
APP, RELEASE, REQUESTER, APPROVER = "web", "1.2.0", "bench", "uma"
PARTS = ("cli", "served", "approval")
ENVIRONMENTS = ("dev", "staging", "prod")
BACKENDS = ("sqlite", "postgres")
HEARTBEATS = ("heartbeat", "no_heartbeat")
DEFAULT = "sqlite+heartbeat"  # Prefect as configured
DATABASE_URL = "PREFECT_API_DATABASE_CONNECTION_URL"
GOALS = {"total_seconds": 10.0, "orchestration_share": 0.5}
APPROVAL_GOAL = {"median_seconds": 2.0}
APPROVED_BY = ("cli", "ui")  # `promoflow approve`; Resume through Prefect's API with the form's input
# The served watch and reconcile run on an interval; an hour keeps them out of the measurements.
SERVE_ENV = {"PROMOFLOW_WATCH_INTERVAL": "3600", "PROMOFLOW_RECONCILE_INTERVAL": "3600"}
WAIT_SECONDS = 300  # for a run to end or a promotion to wait: generous, a busy machine is slow, not stuck

Sample = dict[str, Any]  # nested dicts of seconds (floats)


def make_sandbox(root: Path, name: str, approvals: bool = False) -> str:
    """A demo sandbox (git repo, OCI layout) with 1.2.0 published; no approval needed anywhere unless `approvals`
    (then staging and prod need one each)."""
    from promoflow import demo
    from promoflow.sources import oci_layout

    base = root / name
    base.mkdir()
    config = demo.write_config(base)
    text = config.read_text()
    assert text.count("required: 1") == 2
    if not approvals:
        config.write_text(text.replace("required: 1", "required: 0"))
    demo.build_sandbox(base)
    oci_layout.publish(demo.sandbox_dir(base) / "oci" / "web", RELEASE)
    return str(config)


def from_records(config: str, total: float) -> Sample:
    """Per environment: promotion record span (created_at..ended_at) and the sum of its step durations."""
    from promoflow.project import Project

    db = Project.load(config).db
    promotions = sorted((p for p in db.promotions(APP) if p.kind == "promotion"), key=lambda p: p.id or 0)
    assert [(p.environment, p.state) for p in promotions] == [(e, "succeeded") for e in ENVIRONMENTS]
    environments: Sample = {}
    by_step: dict[str, float] = {}
    for promotion in promotions:
        assert promotion.id is not None and promotion.ended_at is not None
        steps = db.steps(promotion.id)
        for step in steps:
            by_step[step.name] = by_step.get(step.name, 0.0) + (step.duration_seconds or 0.0)
        environments[promotion.environment] = {
            "wall": (promotion.ended_at - promotion.created_at).total_seconds(),
            "steps": sum(step.duration_seconds or 0.0 for step in steps),
        }
    in_records = sum(e["wall"] for e in environments.values())
    in_steps = sum(e["steps"] for e in environments.values())
    return {
        "total": total,
        "environments": environments,
        "split": {
            "steps": in_steps,
            "in_promotions_outside_steps": in_records - in_steps,
            "outside_promotions": total - in_records,
        },
        "steps_by_name": by_step,
    }


def orchestrated(config: str) -> Sample:
    from flows.pipeline import pipeline

    started = time.perf_counter()
    done = pipeline(APP, release=RELEASE, requested_by=REQUESTER, config=config)
    total = time.perf_counter() - started
    assert len(done) == len(ENVIRONMENTS), done
    return from_records(config, total)


def direct(config: str) -> Sample:
    """What flows/pipeline.py + flows/promote.py do, with the engine walking the steps itself: no Prefect."""
    from promoflow import releases
    from promoflow.engine.context import Context
    from promoflow.engine.runner import advance
    from promoflow.promotion import runner_id, sources, start
    from tasks._shared import project

    started = time.perf_counter()
    p = project(config)
    app = p.config.app(APP)
    chosen = releases.resolve(p.db, app, sources(p, app), RELEASE, "oci-layout")
    for env in p.config.route(APP):
        pid = start(p, APP, env.name, chosen.id, REQUESTER).id
        assert pid is not None
        p.db.update_promotion(pid, runner=runner_id())
        assert advance(Context(p, pid)) is None
    return from_records(config, time.perf_counter() - started)


def promoflow(*args: str) -> str:
    """`promoflow ARGS` as a person types it (a new process), as the bench's requester; its output."""
    done = subprocess.run(
        [sys.executable, "-m", "promoflow", *args],
        env={**os.environ, "PROMOFLOW_USER": REQUESTER},
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    if done.returncode != 0:
        raise RuntimeError(f"promoflow {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def ended_run(run_id: str) -> Any:
    """The flow run once it has ended; RuntimeError unless it completed."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    def final() -> Any:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(run_id))
        return run if run.state is not None and run.state.is_final() else None

    run = wait_for(final, timeout=WAIT_SECONDS, what=f"flow run {run_id} to end", every=0.2)
    if not run.state.is_completed():
        raise RuntimeError(f"flow run {run_id} ended {run.state.name}: {run.state.message}")
    return run


def served(config: str) -> Sample:
    """`promoflow pipeline --no-wait` to the served deployments, timed from the command until the pipeline's flow
    run ends (Prefect's end time): the command, the wait for the runner to start the run, the run itself."""
    started = time.time()
    submitted = json.loads(promoflow("pipeline", APP, "--release", RELEASE, "--no-wait", "--json", "--config", config))
    returned = time.time()
    run = ended_run(submitted["flow_run"])
    ended, began = run.end_time.timestamp(), run.start_time.timestamp()
    sample = from_records(config, ended - started)
    sample["served"] = {"command": returned - started, "until_running": began - returned, "flow_run": ended - began}
    return sample


def serve(root: Path) -> Served:
    """`python -m deployments.serve` for the bench's Prefect server (tests/helpers.py `Served`), once it has nothing
    to run."""
    sandbox = Sandbox(Path(make_sandbox(root, "serve")).parent)  # the deployments' default config; runs name theirs
    serving = Served(sandbox, root / "serve.log", env=SERVE_ENV).start()
    wait_for(lambda: quiet(serving), timeout=WAIT_SECONDS, what="the served watch and reconcile to end", every=0.5)
    return serving


@contextlib.contextmanager
def worker(root: Path) -> Iterator[Callable[[], bool]]:
    """docker-compose.yml's topology on the bench's Prefect server: deploy/register-deployments.sh (the `promoflow`
    process work pool, deployments/prefect.yaml's deployments, which replace the served ones of the same names), then
    docker-compose.yml's worker (`python -m deployments.worker`, pipelines in its own process), with the watch and
    reconcile deployments paused so that their interval runs stay out of the measurements. Yields "it runs nothing";
    stops the worker by PID."""
    from prefect.client.orchestration import get_client

    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # prefect of this venv
    registered = register_deployments(root, env)
    if registered.returncode != 0:
        raise RuntimeError(f"registering the deployments failed: {registered.stdout}{registered.stderr}")
    with get_client(sync_client=True) as client:
        for name in ("watch/watch", "reconcile/reconcile"):
            client.pause_deployment(client.read_deployment_by_name(name).id)
    drop_interval_runs()  # the runs the served ones left due
    with open(root / "worker.log", "ab") as log:
        process = subprocess.Popen(
            [*WORKER_COMMAND, "--name", "bench"],
            cwd=root,
            env={**os.environ, **env, **WORKER_ENVIRONMENT},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def idle() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited {process.returncode}: see {root / 'worker.log'}")
        return no_run_due() and not _children(process.pid)

    try:
        wait_for(idle, timeout=WAIT_SECONDS, what="the worker to run nothing", every=0.5)
        yield idle
    except BaseException:
        print("Last lines of the worker log:", *(root / "worker.log").read_text().splitlines()[-30:], sep="\n")
        raise
    finally:
        stop(process, signal.SIGTERM)


def _children(pid: int) -> list[str]:
    return [c for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


def quiet(serving: Served) -> bool:
    """No flow run is due, starting or running, and no run's process is left under the serve process."""
    return no_run_due() and serving.idle()


def no_run_due() -> bool:
    """No flow run is due, starting or running."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    due = FlowRunFilter(
        state=FlowRunFilterState(
            type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING])
        ),
        expected_start_time=FlowRunFilterExpectedStartTime(before_=datetime.now(UTC)),
    )
    with get_client(sync_client=True) as client:
        return not client.read_flow_runs(flow_run_filter=due, limit=1)


def approvals(root: Path, label: str, idle: Callable[[], bool], settle: float, cli_first: bool) -> Sample:
    """One pipeline through the deployments (served, or on a work pool) whose staging and prod each wait for an
    approval, their run suspended: one approved with `promoflow approve`, the other with a Resume through Prefect's
    API. `idle`: what runs the deployments runs nothing."""
    from promoflow.project import Project

    config = make_sandbox(root, label, approvals=True)
    submitted = json.loads(promoflow("pipeline", APP, "--release", RELEASE, "--no-wait", "--json", "--config", config))
    db = Project.load(config).db
    sample: Sample = {}
    for env, how in zip(ENVIRONMENTS[1:], APPROVED_BY if cli_first else APPROVED_BY[::-1], strict=True):

        def suspended(env: str = env) -> Any:
            waiting = next((p for p in db.promotions(APP, env) if p.state == "awaiting_approval"), None)
            return waiting if waiting is not None and _suspended(waiting.flow_run_id) and idle() else None

        waiting = wait_for(suspended, timeout=WAIT_SECONDS, what=f"{env} to wait for its approval, its run suspended")
        time.sleep(settle)  # untimed: the server has taken in the suspension
        sample[how] = approve(config, waiting, how)
    ended_run(submitted["flow_run"])
    return sample


def approve(config: str, waiting: Any, how: str) -> Sample:
    """Approve `waiting` by `how`; seconds from the call to its merge step starting (the next recorded step),
    and where they went: the call, until the run runs again, from then to the step."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    from promoflow.project import Project

    run_id = UUID(waiting.flow_run_id)
    started = time.time()
    if how == "cli":
        promoflow("approve", str(waiting.id), "--as", APPROVER, "--config", config)
    else:
        with get_client(sync_client=True) as client:
            client.resume_flow_run(run_id, run_input={"decision": "approve", "approver": APPROVER})
    called = time.time()
    db = Project.load(config).db
    merge = wait_for(lambda: db.last_step(waiting.id, "merge"), WAIT_SECONDS, "the merge step to start", every=0.1)
    assert merge is not None
    continued = _utc(merge.started_at).timestamp()
    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(run_id)
    running = min(t for t in (x.timestamp.timestamp() for x in states if x.is_running()) if t >= started)
    return {
        "latency": continued - started,
        "call": called - started,
        "until_running": running - called,
        "running_to_step": continued - running,
    }


def _suspended(run_id: str | None) -> bool:
    from uuid import UUID

    from prefect.client.orchestration import get_client

    if run_id is None:
        return False
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(run_id)).state
    return state is not None and state.is_paused() and bool(state.state_details.pause_reschedule)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def heartbeat(name: str) -> contextlib.AbstractContextManager[Any]:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if name == "no_heartbeat":
        return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
    return contextlib.nullcontext()


def client_cpu() -> float:
    """CPU seconds of this process (all threads) and of its finished children (git)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def process_cpu(pid: int) -> float:
    """CPU seconds of a process, of its reaped children and, recursively, of its live children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    return own + sum(process_cpu(c) for c in children(pid) if Path(f"/proc/{c}").exists())


def children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


@dataclass(frozen=True)
class ServerProbe:
    """What the Prefect server spent: CPU of it and its database, and the retryable errors it logged."""

    pids: tuple[int, ...]  # the Prefect server, then the PostgreSQL postmaster if any
    log: Path

    def cpu(self) -> float:
        try:
            return sum(process_cpu(pid) for pid in self.pids)
        except FileNotFoundError:
            raise RuntimeError(f"The Prefect server or its database ({self.pids}) is gone: killed or crashed") from None

    def retryable_errors(self) -> int:
        """503s sent for retryable database errors (SQLite: `database is locked`); the client waits ~2 s, retries."""
        return self.log.read_text(errors="replace").count("Encountered retryable exception")


def timed(
    fn: Callable[[str], Sample], config: str, server: ServerProbe, settle: float, serving: Served | None = None
) -> Sample:
    """One run; CPU is counted until `settle` seconds after it, so background flushing is included. The client's
    CPU is this process's and its children's (git, the CLI), and the serve process's with its runs' if any."""
    load = os.getloadavg()[0]

    def client_side() -> float:
        return client_cpu() + (process_cpu(serving.process.pid) if serving and serving.process else 0.0)

    client, server_cpu, errors = client_side(), server.cpu(), server.retryable_errors()
    sample = fn(config)
    time.sleep(settle)
    sample["cpu"] = {"client": client_side() - client, "server": server.cpu() - server_cpu}
    sample["cpu"]["total"] = sample["cpu"]["client"] + sample["cpu"]["server"]
    sample["server_retryable_errors"] = server.retryable_errors() - errors
    sample["load_before"] = load
    return sample


def measure_pair(
    root: Path, label: str, server: ServerProbe, settle: float, direct_first: bool, serving: Served | None = None
) -> Sample:
    """An orchestrated run (in this process, or through `serving`) and a direct one, each on a fresh sandbox."""
    runs: list[tuple[str, Callable[[str], Sample]]] = [("orchestrated", served if serving else orchestrated)]
    runs.append(("direct", direct))
    pair = {
        kind: timed(fn, make_sandbox(root, f"{label}-{kind}"), server, settle, serving if kind != "direct" else None)
        for kind, fn in (runs[::-1] if direct_first else runs)
    }
    o, d = pair["orchestrated"], pair["direct"]
    return {
        "orchestrated": o,
        "direct": d,
        "orchestration_seconds": o["total"] - d["total"],
        "orchestration_share": (o["total"] - d["total"]) / o["total"],
        "direct_over_orchestrated": d["total"] / o["total"],
        "orchestration_cpu_share": (o["cpu"]["total"] - d["cpu"]["total"]) / o["cpu"]["total"],
    }


def summarise(samples: list[Any]) -> Any:
    """The same nesting as one sample, every number replaced by its median, min and max over the samples."""
    if isinstance(samples[0], dict):
        return {key: summarise([s[key] for s in samples]) for key in samples[0]}
    return {
        "median": round(statistics.median(samples), 3),
        "min": round(min(samples), 3),
        "max": round(max(samples), 3),
    }


def machine() -> dict[str, Any]:
    return {**bench_machine("prefect")}


def measure_backend(
    root: Path, api_url: str, backend: str, runs: int, server: ServerProbe, settle: float, parts: tuple[str, ...]
) -> dict[str, dict[str, list[Sample]]]:
    """In a fresh process (Prefect reads PREFECT_API_URL once): warm up, then `runs` measurements of each part.
    Returns the samples by part and variant."""
    assert "prefect" not in sys.modules, "Prefect must be imported after PREFECT_API_URL is set"
    os.environ.update(PREFECT_API_URL=api_url, PREFECT_HOME=str(root / "client"))
    print(f"{backend}: warming up, one throwaway pipeline and direct run", flush=True)
    measure_pair(root, "warmup", server, settle, direct_first=False)
    measured: dict[str, dict[str, list[Sample]]] = {}
    if "cli" in parts:
        measured["cli"] = {f"{backend}+{name}": [] for name in HEARTBEATS}
        for i in range(runs):
            for name in HEARTBEATS:
                with heartbeat(name):
                    sample = measure_pair(root, f"{name}-{i}", server, settle, direct_first=i % 2 == 1)
                measured["cli"][f"{backend}+{name}"].append(sample)
                print(f"run {i + 1}/{runs} {backend}+{name}: {_pair_line(sample)}", flush=True)
    if "served" not in parts and "approval" not in parts:
        return measured
    serving = serve(root)
    try:
        if "served" in parts:
            print(f"{backend}: warming up the served deployments, one throwaway pipeline", flush=True)
            measure_pair(root, "served-warmup", server, settle, direct_first=False, serving=serving)
            measured["served"] = {backend: []}
            for i in range(runs):
                sample = measure_pair(root, f"served-{i}", server, settle, direct_first=i % 2 == 1, serving=serving)
                measured["served"][backend].append(sample)
                print(f"run {i + 1}/{runs} {backend} served: {_pair_line(sample)}", flush=True)
        if "approval" in parts:
            measured["approval"] = {backend: []}
            for i in range(runs):
                sample = approvals(root, f"approval-{i}", serving.idle, settle, cli_first=i % 2 == 0)
                measured["approval"][backend].append(sample)
                latencies = ", ".join(f"{how} {sample[how]['latency']:.2f} s" for how in APPROVED_BY)
                print(f"run {i + 1}/{runs} {backend} approval -> next step: {latencies}", flush=True)
    except BaseException:
        print("Last lines of the serve log:", *serving.log.read_text().splitlines()[-30:], sep="\n", file=sys.stderr)
        raise
    finally:
        serving.stop(signal.SIGTERM)
    if "approval" in parts:
        with worker(root) as idle:
            variant = f"{backend}+worker"
            measured["approval"][variant] = []
            for i in range(runs):
                sample = approvals(root, f"worker-approval-{i}", idle, settle, cli_first=i % 2 == 0)
                measured["approval"][variant].append(sample)
                latencies = ", ".join(f"{how} {sample[how]['latency']:.2f} s" for how in APPROVED_BY)
                print(f"run {i + 1}/{runs} {variant} approval -> next step: {latencies}", flush=True)
    return measured


def _pair_line(sample: Sample) -> str:
    return (
        f"orchestrated {sample['orchestrated']['total']:.2f} s, direct {sample['direct']['total']:.2f} s, "
        f"share {sample['orchestration_share']:.0%}, server 503s {sample['orchestrated']['server_retryable_errors']}"
    )


PAIR_NOTES = [
    "Goals are checked against medians. Each pair is an orchestrated and a direct run, each on a fresh sandbox, "
    "in alternating order; every run is followed by an untimed idle settle.",
    "Direct run: the engine walks the same steps with no Prefect (promotion.start, then engine.runner.advance per "
    "environment), in the measuring process.",
    "CPU = the client process with its git children; server = the Prefect server process plus, for postgres, the "
    "PostgreSQL cluster (postmaster and its backends); until the end of the settle.",
]


def report(measured: dict[str, dict[str, list[Sample]]], runs: int, settle: float) -> dict[str, Any]:
    """Each part measured: its medians (min, max), goals and whether they are met, with every raw sample."""
    stamp = {
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": runs,
        "settle_seconds": settle,
    }
    results: dict[str, Any] = {}
    for part in ("cli", "served"):
        if part not in measured:
            continue
        variants = {name: {**summarise(samples), "samples": samples} for name, samples in measured[part].items()}
        results[part] = {
            **stamp,
            "variants": variants,
            "goals": GOALS,
            "met": {
                name: {
                    "total_seconds": v["orchestrated"]["total"]["median"] <= GOALS["total_seconds"],
                    "orchestration_share": v["orchestration_share"]["median"] <= GOALS["orchestration_share"],
                }
                for name, v in variants.items()
            },
            "notes": PAIR_NOTES + (CLI_NOTES if part == "cli" else SERVED_NOTES),
        }
    if "approval" in measured:
        variants = {name: {**summarise(samples), "samples": samples} for name, samples in measured["approval"].items()}
        results["approval"] = {
            **stamp,
            "variants": variants,
            "goals": APPROVAL_GOAL,
            "met": {
                name: {how: v[how]["latency"]["median"] <= APPROVAL_GOAL["median_seconds"] for how in APPROVED_BY}
                for name, v in variants.items()
            },
            "notes": APPROVAL_NOTES,
        }
    return results


CLI_NOTES = [
    "One Prefect server per backend, warmed up once, measured from its own client process; the heartbeat "
    "settings alternate within each run. PostgreSQL: a throwaway local cluster, fsync off (-F).",
    "Per environment wall = promotion record created_at..ended_at; flow-run creation and teardown "
    "(heartbeat join, the client's retries after a 503) fall outside the records.",
]
SERVED_NOTES = [
    "Total = from starting `promoflow pipeline web --release 1.2.0 --no-wait` to the end time Prefect records "
    "for the pipeline's flow run: the command (a new Python process), the runner noticing the run (it polls "
    "every second) and starting it in a new process, and the run, with Prefect's flow heartbeat as served "
    "runs have it.",
    "One `python -m deployments.serve` per backend, warmed up with one throwaway pipeline; its interval watch "
    "and reconcile are set to an hour so that they do not run during the measurements. Client CPU includes the "
    "command and the serve process with its runs' processes.",
]
APPROVAL_NOTES = [
    "Each pipeline goes through the served deployments; staging and prod each need one approval. Each waits with "
    "its run suspended (its process has exited) before it is approved: one with `promoflow approve N` (a new "
    "Python process), the other with a Resume through Prefect's API carrying the form's input, as the UI's "
    "Resume form sends it; which environment gets which alternates.",
    "Latency = from the approval call to the merge step's start in the records (the promotion's next recorded "
    "step). Until running: from the call's return to the run entering Running again (Prefect's state time); "
    "the runner polls every second and starts the run in a new process, which runs the pipeline from the top.",
    "`+worker`: the same through docker-compose.yml's topology, natively: deploy/register-deployments.sh's work "
    "pool and deployments, and one `python -m deployments.worker` (it polls the pool every second and runs "
    "pipelines in its own process: no new Python process when a run goes on).",
    "The call of `promoflow approve` is mostly a new Python process starting (about 1 s): it records the "
    "decision and puts the suspended run back on the schedule with two calls to Prefect's REST API, without "
    "importing Prefect; it does so before it exits, so on the worker the run may run again before the call has "
    "returned (a negative `until the run runs again`).",
]


def cell(stat: dict[str, float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(stat['median'])} ({fmt.format(stat['min'])}-{fmt.format(stat['max'])})"


def yes(met: bool) -> str:
    return "met" if met else "NOT met"


def stamp_line(part: dict[str, Any], what: str) -> str:
    m = part["machine"]
    return (
        f"{part['date']}, {part['runs']} {what}, median (min-max). "
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, Prefect {m['prefect']}."
    )


Row = tuple[str, Callable[[dict[str, Any]], str], str]


def table(part: dict[str, Any], rows: list[Row]) -> list[str]:
    names = list(part["variants"])
    return [
        f"| | {' | '.join(names)} | goal |",
        "|---" * (len(names) + 2) + "|",
        *(f"| {label} | {' | '.join(fn(part['variants'][n]) for n in names)} | {goal} |" for label, fn, goal in rows),
    ]


def pair_rows(extra: list[Row]) -> list[Row]:
    """The rows of an orchestrated-and-direct table; `extra` after the total."""

    def cpu(stat: dict[str, dict[str, float]]) -> str:
        return f"{stat['client']['median']:.2f} + {stat['server']['median']:.2f}"

    pct = "{:.0%}"
    return [
        ("orchestrated total, s", lambda x: cell(x["orchestrated"]["total"]), f"<= {GOALS['total_seconds']:g}"),
        *extra,
        *(
            (f"- {env}, s", lambda x, env=env: cell(x["orchestrated"]["environments"][env]["wall"]), "")
            for env in ENVIRONMENTS
        ),
        ("- steps (work in records), s", lambda x: cell(x["orchestrated"]["split"]["steps"]), ""),
        (
            "- in promotions, outside steps, s",
            lambda x: cell(x["orchestrated"]["split"]["in_promotions_outside_steps"]),
            "",
        ),
        ("- outside promotion records, s", lambda x: cell(x["orchestrated"]["split"]["outside_promotions"]), ""),
        ("direct total (engine alone), s", lambda x: cell(x["direct"]["total"]), ""),
        *(
            (f"- {env}, s", lambda x, env=env: cell(x["direct"]["environments"][env]["wall"]), "")
            for env in ENVIRONMENTS
        ),
        ("orchestration, s", lambda x: cell(x["orchestration_seconds"]), ""),
        (
            "orchestration share",
            lambda x: cell(x["orchestration_share"], pct),
            f"<= {GOALS['orchestration_share']:.0%}",
        ),
        ("direct / orchestrated", lambda x: cell(x["direct_over_orchestrated"]), ""),
        ("CPU orchestrated: client + server, s", lambda x: cpu(x["orchestrated"]["cpu"]), ""),
        ("CPU direct: client + server, s", lambda x: cpu(x["direct"]["cpu"]), ""),
        ("orchestration share of CPU", lambda x: cell(x["orchestration_cpu_share"], pct), ""),
        (
            "server 503s (retryable DB errors), orchestrated",
            lambda x: cell(x["orchestrated"]["server_retryable_errors"], "{:g}"),
            "",
        ),
        ("load average before (orchestrated)", lambda x: cell(x["orchestrated"]["load_before"]), ""),
    ]


def pair_goals(part: dict[str, Any]) -> list[str]:
    return [
        f"- {name}: total <= {GOALS['total_seconds']:g} s: {yes(met['total_seconds'])}; "
        f"orchestration share <= {GOALS['orchestration_share']:.0%}: {yes(met['orchestration_share'])}"
        for name, met in part["met"].items()
    ]


def cli_section(part: dict[str, Any]) -> list[str]:
    steps = part["variants"][DEFAULT]
    return [
        "## Through the CLI: the pipeline flow run in the calling process, automatic approval",
        "",
        stamp_line(part, "runs per variant"),
        "",
        *table(part, pair_rows([])),
        "",
        "Goals met (medians):",
        "",
        *pair_goals(part),
        "",
        f"Step durations from the records, summed over the three environments, {DEFAULT} variant:",
        "",
        "| step | orchestrated, s | direct, s |",
        "|---|---|---|",
        *(
            f"| {step} | {cell(stat)} | {cell(steps['direct']['steps_by_name'][step])} |"
            for step, stat in steps["orchestrated"]["steps_by_name"].items()
        ),
        "",
        *(f"- {note}" for note in part["notes"]),
    ]


def served_section(part: dict[str, Any]) -> list[str]:
    served_rows: list[Row] = [
        ("- the command (`pipeline --no-wait`), s", lambda x: cell(x["orchestrated"]["served"]["command"]), ""),
        ("- until the runner runs it, s", lambda x: cell(x["orchestrated"]["served"]["until_running"]), ""),
        ("- the pipeline's flow run, s", lambda x: cell(x["orchestrated"]["served"]["flow_run"]), ""),
    ]
    return [
        "## Through the served deployments: `promoflow pipeline --no-wait`, automatic approval",
        "",
        stamp_line(part, "runs per backend"),
        "",
        *table(part, pair_rows(served_rows)),
        "",
        "Goals met (medians):",
        "",
        *pair_goals(part),
        "",
        *(f"- {note}" for note in part["notes"]),
    ]


APPROVED_AS = {"cli": "`promoflow approve`", "ui": "Resume through Prefect's API"}


def approval_rows(how: str) -> list[Row]:
    goal = f"<= {APPROVAL_GOAL['median_seconds']:g} (median)"
    return [
        (f"{APPROVED_AS[how]} -> next step starts, s", lambda x: cell(x[how]["latency"]), goal),
        ("- the call, s", lambda x: cell(x[how]["call"]), ""),
        ("- until the run runs again, s", lambda x: cell(x[how]["until_running"]), ""),
        ("- from running to the step, s", lambda x: cell(x[how]["running_to_step"]), ""),
    ]


def approval_section(part: dict[str, Any]) -> list[str]:
    return [
        "## From an approval to the promotion going on, its run suspended",
        "",
        stamp_line(part, "pipelines per backend (one approval of each kind in each)"),
        "",
        *table(part, [row for how in APPROVED_BY for row in approval_rows(how)]),
        "",
        "Goal met (medians):",
        "",
        *(
            f"- {name}, {APPROVED_AS[how]}: median <= {APPROVAL_GOAL['median_seconds']:g} s: {yes(met)}"
            for name, by in part["met"].items()
            for how, met in by.items()
        ),
        "",
        *(f"- {note}" for note in part["notes"]),
    ]


def markdown(results: dict[str, Any]) -> str:
    sections = {"cli": cli_section, "served": served_section, "approval": approval_section}
    lines = ["# Promotion benchmark: web 1.2.0 dev -> staging -> prod"]
    for part in PARTS:
        if part in results:
            lines += ["", *sections[part](results[part])]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def postgres() -> Iterator[tuple[str, int]]:
    """A throwaway PostgreSQL cluster with database `prefect`; yields the Prefect database URL and the
    postmaster's pid."""
    from promoflow.errors import TerminalError
    from promoflow.sandbox.postgres import throwaway_postgres

    try:
        with throwaway_postgres() as cluster:
            cluster.create_database("prefect")
            yield cluster.url("asyncpg", "prefect"), cluster.pid
    except TerminalError as error:
        raise SystemExit(str(error)) from None


@contextlib.contextmanager
def prefect_server(root: Path, backend: str) -> Iterator[tuple[str, ServerProbe]]:
    """A Prefect server on 127.0.0.1 with its state under `root`, on SQLite or a throwaway PostgreSQL."""
    from promoflow import server

    with contextlib.ExitStack() as stack:
        database: list[int] = []
        if backend == "postgres":
            url, postmaster = stack.enter_context(postgres())
            os.environ[DATABASE_URL] = url  # server.start passes os.environ through
            database.append(postmaster)
        print(f"starting the Prefect server ({backend})", flush=True)
        state = root / "server"
        stack.callback(server.stop, state)
        try:
            local = server.start(state, port=server.free_port(0))
        finally:
            os.environ.pop(DATABASE_URL, None)
        assert (backend == "sqlite") == (state / "prefect" / "prefect.db").exists(), "server on the wrong database"
        probe = ServerProbe((local.pid, *database), state / "prefect" / "server.log")
        try:
            yield local.api_url, probe
        except BaseException:
            print("Last lines of the server log:", *probe.log.read_text().splitlines()[-30:], sep="\n", file=sys.stderr)
            raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each part and variant (default 5)")
    parser.add_argument("--settle", type=float, default=3.0, help="idle seconds after each run (default 3)")
    parser.add_argument(
        "--only", choices=PARTS, action="append", help="measure this part only (repeatable; default: all)"
    )
    args = parser.parse_args()
    parts = tuple(args.only or PARTS)

    os.environ.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_LOG_RETRYABLE_ERRORS="true",  # the server logs each 503 it sends: counted
    )
    measured: dict[str, dict[str, list[Sample]]] = {}
    with tempfile.TemporaryDirectory(prefix="promoflow-bench-") as tmp:
        for backend in BACKENDS:
            root = Path(tmp) / backend
            root.mkdir()
            with (
                prefect_server(root, backend) as (api_url, probe),
                ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as client,
            ):
                found = client.submit(measure_backend, root, api_url, backend, args.runs, probe, args.settle, parts)
                for part, variants in found.result().items():
                    measured.setdefault(part, {}).update(variants)
    path = HERE / "results.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    results = {part: earlier[part] for part in PARTS if part in earlier} | report(measured, args.runs, args.settle)
    results = {part: results[part] for part in PARTS if part in results}
    path.write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "results.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
