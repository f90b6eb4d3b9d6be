"""Apply benchmark: render, server-side apply and verify apps of 50 objects, on a real API server and the stand-in.

Each cluster in turn: `promoflow sandbox kube` (the stand-in in its own process, as a user would run it),
then a real control plane (etcd, kube-apiserver, kube-controller-manager and promoflow's simulated kubelet,
`promoflow.sandbox.control_plane`, built by scripts/kube-build). On each it drives promoflow's kubernetes
target the way the apply and verify steps do: render a plain YAML directory (with schema validation),
`KubernetesTarget.apply` with the previous inventory, `rollout_status`. Then (pipeline.py) a project of 100
such apps in one group, promoted by one `promoflow pipeline GROUP` run, on each cluster.
Writes results.json and results.md next to this file. See README.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.machine import machine as bench_machine
from promoflow.clusters.health import rollout_status
from promoflow.clusters.kubernetes import KubernetesTarget, ObjectRef
from promoflow.clusters.render import Manifest, render

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GOAL_REAPPLY_SECONDS = 1.0
GOAL_PIPELINE_SECONDS = 30.0  # 100 apps x 50 objects in one pipeline run, on 2 cores
SELECTOR = "app.kubernetes.io/managed-by=promoflow"
OBJECTS_PER_APP = 50  # 10 Deployments, 10 Services, 20 ConfigMaps, 10 Secrets


def app_manifests(app: str, tag: str) -> str:
    """One app of 50 objects as one multi-document YAML file."""
    docs = []
    for i in range(10):
        name = f"{app}-svc{i}"
        docs.append(
            f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: 2\n"
            f"  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n"
            f"    spec:\n      containers:\n        - name: app\n          image: registry.example.com/{name}:{tag}\n"
            f"          ports: [{{containerPort: 8080}}]\n          envFrom: [{{configMapRef: {{name: {name}-a}}}}]\n"
        )
        docs.append(
            f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n"
            f"spec: {{selector: {{app: {name}}}, ports: [{{port: 80, targetPort: 8080}}]}}\n"
        )
        for part in ("a", "b"):
            docs.append(
                f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}-{part}}}\n"
                f"data: {{LOG_LEVEL: info, FEATURE_{part.upper()}: 'on', OWNER: team-{i}}}\n"
            )
        docs.append(
            f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}-creds}}\ntype: Opaque\n"
            f"stringData: {{password: not-a-real-secret-{i}}}\n"
        )
    return "---\n".join(docs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def stand_in(root: Path) -> Iterator[str]:
    """`promoflow sandbox kube` on a free port; yields the kubeconfig path; stopped by PID."""
    port, kubeconfig = free_port(), root / "sandbox.kubeconfig"
    process = subprocess.Popen(
        [sys.executable, "-m", "promoflow", "sandbox", "kube", "--port", str(port), "--kubeconfig", str(kubeconfig)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(HERE.parents[1])},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not kubeconfig.exists() or not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the stand-in did not start: {process.stderr.read().decode()}")  # type: ignore[union-attr]
            time.sleep(0.05)
        yield str(kubeconfig)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def real_api_server(root: Path) -> Iterator[str]:
    """A real control plane (binaries from $PROMOFLOW_KUBE_BIN, else scripts/kube-build); yields a kubeconfig."""
    from promoflow.sandbox.control_plane import ControlPlane

    bin_dir = (
        os.environ.get("PROMOFLOW_KUBE_BIN")
        or subprocess.run(
            [str(ROOT / "scripts" / "kube-build")], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    with ControlPlane(Path(bin_dir), root / "control-plane") as plane:
        yield str(plane.write_kubeconfig(root / "real.kubeconfig", "sandbox"))


CLUSTERS: dict[str, Callable[[Path], Any]] = {"stand-in": stand_in, "real": real_api_server}


def versions(target: KubernetesTarget, selector: str = SELECTOR) -> dict[tuple[str, str], str]:
    """The resourceVersion of each object promoflow applied (matching `selector`): one moves on each write to it.

    Not the cluster's global resourceVersion: on a real API server that moves with every write anywhere
    (leases, the controllers' status updates), whatever promoflow does.
    """
    found = {}
    for kind, api_version in (("Deployment", "apps/v1"), ("Service", "v1"), ("ConfigMap", "v1"), ("Secret", "v1")):
        resource = target._dynamic().resources.get(api_version=api_version, kind=kind)
        for item in resource.get(label_selector=selector).items:
            found[kind, f"{item.metadata.namespace}/{item.metadata.name}"] = item.metadata.resourceVersion
    return found


def settled(target: KubernetesTarget, selector: str = SELECTOR, quiet: float = 1.0) -> dict[tuple[str, str], str]:
    """The objects' versions once the controllers have stopped writing their status for `quiet` seconds."""
    deadline = time.monotonic() + 120
    seen = versions(target, selector)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = versions(target, selector)
        if now == seen:
            return now
        seen = now
    raise RuntimeError("the controllers kept writing for 2 minutes")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def one_app(target: KubernetesTarget, root: Path, runs: int) -> dict[str, Any]:
    """Apply + verify one app; re-apply it unchanged `runs` times; change one image and apply + verify."""
    app_dir = root / "apps" / "shop"
    app_dir.mkdir(parents=True)
    (app_dir / "all.yaml").write_text(app_manifests("shop", "1.0"))
    render_s, objects = timed(lambda: render(app_dir))
    assert len(objects) == OBJECTS_PER_APP

    create_s, created = timed(lambda: target.apply("shop", "bench", objects))
    verify_s, results = timed(lambda: rollout_status(target, created.applied, 120, poll_seconds=0.05))
    assert all(r.healthy for r in results), results

    reapplies = []
    selector = f"{SELECTOR},promoflow.dev/app=shop"
    for _ in range(runs):
        before = settled(target, selector)
        seconds, again = timed(lambda: target.apply("shop", "bench", render(app_dir), previous=created.applied))
        after = versions(target, selector)
        reapplies.append(
            {"seconds": seconds, "requests": again.requests, "changed": len(again.changed), "rv_moved": after != before}
        )

    (app_dir / "all.yaml").write_text(app_manifests("shop", "1.0").replace("shop-svc3:1.0", "shop-svc3:1.1"))
    change_s, changed = timed(lambda: target.apply("shop", "bench", render(app_dir), previous=created.applied))
    reverify_s, results = timed(lambda: rollout_status(target, changed.applied, 120, poll_seconds=0.05))
    assert all(r.healthy for r in results) and [str(r) for r in changed.changed] == ["Deployment default/shop-svc3"]
    return {
        "render_validate_s": render_s,
        "create": {"seconds": create_s, "requests": created.requests, "changed": len(created.changed)},
        "verify_after_create_s": verify_s,
        "reapply_unchanged": reapplies,
        "one_image_changed": {"seconds": change_s, "requests": changed.requests, "changed": len(changed.changed)},
        "verify_after_change_s": reverify_s,
    }


def hundred_apps(target: KubernetesTarget, root: Path, apps: int) -> dict[str, Any]:
    """`apps` apps of 50 objects, each rendered, applied and verified in turn, then all re-applied unchanged."""
    inventories: dict[str, list[ObjectRef]] = {}
    dirs = {}
    for n in range(apps):
        name = f"app{n:03d}"
        dirs[name] = root / "many" / name
        dirs[name].mkdir(parents=True)
        (dirs[name] / "all.yaml").write_text(app_manifests(name, "1.0"))

    def deploy_all() -> tuple[int, int]:
        requests = changed = 0
        for name, path in dirs.items():
            objects: list[Manifest] = render(path)
            result = target.apply(name, "bench", objects, previous=inventories.get(name, ()))
            assert all(r.healthy for r in rollout_status(target, result.applied, 120, poll_seconds=0.05))
            inventories[name] = result.applied
            requests += result.requests
            changed += len(result.changed)
        return requests, changed

    first_s, (first_requests, first_changed) = timed(deploy_all)
    before = settled(target)
    again_s, (again_requests, again_changed) = timed(deploy_all)
    return {
        "apps": apps,
        "objects": apps * OBJECTS_PER_APP,
        "first": {"seconds": first_s, "requests": first_requests, "changed": first_changed},
        "unchanged": {
            "seconds": again_s,
            "requests": again_requests,
            "changed": again_changed,
            "rv_moved": versions(target) != before,
        },
    }


def machine() -> dict[str, Any]:
    return {
        **bench_machine("prefect"),
        "kubernetes_client": importlib.metadata.version("kubernetes"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def reapply_met(c: dict[str, Any]) -> bool:
    """The goal: re-applying the unchanged app takes <= 1 s (median) and changes nothing."""
    runs = c["one_app"]["reapply_unchanged"]
    moved = any(x["rv_moved"] or x["changed"] for x in runs)
    return statistics.median(x["seconds"] for x in runs) <= GOAL_REAPPLY_SECONDS and not moved


def markdown(r: dict[str, Any]) -> str:
    clusters = r["clusters"]

    def cells(fn: Callable[[dict[str, Any]], str]) -> str:
        return " | ".join(fn(c) for c in clusters.values())

    def reapply_s(c: dict[str, Any]) -> str:
        s = [x["seconds"] for x in c["one_app"]["reapply_unchanged"]]
        return f"{statistics.median(s):.3f} ({min(s):.3f}-{max(s):.3f})"

    def per_app(c: dict[str, Any], run: str, key: str = "seconds") -> str:
        many = c["many_apps"]
        if key == "seconds":
            return f"{many[run]['seconds']:.1f} ({many[run]['seconds'] / many['apps']:.2f} per app)"
        return f"{many[run]['requests']} ({many[run]['requests'] // many['apps']} per app)"

    first = next(iter(clusters.values()))
    runs, apps = len(first["one_app"]["reapply_unchanged"]), first["many_apps"]["apps"]
    rows = [
        ("connect (discovery), s", lambda c: f"{c['connect_s']:.3f}", ""),
        ("render + schema-validate 50 objects, s", lambda c: f"{c['one_app']['render_validate_s']:.3f}", ""),
        ("first apply (create 50), s", lambda c: f"{c['one_app']['create']['seconds']:.3f}", ""),
        ("- requests", lambda c: str(c["one_app"]["create"]["requests"]), ""),
        ("verify after create (10 Deployments), s", lambda c: f"{c['one_app']['verify_after_create_s']:.3f}", ""),
        (
            f"re-apply unchanged (render + apply), s, median (min-max) of {runs}",
            reapply_s,
            f"<= {GOAL_REAPPLY_SECONDS:g}",
        ),
        ("- requests", lambda c: str(c["one_app"]["reapply_unchanged"][0]["requests"]), ""),
        (
            "- objects changed / resourceVersion moved",
            lambda c: (
                "SOME" if any(x["rv_moved"] or x["changed"] for x in c["one_app"]["reapply_unchanged"]) else "none"
            ),
            "none",
        ),
        ("one image changed: apply, s", lambda c: f"{c['one_app']['one_image_changed']['seconds']:.3f}", ""),
        ("- requests / objects changed", lambda c: f"{c['one_app']['one_image_changed']['requests']} / 1", ""),
        ("- verify (a rolling update of 2 pods), s", lambda c: f"{c['one_app']['verify_after_change_s']:.3f}", ""),
        (f"{apps} apps x 50 objects, apply + verify each, s", lambda c: per_app(c, "first"), ""),
        ("- requests", lambda c: per_app(c, "first", "requests"), ""),
        (f"{apps} apps re-applied unchanged + verified, s", lambda c: per_app(c, "unchanged"), ""),
        ("- requests", lambda c: per_app(c, "unchanged", "requests"), ""),
        (
            "- objects changed / resourceVersion moved",
            lambda c: "{} / {}".format(
                c["many_apps"]["unchanged"]["changed"], "yes" if c["many_apps"]["unchanged"]["rv_moved"] else "no"
            ),
            "0 / no",
        ),
        ("load average at start", lambda c: str(c["load_average_at_start"][0]), ""),
    ]
    m = r["machine"]
    lines = [
        "# Apply benchmark: apps of 50 objects on a real API server and on the simulated cluster",
        "",
        f"{r['date']}. {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
        f"kubernetes client {m['kubernetes_client']}, Kubernetes {m['kubernetes']}, "
        f"load average at start {m['load_average_at_start']}.",
        "",
        *(
            [f"The table below was measured earlier, {r['clusters_date']} (`--pipeline-only` kept it).", ""]
            if "clusters_date" in r
            else []
        ),
        "| | " + " | ".join(CLUSTER_TITLES[name] for name in clusters) + " | goal |",
        "|---" * (len(clusters) + 2) + "|",
        *[f"| {label} | {cells(fn)} | {goal} |" for label, fn, goal in rows],
        "",
        *(
            f"Re-apply goal on the {CLUSTER_TITLES[name]} (<= {GOAL_REAPPLY_SECONDS:g} s, nothing changed): "
            + ("met" if reapply_met(c) else "NOT met")
            + "."
            for name, c in clusters.items()
        ),
        "",
        *pipeline_markdown(r),
    ]
    return "\n".join(lines)


CLUSTER_TITLES = {"stand-in": "simulated cluster (stand-in)", "real": "real kube-apiserver"}


def pipeline_markdown(r: dict[str, Any]) -> list[str]:
    """The pipeline part: one `promoflow pipeline GROUP` run per release, side by side, one table per cluster."""
    return [line for name, p in r.get("pipeline", {}).items() for line in pipeline_table(CLUSTER_TITLES[name], p)]


def pipeline_table(cluster: str, p: dict[str, Any]) -> list[str]:
    runs = p["runs"]

    def spread(s: dict[str, float]) -> str:
        return f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})"

    def row(label: str, fn: Callable[[dict[str, Any]], str]) -> str:
        return f"| {label} | {' | '.join(fn(run) for run in runs)} |"

    def step_cell(step: str) -> Callable[[dict[str, Any]], str]:
        return lambda x: spread(x["records"]["steps_s"][step])

    steps = list(runs[0]["records"]["steps_s"])
    return [
        f"## One pipeline run on the {cluster}: a group of {p['apps']} apps x {p['objects_per_app']} objects",
        "",
        "`python -m promoflow pipeline fleet` (one Prefect flow run) on a local Prefect server (SQLite), "
        f"environment `bench` with target kubernetes on a fresh {cluster}, no approvals. "
        "Per-app figures are median (min-max) over the apps, from the promotion records.",
        "",
        "| | "
        + " | ".join(f"{'first' if i == 0 else 'next'} run: release {x['release']}" for i, x in enumerate(runs))
        + " |",
        "|---" * (len(runs) + 1) + "|",
        row(
            "what the apply does",
            lambda x: "creates 50 objects per app" if x is runs[0] else "new image in 10 Deployments per app",
        ),
        row("wall time of the CLI run, s", lambda x: f"{x['wall_s']:.1f}"),
        row("- per app, s", lambda x: f"{x['wall_per_app_s']:.2f}"),
        row("- first promotion created .. last ended (records), s", lambda x: f"{x['records']['records_span_s']:.1f}"),
        row(
            "- outside the records (start-up, release resolution, flow run), s",
            lambda x: f"{x['wall_s'] - x['records']['records_span_s']:.1f}",
        ),
        row(
            # members go side by side (groups[].concurrency): their step times add up to more than the span
            "- in the steps, summed over the apps (they overlap: `concurrency` at a time), s",
            lambda x: f"{x['records']['in_steps_s']:.1f}",
        ),
        row("promotion of one app (created .. ended), s", lambda x: spread(x["records"]["per_app_promotion_s"])),
        row(
            "- median of the first 10 apps / of the last 10, s",
            lambda x: "{:.3f} / {:.3f}".format(*x["records"]["per_app_promotion_first_10_last_10_median_s"]),
        ),
        *(row(f"- {step}, s", step_cell(step)) for step in steps),
        row(
            "Kubernetes requests per apply (min-max); total",
            lambda x: (
                f"{x['records']['apply_requests']['min']}-{x['records']['apply_requests']['max']}; "
                f"{x['records']['apply_requests']['total']}"
            ),
        ),
        row(
            "objects changed per apply (min-max); total",
            lambda x: (
                f"{x['records']['apply_changed_objects']['min']}-{x['records']['apply_changed_objects']['max']}; "
                f"{x['records']['apply_changed_objects']['total']}"
            ),
        ),
        row(
            "promotions succeeded, verify included (one bundle, one flow run)",
            lambda x: f"{x['records']['promotions']} of {p['apps']}",
        ),
        row(
            "Deployments healthy in verify / running the release and rolled out in the cluster",
            lambda x: (
                f"{x['records']['verify_healthy_deployments']} / "
                f"{x['cluster']['deployments'] if x['cluster']['all_run_the_release_and_rolled_out'] else 'NOT all'}"
            ),
        ),
        row("load average before -> after", lambda x: f"{x['load_average_before'][0]} -> {x['load_average_after'][0]}"),
        "",
        *pipeline_goals(p),
    ]


def pipeline_goals(p: dict[str, Any]) -> list[str]:
    """The issue's goals for many apps, beside what was measured."""
    first = p["runs"][0]
    early, late = first["records"]["per_app_promotion_first_10_last_10_median_s"]
    load = p.get("config_load")
    lines = [
        f"Goals: 100 apps in one pipeline run <= {GOAL_PIPELINE_SECONDS:g} s: {first['wall_s']:.1f} s "
        f"({'met' if first['wall_s'] <= GOAL_PIPELINE_SECONDS else 'not met'}; {p['apps']} apps here). "
        f"The per-app time does not grow over the run: first 10 / last 10 apps {early:.3f} / {late:.3f} s.",
    ]
    if load:
        lines[0] += (
            f" A promotions.yaml of {load['apps']} apps loads (each flow run's process does it first) in "
            f"{load['load_s']['median']:.3f} s, median of 5 ({load['load_s']['min']:.3f}-{load['load_s']['max']:.3f};"
            f" goal <= 0.1 s); the comment-keeping parser every load used before takes "
            f"{load['located_path_s']['median']:.3f} s to parse it."
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10, help="unchanged re-applies of the one app")
    parser.add_argument("--apps", type=int, default=100, help="apps in the many-apps run")
    parser.add_argument("--pipeline-apps", type=int, default=100, help="apps in the group of the pipeline run")
    parser.add_argument(
        "--pipeline-releases", type=int, default=2, choices=(1, 2), help="pipeline runs (1: create; 2: then update)"
    )
    parser.add_argument(
        "--pipeline-only",
        action="store_true",
        help="measure the pipeline part only; keep the other parts of results.json as measured then (their date kept)",
    )
    args = parser.parse_args()
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}
    results["clusters"], results["pipeline"] = {}, {}
    if args.pipeline_only:
        earlier = json.loads((HERE / "results.json").read_text())
        results["clusters"], results["clusters_date"] = (
            earlier["clusters"],
            earlier.get("clusters_date", earlier["date"]),
        )
        results["machine"]["kubernetes"] = earlier["machine"]["kubernetes"]
    for name, cluster in [] if args.pipeline_only else CLUSTERS.items():
        with tempfile.TemporaryDirectory(prefix="promoflow-bench-apply-") as tmp:
            root = Path(tmp)
            load = [round(x, 2) for x in os.getloadavg()]
            with cluster(root) as kubeconfig, KubernetesTarget(kubeconfig, "sandbox") as target:
                measured: dict[str, Any] = {"load_average_at_start": load}
                measured["connect_s"], _ = timed(target._dynamic)
                results["machine"].setdefault("kubernetes", target._dynamic().version["kubernetes"]["gitVersion"])
                measured["one_app"] = one_app(target, root, args.runs)
                print(name, json.dumps(measured["one_app"], indent=1), flush=True)
                measured["many_apps"] = hundred_apps(target, root, args.apps)
                results["clusters"][name] = measured
    for name, cluster in CLUSTERS.items():
        with tempfile.TemporaryDirectory(prefix="promoflow-bench-pipeline-") as tmp:
            import pipeline  # its own cluster and Prefect server

            results["pipeline"][name] = pipeline.measure(
                Path(tmp), args.pipeline_apps, args.pipeline_releases, cluster=cluster
            )
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "results.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
