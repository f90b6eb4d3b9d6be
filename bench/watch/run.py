"""Benchmark: the watch cycle over 200 repositories x 300 tags, and the registry push -> pipeline path.

Part 1 (listing): Debian's docker-registry on a free port (filesystem storage in a temporary directory,
access log on); one small image pushed per repository, then the same manifest PUT under 300 tags.
A promotions.yaml with one app per repository (semver policy). Measured:
  - a watch cycle (`promoflow.watching.run_cycle`, what the `watch` flow runs) when nothing changed,
  - a cycle after 10 repositories got a new tag (a new image),
  - the same listing by `skopeo list-tags` one repository after another.
Requests are counted by promoflow's clients and, independently, in the registry's access log.

Part 2 (webhook): registry push -> `promoflow webhook` receiver -> Prefect event -> the served `watch`
deployment's trigger -> watch of that repository -> `pipeline` deployment run started; on a real Prefect
server (promoflow/server.py) with the deployments served by deployments/serve.py.

Writes results.json and results.md beside this file.
Run: PYTHONPATH=. .venv/bin/python bench/watch/run.py [--rounds N] [--pushes N]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
REPOSITORIES, TAGS, CHANGED = 200, 300, 10
GOALS = {"cycle_seconds": 2.0, "ratio_to_skopeo": 0.25, "webhook_median_seconds": 3.0}
SECRET = "bench-webhook-secret-5b1f0e7a"
BUDGET = {"RATE": "1000", "CONCURRENCY": "8"}  # for this registry; the defaults are 10/s and 4
_ACCESS = re.compile(r'"(GET|HEAD|PUT|POST|PATCH|DELETE) (/v2/[^ ?]*)')

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    tools = [
        subprocess.run([tool, "--version"], capture_output=True, text=True).stdout.strip()
        for tool in ("docker-registry", "skopeo")
        if shutil.which(tool)
    ]
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.1f} GiB, Python {platform.python_version()},"
        f" Prefect {importlib.metadata.version('prefect')}, {', '.join(tools)}"
    )


def registry_requests(log_file: Path, since: int) -> tuple[Counter[str], int]:
    """Requests in the registry's access log after byte `since`, by kind; and the new offset."""
    with log_file.open("rb") as handle:
        handle.seek(since)
        text = handle.read().decode(errors="replace")
        end = handle.tell()
    kinds: Counter[str] = Counter()
    for method, path in _ACCESS.findall(text):
        if path == "/v2/":
            kinds[f"{method} ping"] += 1
        elif "/tags/list" in path:
            kinds[f"{method} tags"] += 1
        elif "/manifests/" in path:
            kinds[f"{method} manifest"] += 1
        else:
            kinds[f"{method} other"] += 1
    return kinds, end


# --- part 1: listing ------------------------------------------------------------------------------


async def populate(url: str) -> dict[str, bytes]:
    """One image per repository, then its manifest PUT under TAGS tags; returns the manifests."""
    from tests.registry_fixtures import push_image

    manifests: dict[str, bytes] = {}
    with httpx.Client(base_url=url, timeout=30) as http:
        for n in range(REPOSITORIES):
            repository = f"bench/app{n:03d}"
            manifests[repository] = push_image(http, repository, "1.0.0", f"bench {n}").manifest
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:

        async def put(repository: str, tag: str) -> None:
            async with gate:
                response = await http.put(
                    f"/v2/{repository}/manifests/{tag}",
                    content=manifests[repository],
                    headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                )
                response.raise_for_status()

        await asyncio.gather(*(put(r, tag) for r in manifests for tag in tag_names()[1:]))
    return manifests


def tag_names() -> list[str]:
    return [f"1.{i // 20}.{i % 20}" for i in range(TAGS)]


def bench_project(base: Path, url: str) -> Path:
    from promoflow import demo

    config = demo.write_config(base)
    text = config.read_text()
    apps = "".join(
        f"  - name: app{n:03d}\n    path: apps/app{n:03d}\n    images:\n"
        f"      - name: registry.example.com/bench/app{n:03d}\n"
        f"        source: {{registry: {url}, repository: bench/app{n:03d}}}\n"
        "        policy: {semver: '*'}\n"
        for n in range(REPOSITORIES)
    )
    config.write_text(text[: text.index("apps:\n")] + "apps:\n" + apps)
    return config


