"""Apply benchmark: render, server-side apply and verify apps of 50 objects against the simulated cluster.

Starts `promoflow sandbox kube` (the stand-in in its own process, as a user would run it), then drives
promoflow's kubernetes target the way the apply and verify steps do: render a plain YAML directory
(with schema validation), `KubernetesTarget.apply` with the previous inventory, `rollout_status`.
Then (pipeline.py) a project of 100 such apps in one group, promoted by one `promoflow pipeline GROUP` run.
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
GOAL_REAPPLY_SECONDS = 1.0
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


def cluster_version(target: KubernetesTarget) -> int:
    """The cluster's global resourceVersion (a list's metadata carries it): moves on every write."""
    namespaces = target._dynamic().resources.get(api_version="v1", kind="Namespace")
    return int(namespaces.get().metadata.resourceVersion)


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
    verify_s, results = timed(lambda: rollout_status(target, created.applied, 60, poll_seconds=0.05))
    assert all(r.healthy for r in results), results

    reapplies = []
    for _ in range(runs):
        before = cluster_version(target)
        seconds, again = timed(lambda: target.apply("shop", "bench", render(app_dir), previous=created.applied))
        after = cluster_version(target)
        reapplies.append(
            {"seconds": seconds, "requests": again.requests, "changed": len(again.changed), "rv_moved": after != before}
        )

    (app_dir / "all.yaml").write_text(app_manifests("shop", "1.0").replace("shop-svc3:1.0", "shop-svc3:1.1"))
    change_s, changed = timed(lambda: target.apply("shop", "bench", render(app_dir), previous=created.applied))
    reverify_s, results = timed(lambda: rollout_status(target, changed.applied, 60, poll_seconds=0.05))
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
            assert all(r.healthy for r in rollout_status(target, result.applied, 60, poll_seconds=0.05))
            inventories[name] = result.applied
            requests += result.requests
            changed += len(result.changed)
        return requests, changed

    first_s, (first_requests, first_changed) = timed(deploy_all)
    before = cluster_version(target)
    again_s, (again_requests, again_changed) = timed(deploy_all)
    return {
        "apps": apps,
        "objects": apps * OBJECTS_PER_APP,
        "first": {"seconds": first_s, "requests": first_requests, "changed": first_changed},
        "unchanged": {
            "seconds": again_s,
            "requests": again_requests,
            "changed": again_changed,
            "rv_moved": cluster_version(target) != before,
        },
    }


def machine() -> dict[str, Any]:
    return {
        **bench_machine("prefect"),
        "kubernetes_client": importlib.metadata.version("kubernetes"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def markdown(r: dict[str, Any]) -> str:
    one, many = r["one_app"], r["many_apps"]
    re_s = [x["seconds"] for x in one["reapply_unchanged"]]
    re_req = one["reapply_unchanged"][0]["requests"]
    moved = any(x["rv_moved"] or x["changed"] for x in one["reapply_unchanged"])
    m = r["machine"]
    per_app_first = many["first"]["seconds"] / many["apps"]
    per_app_again = many["unchanged"]["seconds"] / many["apps"]
    rows = [
        ("render + schema-validate 50 objects, s", f"{one['render_validate_s']:.3f}", ""),
        ("first apply (create 50), s", f"{one['create']['seconds']:.3f}", ""),
        ("- requests", str(one["create"]["requests"]), ""),
        ("verify after create (10 Deployments), s", f"{one['verify_after_create_s']:.3f}", ""),
        (
            f"re-apply unchanged (render + apply), s, median (min-max) of {len(re_s)}",
            f"{statistics.median(re_s):.3f} ({min(re_s):.3f}-{max(re_s):.3f})",
            f"<= {GOAL_REAPPLY_SECONDS:g}",
        ),
        ("- requests", str(re_req), ""),
        ("- objects changed / resourceVersion moved", "none" if not moved else "SOME", "none"),
        ("one image changed: apply, s", f"{one['one_image_changed']['seconds']:.3f}", ""),
        ("- requests / objects changed", f"{one['one_image_changed']['requests']} / 1", ""),
        ("- verify, s", f"{one['verify_after_change_s']:.3f}", ""),
        (
            f"{many['apps']} apps x 50 objects, apply + verify each, s",
            f"{many['first']['seconds']:.1f} ({per_app_first:.2f} per app)",
            "",
        ),
        ("- requests", f"{many['first']['requests']} ({many['first']['requests'] // many['apps']} per app)", ""),
        (
            f"{many['apps']} apps re-applied unchanged + verified, s",
            f"{many['unchanged']['seconds']:.1f} ({per_app_again:.2f} per app)",
            "",
        ),
        (
            "- requests",
            f"{many['unchanged']['requests']} ({many['unchanged']['requests'] // many['apps']} per app)",
            "",
        ),
        (
            "- objects changed / resourceVersion moved",
            f"{many['unchanged']['changed']} / {'yes' if many['unchanged']['rv_moved'] else 'no'}",
            "0 / no",
        ),
    ]
    lines = [
        "# Apply benchmark: apps of 50 objects on the simulated cluster",
        "",
        f"{r['date']}. {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
        f"kubernetes client {m['kubernetes_client']}, load average at start {m['load_average_at_start']}.",
        "",
        "| | measured | goal |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        f"Re-apply goal (<= {GOAL_REAPPLY_SECONDS:g} s, nothing changed): "
        + ("met" if statistics.median(re_s) <= GOAL_REAPPLY_SECONDS and not moved else "NOT met")
        + ".",
        "",
        *pipeline_markdown(r),
    ]
    return "\n".join(lines)


def pipeline_markdown(r: dict[str, Any]) -> list[str]:
    """The pipeline part: one `promoflow pipeline GROUP` run per release, side by side."""
    if "pipeline" not in r:
        return []
    p = r["pipeline"]
    runs = p["runs"]

    def spread(s: dict[str, float]) -> str:
        return f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})"

    def row(label: str, fn: Callable[[dict[str, Any]], str]) -> str:
        return f"| {label} | {' | '.join(fn(run) for run in runs)} |"

    def step_cell(step: str) -> Callable[[dict[str, Any]], str]:
        return lambda x: spread(x["records"]["steps_s"][step])

    steps = list(runs[0]["records"]["steps_s"])
    return [
        f"## One pipeline run: a group of {p['apps']} apps x {p['objects_per_app']} objects",
        "",
        "`python -m promoflow pipeline fleet` (one Prefect flow run) on a local Prefect server (SQLite), "
        "environment `bench` with target kubernetes on a fresh `promoflow sandbox kube`, no approvals. "
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
            "- in the steps / between and around them (Prefect, records), s",
            lambda x: (
                f"{x['records']['in_steps_s']:.1f} / {x['records']['records_span_s'] - x['records']['in_steps_s']:.1f}"
            ),
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
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10, help="unchanged re-applies of the one app")
    parser.add_argument("--apps", type=int, default=100, help="apps in the many-apps run")
    parser.add_argument("--pipeline-apps", type=int, default=100, help="apps in the group of the pipeline run")
    parser.add_argument(
        "--pipeline-releases", type=int, default=2, choices=(1, 2), help="pipeline runs (1: create; 2: then update)"
    )
    args = parser.parse_args()
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="promoflow-bench-apply-") as tmp:
        root = Path(tmp)
        with stand_in(root) as kubeconfig, KubernetesTarget(kubeconfig, "sandbox") as target:
            results["connect_s"], _ = timed(target._dynamic)
            results["one_app"] = one_app(target, root, args.runs)
            print(json.dumps(results["one_app"], indent=1), flush=True)
            results["many_apps"] = hundred_apps(target, root, args.apps)
    with tempfile.TemporaryDirectory(prefix="promoflow-bench-pipeline-") as tmp:
        import pipeline  # its own stand-in and Prefect server

        results["pipeline"] = pipeline.measure(Path(tmp), args.pipeline_apps, args.pipeline_releases)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (HERE / "results.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
