"""Apply benchmark, pipeline part: 100 apps of 50 objects in one group, one `promoflow pipeline GROUP` run.

A real project in a temporary directory: a bare git repository with one environment branch holding every
app in its own directory, one OCI image-layout source per app, one environment `bench` (target
`kubernetes` on `promoflow sandbox kube`, no approvals) and one group of all the apps. The pipeline runs
through the CLI (`python -m promoflow pipeline GROUP`) against a local Prefect server, so the figures
include everything a user waits for: process start, Prefect, git, render, apply, verify, records.
Used by run.py; `python bench/apply/pipeline.py --apps 5` runs this part alone (prints, writes nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import CLUSTERS, OBJECTS_PER_APP, app_manifests, stand_in  # noqa: E402

from promoflow.sources import oci_layout  # noqa: E402

GROUP, ENVIRONMENT, BRANCH = "fleet", "bench", "env/bench"
IMAGE = "registry.example.com/bench/{app}"
DEPLOYMENTS_PER_APP = 10
BASELINE_TAG = "0.0.0"  # what the environment branch names before the first promotion (never published)
RELEASES = ("1.0.0", "1.1.0")  # first run: creates every object; second run: a new image for every app


def app_names(prefix: str, apps: int) -> list[str]:
    return [f"{prefix}{n:03d}" for n in range(apps)]


def pipeline_manifests(app: str) -> str:
    """run.py's app of 50 objects, its 10 Deployments all running the app's one image (one source per app)."""
    text = app_manifests(app, BASELINE_TAG)
    for i in range(DEPLOYMENTS_PER_APP):
        text = text.replace(
            f"registry.example.com/{app}-svc{i}:{BASELINE_TAG}", f"{IMAGE.format(app=app)}:{BASELINE_TAG}"
        )
    return text


def config_text(apps: list[str], kubeconfig: str) -> str:
    lines = [
        "version: 1",
        "repository: {url: repo.git}",
        "environments:",
        f"  - name: {ENVIRONMENT}",
        f"    branch: {BRANCH}",
        f"    cluster: {{target: kubernetes, kubeconfig: {kubeconfig}, context: sandbox, rollout_timeout_seconds: 60}}",
        "    approval: {required: 0}",
        "apps:",
    ]
    for app in apps:
        lines += [
            f"  - name: {app}",
            f"    path: apps/{app}",
            f"    images: [{{name: {IMAGE.format(app=app)}, source: {{oci_layout: oci/{app}}}}}]",
        ]
    lines += ["groups:", f"  - name: {GROUP}", f"    apps: [{', '.join(apps)}]", ""]
    return "\n".join(lines)


def git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_project(base: Path, apps: list[str], kubeconfig: str) -> Path:
    """promotions.yaml, repo.git (branch env/bench with apps/<app>/all.yaml each) and oci/<app> layouts."""
    base.mkdir(parents=True)
    git("init", "--quiet", "--bare", str(base / "repo.git"))
    tree = base / "tree"
    git("init", "--quiet", "-b", BRANCH, str(tree))
    for app in apps:
        (tree / "apps" / app).mkdir(parents=True)
        (tree / "apps" / app / "all.yaml").write_text(pipeline_manifests(app))
    git("add", "-A", cwd=tree)
    git("-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "apps", cwd=tree)
    git("push", "--quiet", str(base / "repo.git"), BRANCH, cwd=tree)
    config = base / "promotions.yaml"
    config.write_text(config_text(apps, kubeconfig))
    return config


def publish(base: Path, apps: list[str], tag: str) -> dict[str, str]:
    """A new release of every app, as CI would publish it; the digests by app."""
    return {app: oci_layout.publish(base / "oci" / app, tag) for app in apps}


@contextlib.contextmanager
def prefect_server(root: Path) -> Iterator[dict[str, str]]:
    """A local Prefect server (promoflow.server) on a free port; yields the environment for CLI processes."""
    from promoflow import server

    state = root / "prefect-server"
    try:
        running = server.start(state, port=server.free_port(0))
        yield {"PREFECT_API_URL": running.api_url, "PREFECT_HOME": str(root / "prefect-client")}
    finally:
        server.stop(state)


def run_pipeline(config: Path, env: dict[str, str]) -> float:
    """`python -m promoflow pipeline GROUP` as a user runs it; its wall time."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "promoflow", "pipeline", GROUP, "--config", str(config)],
        cwd=config.parent,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PROMOFLOW_USER": "bench", "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=3600,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the pipeline failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return seconds