def timed_cycle(config: Path) -> dict[str, Any]:
    from promoflow import watching
    from promoflow.project import Project

    loading = time.perf_counter()
    project = Project.load(config)  # loaded per cycle, as each flow run does; timed apart
    load_seconds = time.perf_counter() - loading
    started = time.perf_counter()
    cpu = time.process_time()
    cycle = watching.run_cycle(project, list(project.config.apps))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    if cycle.failed:
        raise RuntimeError(f"the cycle failed for {sorted(cycle.failed)}: {next(iter(cycle.failed.values()))}")
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "load_seconds": load_seconds,
        "new": len(cycle.new),
        "requests": dict(cycle.requests),
    }


def skopeo_listing(url: str) -> tuple[float, int]:
    host = url.removeprefix("http://")
    started = time.perf_counter()
    total = 0
    for n in range(REPOSITORIES):
        out = subprocess.run(
            ["skopeo", "list-tags", "--tls-verify=false", f"docker://{host}/bench/app{n:03d}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        total += len(json.loads(out)["Tags"])
    return time.perf_counter() - started, total


def part_listing(work: Path, rounds: int) -> dict[str, Any]:
    from tests.registry_fixtures import push_image, start_registry

    registry = start_registry(work / "registry", work / "storage", {"REGISTRY_LOG_ACCESSLOG_DISABLED": "false"})
    try:
        url = registry.url
        key = re.sub(r"[^A-Z0-9]", "_", url.removeprefix("http://").upper())
        for name, value in BUDGET.items():
            os.environ[f"PROMOFLOW_REGISTRY_{key}_{name}"] = value
        log(f"registry {url}: pushing {REPOSITORIES} repositories x {TAGS} tags")
        started = time.perf_counter()
        asyncio.run(populate(url))
        push_seconds = time.perf_counter() - started
        log(f"pushed in {push_seconds:.1f} s")
        base = work / "project"
        base.mkdir()
        config = bench_project(base, url)

        first = timed_cycle(config)  # records every app's release, fills the digest store
        assert first["new"] == REPOSITORIES, first
        log(f"first cycle {first['seconds']:.2f} s {first['requests']}")
        offset = registry_requests(registry.log, 0)[1]

        unchanged, changed = [], []
        for r in range(rounds):
            sample = timed_cycle(config)
            sample["registry_log"], offset = registry_requests(registry.log, offset)
            assert sample["new"] == 0 and sample["requests"].get("HEAD manifest", 0) == 0, sample
            unchanged.append(sample)
            with httpx.Client(base_url=url, timeout=30) as http:  # 10 repositories get a new release
                for n in range(r * CHANGED, (r + 1) * CHANGED):
                    push_image(http, f"bench/app{n:03d}", f"{2 + r}.0.0", f"bench {n} round {r}")
            offset = registry_requests(registry.log, offset)[1]
            sample = timed_cycle(config)
            sample["registry_log"], offset = registry_requests(registry.log, offset)
            assert sample["new"] == CHANGED and sample["requests"]["HEAD manifest"] == CHANGED, sample
            changed.append(sample)
            log(f"round {r}: unchanged {unchanged[-1]['seconds']:.2f} s, changed {sample['seconds']:.2f} s")

        skopeo_runs = []
        for _ in range(max(1, rounds // 2)):
            seconds, tags = skopeo_listing(url)
            assert tags == REPOSITORIES * TAGS + rounds * CHANGED, tags
            skopeo_runs.append(seconds)
            log(f"skopeo list-tags x {REPOSITORIES}: {seconds:.2f} s")

        for name in BUDGET:  # once at the default budget, to show what it costs
            del os.environ[f"PROMOFLOW_REGISTRY_{key}_{name}"]
        default_budget = timed_cycle(config)
        log(f"unchanged cycle at the default budget: {default_budget['seconds']:.2f} s")
        return {
            "push_seconds": push_seconds,
            "first_cycle": first,
            "unchanged": unchanged,
            "changed": changed,
            "skopeo_seconds": skopeo_runs,
            "default_budget_unchanged": default_budget,
        }
    finally:
        registry.stop()


# --- part 2: webhook path ---------------------------------------------------------------------------


def start(args: list[str], log_file: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log_file.open("wb") as out:
        return subprocess.Popen(
            args,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL to what it started and is still running (flow runs of a worker: their own sessions)."""
    from tests.test_workers import descendants

    children = descendants(process.pid)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
    for pid in children:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait(what: str, check: Callable[[], Any], timeout: float, logs: list[Path]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.05)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
    raise RuntimeError(f"{what} not within {timeout} s\n{tails}")


def stamp(value: str | None) -> float:
    return datetime.fromisoformat(value).timestamp() if value else float("nan")


# The three ways from a push to a running pipeline, as results.json names them.
PATHS = {
    "workers": "the worker topology: a Prefect server on PostgreSQL, the deployments of deployments/prefect.yaml"
    " registered by deploy/register-deployments.sh, two workers as docker-compose.yml runs them (`python -m"
    " deployments.worker --pool promoflow`, its settings), the receiver; promoflow's records in PostgreSQL",
    "served": "the served deployments: `python -m deployments.serve` and the receiver, on a Prefect server on SQLite",
    "here": "`promoflow webhook --watch-here`: the receiver runs the watch and the pipeline in its own process",
}
WORKERS = ("bench-worker-a", "bench-worker-b")


def part_webhook(work: Path, pushes: int, path: str) -> dict[str, Any]:
    """Push -> pipeline running through one of PATHS."""
    work.mkdir(parents=True, exist_ok=True)
    from promoflow import demo, server
    from promoflow.sandbox.postgres import throwaway_postgres
    from tests.registry_fixtures import notifying, push_image, start_registry

    with ExitStack() as stack:
        state = work / "prefect"
        env = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # prefect, python of this venv
            "PREFECT_HOME": str(work / "prefect-client"),
            "PROMOFLOW_WEBHOOK_SECRET": SECRET,
            "PYTHONPATH": str(ROOT),
        }
        server_env = {}
        if path == "workers":
            postgres = stack.enter_context(throwaway_postgres())
            for name in ("prefect", "promoflow"):
                postgres.create_database(name)
            server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = postgres.url("asyncpg", "prefect")
            env["PROMOFLOW_DATABASE_URL"] = postgres.url("psycopg", "promoflow")
        with patched_environment(server_env):
            prefect = server.start(state, port=server.free_port(0))
        stack.callback(server.stop, state)
        env["PREFECT_API_URL"] = prefect.api_url
        api = stack.enter_context(httpx.Client(base_url=prefect.api_url, timeout=10))
        port = server.free_port(0)
        registry = start_registry(work / "hook-registry", work / "hook-storage", notifying(port, SECRET))
        stack.callback(registry.stop)
        base = work / "hook-project"
        base.mkdir()
        config = demo.write_config(base)
        demo.build_sandbox(base)
        text = config.read_text()
        text = text.replace("    path: apps/web\n", "    path: apps/web\n    environments: [dev]\n")
        text = text.replace(
            "          oci_layout: .promoflow/demo/oci/web     # an OCI image-layout directory",
            f"          registry: {registry.url}\n          repository: demo/web",
        )
        config.write_text(text)
        env["PROMOFLOW_CONFIG"] = str(config)
        logs = [work / "receiver.log", registry.log]
        receiver = [sys.executable, "-m", "promoflow", "webhook", "--port", str(port), "--config", str(config)]
        if path == "here":
            receiver.append("--watch-here")
        elif path == "served":
            logs.append(work / "serve.log")
            stack.callback(stop, start([sys.executable, "-m", "deployments.serve"], logs[-1], env))
        else:
            from tests.test_workers import WORKER_COMMAND, WORKER_ENVIRONMENT, _online_workers, register_deployments

            registered = register_deployments(work, env)
            if registered.returncode:
                raise RuntimeError(f"register-deployments.sh failed: {registered.stdout}{registered.stderr}")

            for name in WORKERS:
                logs.append(work / f"{name}.log")
                argv = [*WORKER_COMMAND, "--name", name]
                stack.callback(stop, start(argv, logs[-1], {**env, **WORKER_ENVIRONMENT}))
            wait(
                "both workers to poll the pool",
                lambda: len(_online_workers(prefect.api_url)) >= len(WORKERS),
                120,
                logs,
            )
        stack.callback(stop, start(receiver, logs[0], env))
        if path != "here":
            for name in ("watch", "pipeline"):
                wait(
                    f"the {name} deployment", lambda n=name: api.get(f"/deployments/name/{n}/{n}").is_success, 60, logs
                )
            wait("the watch trigger", lambda: api.post("/automations/filter", json={}).json(), 20, logs)
        wait("the receiver", lambda: _up(f"http://127.0.0.1:{port}/healthz"), 60, logs)

        def runs(flow: str, after: float) -> list[dict[str, Any]]:
            query = {"flows": {"name": {"any_": [flow]}}, "sort": "EXPECTED_START_TIME_ASC"}
            return [r for r in api.post("/flow_runs/filter", json=query).json() if stamp(r["created"]) > after]

        def claimed(run: str) -> float:
            """When the runner, worker or receiver took the run to start it (Pending)."""
            states = api.get("/flow_run_states/", params={"flow_run_id": run}).json()
            return min((stamp(s["timestamp"]) for s in states if s["type"] == "PENDING"), default=float("nan"))

        samples = []
        with httpx.Client(base_url=registry.url, timeout=10) as http:
            for i in range(pushes + 1):  # the first is a warm-up (imports, caches), not counted
                tag = f"1.{10 + i}.0"
                push_image(http, "demo/web", tag, f"webhook {tag} {uuid.uuid4()}")
                pushed_at = time.time()
                pipeline_run = wait(
                    f"the pipeline run of {tag}",
                    lambda at=pushed_at: [r for r in runs("pipeline", at) if r["start_time"]],
                    120,
                    logs,
                )[0]
                # the run the push triggered (it names the apps), not one of the interval schedule's
                watch_run = next(r for r in runs("watch", pushed_at) if r["parameters"].get("apps"))
                sample = {
                    "tag": tag,
                    "watch_run_created": stamp(watch_run["created"]) - pushed_at,
                    "watch_run_started": stamp(watch_run["start_time"]) - pushed_at,
                    "pipeline_run_created": stamp(pipeline_run["created"]) - pushed_at,
                    "pipeline_run_claimed": claimed(pipeline_run["id"]) - pushed_at,
                    "pipeline_run_started": stamp(pipeline_run["start_time"]) - pushed_at,
                }
                wait(
                    f"the pipeline run of {tag} to finish",
                    lambda run=pipeline_run["id"]: (
                        api.get(f"/flow_runs/{run}").json()["state_type"]
                        in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
                    ),
                    120,
                    logs,
                )
                if i:
                    samples.append(sample)
                log(f"{path}: push {tag}: " + ", ".join(f"{k} {v:.2f}" for k, v in sample.items() if k != "tag"))
        return {"path": PATHS[path], "pushes": samples, "poll": poll_settings(path)}


def poll_settings(path: str) -> str:
    """How often what starts flow runs looks for new ones."""
    if path == "here":
        return "none (no runner, no worker)"
    if path == "served":
        from deployments.serve import POLL_FREQUENCY_SECONDS

        return f"runner poll {os.environ.get('PREFECT_RUNNER_POLL_FREQUENCY') or POLL_FREQUENCY_SECONDS} s"
    from tests.test_workers import WORKER_ENVIRONMENT

    return ", ".join(f"{key}={value}" for key, value in sorted(WORKER_ENVIRONMENT.items()))


@contextmanager
def patched_environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


# --- report -------------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    values = [v for v in values if v == v]  # NaN: not recorded
    return f"{median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def report(results: dict[str, Any]) -> str:
    listing, hook = results["listing"], results["webhook"]
    unchanged = [s["seconds"] for s in listing["unchanged"]]
    changed = [s["seconds"] for s in listing["changed"]]
    skopeo = median(listing["skopeo_seconds"])
    ratio_unchanged, ratio_changed = median(unchanged) / skopeo, median(changed) / skopeo
    u, c = listing["unchanged"][0], listing["changed"][0]
    first, default = listing["first_cycle"], listing["default_budget_unchanged"]
    cpu_unchanged = median([s["cpu_seconds"] for s in listing["unchanged"]])
    cpu_changed = median([s["cpu_seconds"] for s in listing["changed"]])
    cycle_goal = f"<= {GOALS['cycle_seconds']:g} s"
    lines = [
        f"# Watch benchmark: {REPOSITORIES} repositories x {TAGS} tags, and registry push -> pipeline",
        "",
        f"{results['when']}, {results['rounds']} rounds, median (min-max). {results['machine']}."
        + (
            f" The listing part is from {results['listing_when']} (`--webhook-only` measured the webhook path again)."
            if results.get("listing_when", results["when"]) != results["when"]
            else ""
        ),
        "",
        f"Registry budget in the cycles: {BUDGET['RATE']} requests/s, {BUDGET['CONCURRENCY']} in flight"
        " (`PROMOFLOW_REGISTRY_<HOST>_RATE` / `_CONCURRENCY`; defaults 10/s and 4).",
        "",
        "## Listing",
        "",
        "| | seconds | CPU s (client) | requests (promoflow's count) | requests (registry access log) | goal |",
        "|---|---|---|---|---|---|",
        f"| watch cycle, nothing changed | {spread(unchanged)} | {cpu_unchanged:.2f}"
        f" | {_kinds(u['requests'])} | {_kinds(u['registry_log'])} | {cycle_goal} |",
        f"| watch cycle, {CHANGED} repositories with a new tag | {spread(changed)} | {cpu_changed:.2f}"
        f" | {_kinds(c['requests'])} | {_kinds(c['registry_log'])} | {cycle_goal} |",
        f"| `skopeo list-tags`, {REPOSITORIES} repositories one after another | {spread(listing['skopeo_seconds'])}"
        f" | | {REPOSITORIES} tag lists + tokens/pings | | |",
        f"| ratio cycle / skopeo, unchanged | {ratio_unchanged:.3f} | | | | <= {GOALS['ratio_to_skopeo']:g} |",
        f"| ratio cycle / skopeo, changed | {ratio_changed:.3f} | | | | <= {GOALS['ratio_to_skopeo']:g} |",
        f"| first cycle (records {REPOSITORIES} releases) | {first['seconds']:.2f} | {first['cpu_seconds']:.2f}"
        f" | {_kinds(first['requests'])} | | |",
        f"| unchanged cycle at the default budget (10/s, 4) | {default['seconds']:.2f} | {default['cpu_seconds']:.2f}"
        f" | {_kinds(default['requests'])} | | |",
        "",
        f"Not in the cycle times: loading the {REPOSITORIES}-app promotions.yaml, which each flow run does first,"
        f" {spread([s['load_seconds'] for s in listing['unchanged']])} s (the comment-keeping YAML parser).",
        "",
        f"Setting up: {REPOSITORIES * TAGS} tags pushed in {listing['push_seconds']:.0f} s.",
        "",
        f"No per-tag requests: every cycle sent one tag-list page per repository ({REPOSITORIES}), no HEAD when"
        f" nothing changed and exactly one HEAD per repository whose pick changed ({CHANGED}); the registry's"
        " own access log counts the same.",
        "",
        "## Webhook path: registry push -> pipeline flow running",
        "",
        "Each path: pushes one after another (each waits for the previous pipeline to finish); the seconds from the"
        " manifest PUT being answered to the watch run and the pipeline run being created and started (Prefect's"
        " `created` and `start_time`). Load average (1 min): " + results.get("load_average", "not recorded") + ".",
    ]
    met = {
        "unchanged cycle <= 2 s": median(unchanged) <= GOALS["cycle_seconds"],
        "changed cycle <= 2 s": median(changed) <= GOALS["cycle_seconds"],
        "ratio to skopeo <= 0.25": max(ratio_unchanged, ratio_changed) <= GOALS["ratio_to_skopeo"],
    }
    for path, measured in hook.items():
        pushes = measured["pushes"]
        lines += [
            "",
            f"### {path}",
            "",
            f"{measured['path'][0].upper()}{measured['path'][1:]}. {len(pushes)} pushes; {measured['poll']}.",
            "",
            *_webhook_table(pushes),
            "",
            "Where the time goes (medians): " + _hops(pushes) + ".",
        ]
        ok = median([s["pipeline_run_started"] for s in pushes]) <= GOALS["webhook_median_seconds"]
        met[f"push -> pipeline running <= 3 s (median), {path}"] = ok
    lines += ["", "Goals (medians):", ""]
    lines += [f"- {name}: {'met' if ok else 'NOT met'}" for name, ok in met.items()]
    if results.get("notes"):
        lines += ["", "## Notes", "", *results["notes"]]
    return "\n".join(lines) + "\n"


HOPS = (
    "watch_run_created",
    "watch_run_started",
    "pipeline_run_created",
    "pipeline_run_claimed",
    "pipeline_run_started",
)


def _webhook_table(pushes: list[dict[str, Any]]) -> list[str]:
    lines = ["| seconds after the push | median (min-max) | goal |", "|---|---|---|"]
    for key in HOPS:
        goal = f"<= {GOALS['webhook_median_seconds']:g}" if key == "pipeline_run_started" else ""
        lines.append(f"| {key.replace('_', ' ')} | {spread([s[key] for s in pushes])} | {goal} |")
    return lines


def _hops(pushes: list[dict[str, Any]]) -> str:
    hop = {key: median([s[key] for s in pushes if s[key] == s[key]]) for key in HOPS}
    return (
        f"push -> watch run created {hop['watch_run_created']:.2f} s; -> watch run started"
        f" {hop['watch_run_started'] - hop['watch_run_created']:.2f} s; -> pipeline run created"
        f" {hop['pipeline_run_created'] - hop['watch_run_started']:.2f} s; -> pipeline run claimed (Pending)"
        f" {hop['pipeline_run_claimed'] - hop['pipeline_run_created']:.2f} s; -> pipeline run started (Running)"
        f" {hop['pipeline_run_started'] - hop['pipeline_run_claimed']:.2f} s"
    )


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="unchanged + changed cycles measured")
    parser.add_argument("--pushes", type=int, default=20, help="pushes measured on the webhook path")
    parser.add_argument("--skip-webhook", action="store_true")
    parser.add_argument(
        "--webhook-only", action="store_true", help="measure the webhook path again, keep results.json's listing"
    )
    parser.add_argument(
        "--paths", default=",".join(PATHS), help=f"webhook paths to measure, comma-separated (of {', '.join(PATHS)})"
    )
    parser.add_argument("--report-only", action="store_true", help="rewrite results.md from results.json")
    args = parser.parse_args()
    if args.report_only:
        (HERE / "results.md").write_text(report(json.loads((HERE / "results.json").read_text())))
        return
    for program in ("docker-registry",) if args.webhook_only else ("docker-registry", "skopeo"):
        if shutil.which(program) is None:
            sys.exit(f"{program} is not installed: apt install docker-registry skopeo")
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "rounds": args.rounds,
        "goals": GOALS,
    }
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        work = Path(tmp)
        loads.append(os.getloadavg()[0])
        if args.webhook_only:
            previous = json.loads((HERE / "results.json").read_text())
            results["listing"] = previous["listing"]
            results["listing_when"] = previous.get("listing_when", previous["when"])
            results["listing_load_average"] = previous.get("listing_load_average", previous.get("load_average"))
            results["notes"] = previous.get("notes", [])
        else:
            results["listing"] = part_listing(work, args.rounds)
            results["listing_when"] = results["when"]
        loads.append(os.getloadavg()[0])
        paths = [] if args.skip_webhook else args.paths.split(",")
        if unknown := set(paths) - set(PATHS):
            sys.exit(f"--paths: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PATHS)}.")
        results["webhook"] = {}
        for path in paths:
            results["webhook"][path] = part_webhook(work / path, args.pushes, path)
            loads.append(os.getloadavg()[0])
    results["load_average"] = (
        " / ".join(f"{load:.1f}" for load in loads)
        + " (start / after listing"
        + "".join(f" / after {path}" for path in results["webhook"])
        + ")"
    )
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if results["webhook"]:
        text = report(results)
        (HERE / "results.md").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
