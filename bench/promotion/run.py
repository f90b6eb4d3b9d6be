"""Benchmark: one release dev -> staging -> prod with automatic approval on a warm local Prefect server.

Each measured pair runs the pipeline flow (orchestrated) and the same steps called with `.fn` (direct),
each on a fresh sandbox. Per server backend (SQLite, PostgreSQL) one server, warmed up once, and one
fresh client process; in it, the pairs with the flow heartbeat on and off.
Writes results.json and results.md beside this file.
Run: .venv/bin/python bench/promotion/run.py [--runs N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import statistics
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

HERE = Path(__file__).resolve().parent
APP, RELEASE, REQUESTER = "web", "1.2.0", "bench"
ENVIRONMENTS = ("dev", "staging", "prod")
BACKENDS = ("sqlite", "postgres")
HEARTBEATS = ("heartbeat", "no_heartbeat")
VARIANTS = tuple(f"{backend}+{heartbeat}" for backend in BACKENDS for heartbeat in HEARTBEATS)
DEFAULT = "sqlite+heartbeat"  # Prefect as configured
DATABASE_URL = "PREFECT_API_DATABASE_CONNECTION_URL"
GOALS = {"total_seconds": 10.0, "orchestration_share": 0.5}

Sample = dict[str, Any]  # nested dicts of seconds (floats)


def make_sandbox(root: Path, name: str) -> str:
    """A demo sandbox (git repo, OCI layout) with 1.2.0 published and no approval needed anywhere."""
    from promoflow import demo
    from promoflow.sources import oci_layout

    base = root / name
    base.mkdir()
    config = demo.write_config(base)
    text = config.read_text()
    assert "required: 1" in text
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
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    return own + sum(process_cpu(c) for c in children if Path(f"/proc/{c}").exists())


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


def timed(fn: Callable[[str], Sample], config: str, server: ServerProbe, settle: float) -> Sample:
    """One run; CPU is counted until `settle` seconds after it, so background flushing is included."""
    load = os.getloadavg()[0]
    client, server_cpu, errors = client_cpu(), server.cpu(), server.retryable_errors()
    sample = fn(config)
    time.sleep(settle)
    sample["cpu"] = {"client": client_cpu() - client, "server": server.cpu() - server_cpu}
    sample["cpu"]["total"] = sample["cpu"]["client"] + sample["cpu"]["server"]
    sample["server_retryable_errors"] = server.retryable_errors() - errors
    sample["load_before"] = load
    return sample


def measure_pair(root: Path, label: str, server: ServerProbe, settle: float, direct_first: bool) -> Sample:
    runs: list[tuple[str, Callable[[str], Sample]]] = [("orchestrated", orchestrated), ("direct", direct)]
    pair = {
        kind: timed(fn, make_sandbox(root, f"{label}-{kind}"), server, settle)
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


def measure_backend(root: Path, api_url: str, backend: str, runs: int, server: ServerProbe, settle: float) -> Any:
    """In a fresh process (Prefect reads PREFECT_API_URL once): warm up, then `runs` pairs per heartbeat setting."""
    assert "prefect" not in sys.modules, "Prefect must be imported after PREFECT_API_URL is set"
    os.environ.update(PREFECT_API_URL=api_url, PREFECT_HOME=str(root / "client"))
    print(f"{backend}: warming up, one throwaway pipeline and direct run", flush=True)
    measure_pair(root, "warmup", server, settle, direct_first=False)
    samples: dict[str, list[Sample]] = {f"{backend}+{name}": [] for name in HEARTBEATS}
    for i in range(runs):
        for name in HEARTBEATS:
            with heartbeat(name):
                sample = measure_pair(root, f"{name}-{i}", server, settle, direct_first=i % 2 == 1)
            samples[f"{backend}+{name}"].append(sample)
            print(
                f"run {i + 1}/{runs} {backend}+{name}: orchestrated {sample['orchestrated']['total']:.2f} s, "
                f"direct {sample['direct']['total']:.2f} s, share {sample['orchestration_share']:.0%}, "
                f"server 503s {sample['orchestrated']['server_retryable_errors']}",
                flush=True,
            )
    return samples


def report(samples: dict[str, list[Sample]], runs: int, settle: float) -> dict[str, Any]:
    variants = {name: {**summarise(samples[name]), "samples": samples[name]} for name in VARIANTS}
    met = {
        name: {
            "total_seconds": v["orchestrated"]["total"]["median"] <= GOALS["total_seconds"],
            "orchestration_share": v["orchestration_share"]["median"] <= GOALS["orchestration_share"],
        }
        for name, v in variants.items()
    }
    return {
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": runs,
        "settle_seconds": settle,
        "variants": variants,
        "goals": GOALS,
        "met": met,
        "notes": [
            "Goals are checked against medians. Each pair is an orchestrated and a direct run, each on a fresh "
            "sandbox, in alternating order; every run is followed by an untimed idle settle.",
            "One Prefect server per backend, warmed up once, measured from its own client process; the heartbeat "
            "settings alternate within each run. PostgreSQL: a throwaway local cluster, fsync off (-F).",
            "Direct run: open_request.fn creates its markdown artifact through the API outside a run "
            "(Prefect warns this is deprecated), so both runs make that HTTP call.",
            "Per environment wall = promotion record created_at..ended_at; flow-run creation and teardown "
            "(heartbeat join, the client's retries after a 503) fall outside the records.",
            "CPU = the client process with its git children; server = the Prefect server process plus, for "
            "postgres, the PostgreSQL cluster (postmaster and its backends); until the end of the settle.",
        ],
    }


def markdown(results: dict[str, Any]) -> str:
    def cell(stat: dict[str, float], fmt: str = "{:.2f}") -> str:
        return f"{fmt.format(stat['median'])} ({fmt.format(stat['min'])}-{fmt.format(stat['max'])})"

    def cpu(stat: dict[str, dict[str, float]]) -> str:
        return f"{stat['client']['median']:.2f} + {stat['server']['median']:.2f}"

    def yes(met: bool) -> str:
        return "met" if met else "NOT met"

    pct = "{:.0%}"
    v = results["variants"]
    rows: list[tuple[str, Callable[[dict[str, Any]], str], str]] = [
        ("orchestrated total, s", lambda x: cell(x["orchestrated"]["total"]), f"<= {GOALS['total_seconds']:g}"),
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
        ("direct total (.fn), s", lambda x: cell(x["direct"]["total"]), ""),
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
    m = results["machine"]
    lines = [
        "# Promotion benchmark: web 1.2.0 dev -> staging -> prod, automatic approval",
        "",
        f"{results['date']}, {results['runs']} runs per variant, median (min-max). "
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, Prefect {m['prefect']}.",
        "",
        f"| | {' | '.join(VARIANTS)} | goal |",
        "|---" * (len(VARIANTS) + 2) + "|",
        *(f"| {label} | {' | '.join(fn(v[name]) for name in VARIANTS)} | {goal} |" for label, fn, goal in rows),
        "",
        "Goals met (medians):",
        "",
        *(
            f"- {name}: total <= {GOALS['total_seconds']:g} s: {yes(results['met'][name]['total_seconds'])}; "
            f"orchestration share <= {GOALS['orchestration_share']:.0%}: "
            f"{yes(results['met'][name]['orchestration_share'])}"
            for name in VARIANTS
        ),
        "",
        f"Step durations from the records, summed over the three environments, {DEFAULT} variant:",
        "",
        "| step | orchestrated, s | direct, s |",
        "|---|---|---|",
        *(
            f"| {step} | {cell(stat)} | {cell(v[DEFAULT]['direct']['steps_by_name'][step])} |"
            for step, stat in v[DEFAULT]["orchestrated"]["steps_by_name"].items()
        ),
        "",
        *(f"- {note}" for note in results["notes"]),
        "",
    ]
    return "\n".join(lines)


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
    parser.add_argument("--runs", type=int, default=5, help="measured pairs per variant (default 5)")
    parser.add_argument("--settle", type=float, default=3.0, help="idle seconds after each run (default 3)")
    args = parser.parse_args()

    os.environ.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_LOG_RETRYABLE_ERRORS="true",  # the server logs each 503 it sends: counted
    )
    samples: dict[str, list[Sample]] = {}
    with tempfile.TemporaryDirectory(prefix="promoflow-bench-") as tmp:
        for backend in BACKENDS:
            root = Path(tmp) / backend
            root.mkdir()
            with (
                prefect_server(root, backend) as (api_url, probe),
                ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as client,
            ):
                samples |= client.submit(
                    measure_backend, root, api_url, backend, args.runs, probe, args.settle
                ).result()
    result = report(samples, args.runs, args.settle)
    (HERE / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "results.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