def stats(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "total": round(sum(values), 3),
    }


def from_records(config: Path, apps: list[str], release: str, digests: dict[str, str]) -> dict[str, Any]:
    """What the records say about the run that promoted `release`: one bundle, one succeeded promotion per app,
    every apply's requests, every verify's rollouts (10 healthy Deployments per app)."""
    from promoflow.project import Project

    db = Project.load(config).db
    runs = [
        p
        for p in db.promotions(environment=ENVIRONMENT, limit=10 * len(apps))
        if p.kind == "promotion" and db.get_release(p.release_id).label == release
    ]
    runs.sort(key=lambda p: p.id or 0)
    assert sorted(p.app for p in runs) == sorted(apps), f"{len(runs)} promotions of {release} for {len(apps)} apps"
    assert all(p.state == "succeeded" for p in runs), [
        (p.app, p.state, p.error) for p in runs if p.state != "succeeded"
    ]
    bundles = {p.bundle_id for p in runs}
    assert len(bundles) == 1 and None not in bundles, bundles
    assert len({p.flow_run_id for p in runs}) == 1, "not one flow run"
    spans: list[float] = []
    requests: list[int] = []
    changed: list[int] = []
    by_step: dict[str, list[float]] = {}
    for p in runs:
        assert p.id is not None and p.ended_at is not None
        steps = db.steps(p.id)
        for step in steps:
            assert step.outcome == "succeeded", (p.app, step.name, step.outcome, step.error)
            by_step.setdefault(step.name, []).append(step.duration_seconds or 0.0)
        (apply,) = [json.loads(s.detail) for s in steps if s.name == "apply"]
        (verify,) = [json.loads(s.detail) for s in steps if s.name == "verify"]
        assert len(apply["applied"]) == OBJECTS_PER_APP, (p.app, len(apply["applied"]))
        rollouts = verify["rollouts"]
        assert len(rollouts) == DEPLOYMENTS_PER_APP and all(r["healthy"] for r in rollouts), (p.app, rollouts)
        spans.append((p.ended_at - p.created_at).total_seconds())
        requests.append(apply["requests"])
        changed.append(len(apply["changed"]))
    first, last = runs[0], runs[-1]
    assert last.ended_at is not None
    return {
        "promotions": len(runs),
        "bundle": bundles.pop(),
        "records_span_s": round((last.ended_at - first.created_at).total_seconds(), 3),
        "per_app_promotion_s": stats(spans),
        "per_app_promotion_first_10_last_10_median_s": [
            round(statistics.median(spans[:10]), 3),
            round(statistics.median(spans[-10:]), 3),
        ],
        "in_steps_s": round(sum(sum(values) for values in by_step.values()), 3),
        "steps_s": {name: stats(values) for name, values in by_step.items()},
        "apply_requests": {"total": sum(requests), "min": min(requests), "max": max(requests)},
        "apply_changed_objects": {"total": sum(changed), "min": min(changed), "max": max(changed)},
        "verify_healthy_deployments": DEPLOYMENTS_PER_APP * len(runs),
        "pinned_image_of_first_app": f"{IMAGE.format(app=apps[0])}:{release}@{digests[apps[0]]}",
    }


def cluster_check(kubeconfig: str, apps: list[str], release: str, digests: dict[str, str]) -> dict[str, Any]:
    """Independently of the records: every app's Deployments in the cluster run the release and are rolled out."""
    from promoflow.clusters.kubernetes import KubernetesTarget

    with KubernetesTarget(kubeconfig, "sandbox") as target:
        resource = target._dynamic().resources.get(api_version="apps/v1", kind="Deployment")
        items = resource.get(namespace="default").items
    wanted = {app: f"{IMAGE.format(app=app)}:{release}@{digests[app]}" for app in apps}
    seen: dict[str, int] = {}
    for d in items:
        app = d.metadata.labels["promoflow.dev/app"]
        if app not in wanted:  # the warm-up's
            continue
        image = d.spec.template.spec.containers[0].image
        status = d.status
        rolled_out = (
            status.observedGeneration == d.metadata.generation
            and status.updatedReplicas == status.readyReplicas == status.availableReplicas == d.spec.replicas
        )
        assert image == wanted[app] and rolled_out, (d.metadata.name, image, status)
        seen[app] = seen.get(app, 0) + 1
    assert seen == {app: DEPLOYMENTS_PER_APP for app in apps}, seen
    return {"deployments": sum(seen.values()), "all_run_the_release_and_rolled_out": True}


