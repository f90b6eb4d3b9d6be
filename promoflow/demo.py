"""`promoflow demo`: the whole story on one machine, with nothing but git, an OCI layout and Prefect.

The sandbox (a bare git repo with environment branches, an OCI image-layout source) lives in
./.promoflow/demo; the records in ./.promoflow; the pipeline definition is ./promotions.yaml.
Nothing is deployed anywhere: the environments' cluster target is `none` (simulated).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from promoflow.sources import oci_layout, semver

if TYPE_CHECKING:
    from promoflow.project import Project

IMAGE = "registry.example.com/demo/web"
REQUESTER = "promoflow-demo"
APPROVER = "demo-approver"
SEED_VERSIONS = ("1.0.0", "1.1.0", "1.2.0-rc.1")
BASELINE = "1.1.0"
CONFIG_TEMPLATE = Path(__file__).with_name("demo_promotions.yaml")

KUSTOMIZATION = """\
# The demo's web app. Simulated: nothing is deployed anywhere.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - deployment.yaml
  - service.yaml
images:
  # promoflow pins this image: newTag for people, digest for the cluster
  - name: {image}
    newTag: "{tag}"
    digest: {digest}
"""
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{app: web}}
spec:
  replicas: {replicas}  # per environment
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: {image}
          ports:
            - containerPort: 8080
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
    - port: 80
      targetPort: 8080
"""
ENVIRONMENTS = {"dev": 1, "staging": 2, "prod": 3}


def sandbox_dir(base: Path) -> Path:
    return base.resolve() / ".promoflow" / "demo"


def build_sandbox(base: Path) -> None:
    """Create the source and the repository (once): every environment runs 1.1.0 to begin with."""
    sandbox = sandbox_dir(base)
    layout = sandbox / "oci" / "web"
    repo = sandbox / "repo.git"
    if repo.exists() and (layout / "index.json").exists():
        return
    shutil.rmtree(sandbox, ignore_errors=True)
    digests = {tag: oci_layout.publish(layout, tag) for tag in SEED_VERSIONS}
    _git("init", "--quiet", "--bare", str(repo))
    with tempfile.TemporaryDirectory() as work:
        tree = Path(work)
        _git("init", "--quiet", "-b", "main", str(tree))
        (tree / "README.md").write_text("# promoflow demo environments\n\nOne branch per environment.\n")
        _commit(tree, "Describe the demo repository")
        for env, replicas in ENVIRONMENTS.items():
            _git("-C", str(tree), "checkout", "--quiet", "-b", f"env/{env}", "main")
            app = tree / "apps" / "web"
            app.mkdir(parents=True, exist_ok=True)
            (app / "kustomization.yaml").write_text(
                KUSTOMIZATION.format(image=IMAGE, tag=BASELINE, digest=digests[BASELINE])
            )
            (app / "deployment.yaml").write_text(DEPLOYMENT.format(image=IMAGE, replicas=replicas))
            (app / "service.yaml").write_text(SERVICE)
            _commit(tree, f"Run web {BASELINE} in {env}")
        _git("-C", str(tree), "push", "--quiet", str(repo), "--all")


def publish_next_version(base: Path) -> str:
    """Publish the next minor version of the demo image, as a CI system would."""
    layout = sandbox_dir(base) / "oci" / "web"
    newest = semver.select(oci_layout.list_tags(layout), "*", False) or "1.0.0"
    version = semver.parse_version(newest)
    assert version is not None
    tag = f"{version.major}.{version.minor + 1}.0"
    oci_layout.publish(layout, tag)
    return tag


def write_config(base: Path) -> Path:
    path = base / "promotions.yaml"
    if not path.exists():
        path.write_text(CONFIG_TEMPLATE.read_text())
    return path


def run(base: Path, out: Console, *, yes: bool, reset: bool, keep_server: bool) -> None:
    from promoflow import server
    from promoflow.project import Project

    if reset:
        shutil.rmtree(base / ".promoflow", ignore_errors=True)
    config_path = write_config(base)
    build_sandbox(base)
    project = Project.load(config_path)
    tag = publish_next_version(base)
    out.rule("promoflow demo (simulated cluster: target `none`)")
    out.print(f"Published {IMAGE}:{tag} to the OCI layout source {sandbox_dir(base) / 'oci' / 'web'}")
    # The Prefect server $PREFECT_API_URL names, else the local one (started here if need be).
    already_running = server.running(project.state_dir)
    local = server.connect(project.state_dir, launch=True)
    server.without_heartbeat()
    ours = local if local and not already_running else None
    ui = local.url if local else os.environ["PREFECT_API_URL"].removesuffix("/api")
    out.print(f"Prefect UI: {ui}")

    from flows.pipeline import pipeline
    from flows.rollback import rollback
    from promoflow import cli

    stop = threading.Event()
    approver = threading.Thread(target=_approvals, args=(project, out, ui, yes, stop), daemon=True)
    approver.start()
    try:
        pipeline("web", release=tag, requested_by=REQUESTER, config=str(config_path))
        out.rule("History")
        cli.history("web", env=None, limit=20, config=str(config_path), as_json=False)
        out.rule("Rollback")
        out.print("Rolling prod back to its last known good release (as `promoflow rollback web --env prod`)")
        rollback("web", "prod", reason="demo: showing a rollback", requested_by=REQUESTER, config=str(config_path))
        out.rule("Status")
        cli.status(config=str(config_path), as_json=False)
        out.print("Explore: `promoflow history --json`, `promoflow status`, the runs in the Prefect UI.")
    finally:
        stop.set()
        approver.join(timeout=5)
        if ours and not keep_server:
            _flush_to_prefect()
            server.stop(project.state_dir)
            out.print("Prefect server stopped (keep it with --keep-server).")
        elif ours:
            out.print(f"Prefect server still running at {ui}: `promoflow server stop` ends it.")


def _flush_to_prefect() -> None:
    """Send the buffered logs and events now: once the server is gone, exit would retry them for a minute."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=5)


def _approvals(project: Project, out: Console, ui: str, yes: bool, stop: threading.Event) -> None:
    """Announce each promotion that waits for approval; with --yes, approve it as the CLI would."""
    from flows.approval import send_decision

    announced: set[int] = set()
    while not stop.wait(0.3):
        for promotion in project.db.promotions(limit=10):
            if promotion.state != "awaiting_approval" or promotion.id in announced or promotion.id is None:
                continue
            announced.add(promotion.id)
            if yes:
                out.print(f"[bold]--yes:[/] approving promotion {promotion.id} ({promotion.environment}) as {APPROVER}")
                send_decision(project, promotion.id, APPROVER, "approve", "approved by `promoflow demo --yes`")
            else:
                out.print(
                    f"\n[bold]Promotion {promotion.id} ({promotion.app} -> {promotion.environment}) waits for "
                    f"approval.[/]\n  In the Prefect UI: {ui}/runs/flow-run/{promotion.flow_run_id} -> Resume\n"
                    f"  Or in another terminal here: promoflow approve {promotion.id} --as YOUR_NAME\n"
                )


def _git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True)


def _commit(tree: Path, message: str) -> None:
    _git("-C", str(tree), "add", "--all")
    _git(
        "-C",
        str(tree),
        "-c",
        "user.name=promoflow-demo",
        "-c",
        "user.email=demo@promoflow.invalid",
        "commit",
        "--quiet",
        "-m",
        message,
    )