def config_load(root: Path, apps: int = 200, rounds: int = 5) -> dict[str, Any]:
    """Loading a promotions.yaml of `apps` apps, as every flow run's process does first (bench/watch's: the demo's
    environments, each app a registry source with a semver policy): median (min-max) of `rounds`, and the located
    (ruamel.yaml) path's parse alone, which every load took before, for comparison."""
    from promoflow import config_loader, demo

    (root / "many-apps").mkdir()
    config = demo.write_config(root / "many-apps")
    text = config.read_text()
    config.write_text(
        text[: text.index("apps:\n")]
        + "apps:\n"
        + "".join(
            f"  - name: app{n:03d}\n    path: apps/app{n:03d}\n    images:\n"
            f"      - name: registry.example.com/bench/app{n:03d}\n"
            f"        source: {{registry: http://127.0.0.1:5000, repository: bench/app{n:03d}}}\n"
            "        policy: {semver: '*'}\n"
            for n in range(apps)
        )
    )

    def timed(load: Callable[[], object]) -> dict[str, float]:
        seconds = []
        for _ in range(rounds):
            started = time.perf_counter()
            load()
            seconds.append(time.perf_counter() - started)
        return stats(seconds)

    located = config_loader._Loader(config)
    return {
        "apps": apps,
        "load_s": timed(lambda: config_loader.load(config)),
        "located_path_s": timed(lambda: located._plain_top(located._parse(located._read()))),
    }


def measure(
    root: Path,
    apps: int,
    releases: int = len(RELEASES),
    warmup: bool = True,
    cluster: Callable[[Path], Any] = stand_in,
) -> dict[str, Any]:
    """The pipeline of a group of `apps` apps, once per release (the first creates, the next ones update).

    `cluster(root)`: a context manager yielding the kubeconfig (context `sandbox`) of the cluster to use.
    """
    names = app_names("app", apps)
    with cluster(root) as kubeconfig, prefect_server(root) as env:
        if warmup:  # the Prefect server's first flow run pays for its own start-up: not measured
            warm = make_project(root / "warmup", app_names("warm", 2), kubeconfig)
            publish(warm.parent, app_names("warm", 2), RELEASES[0])
            run_pipeline(warm, env)
        config = make_project(root / "project", names, kubeconfig)
        runs = []
        for release in RELEASES[:releases]:
            digests = publish(config.parent, names, release)
            load = [round(x, 2) for x in os.getloadavg()]
            print(f"pipeline {GROUP}: {apps} apps, release {release} ...", flush=True)
            seconds = run_pipeline(config, env)
            run: dict[str, Any] = {
                "release": release,
                "load_average_before": load,
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
                "wall_s": round(seconds, 3),
                "wall_per_app_s": round(seconds / apps, 3),
                "records": from_records(config, names, release, digests),
                "cluster": cluster_check(kubeconfig, names, release, digests),
            }
            runs.append(run)
            print(json.dumps({k: v for k, v in run.items() if k != "records"}), flush=True)
    return {"apps": apps, "objects_per_app": OBJECTS_PER_APP, "runs": runs, "config_load": config_load(root)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--apps", type=int, default=5)
    parser.add_argument("--releases", type=int, default=len(RELEASES), choices=range(1, len(RELEASES) + 1))
    parser.add_argument("--cluster", choices=sorted(CLUSTERS), default="stand-in")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="promoflow-bench-pipeline-") as tmp:
        print(json.dumps(measure(Path(tmp), args.apps, args.releases, cluster=CLUSTERS[args.cluster]), indent=1))


if __name__ == "__main__":
    main()
