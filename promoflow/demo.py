"""`promoflow demo`: the whole story on one machine: git, an image source, a cluster and Prefect.

The sandbox (a bare git repo with environment branches, an OCI image-layout source) lives in
./.promoflow/demo; the records in ./.promoflow; the pipeline definition is ./promotions.yaml.
The environments deploy (target `kubernetes`, one namespace each) into a simulated cluster, promoflow's
Kubernetes API stand-in started for the run, or with `--kube-context` into a real cluster. When Debian's
`docker-registry` is installed, the images are served by a real local registry for the run instead of
being read from the OCI layout directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from rich.console import Console
from rich.text import Text

from promoflow import settings, tables
from promoflow.errors import TerminalError
from promoflow.sources import oci_layout, semver

if TYPE_CHECKING:
    from promoflow.project import Project
    from promoflow.sandbox.github import GitHubStandIn
    from promoflow.sandbox.kube import KubeStandIn

IMAGE = "registry.example.com/demo/web"
REQUESTER = "promoflow-demo"
APPROVER = "demo-approver"
SEED_VERSIONS = ("1.0.0", "1.1.0", "1.2.0-rc.1")
BASELINE = "1.1.0"
CONFIG_TEMPLATE = Path(__file__).with_name("demo_promotions.yaml")
SIMULATED = "simulated cluster (promoflow's Kubernetes API stand-in)"
SIMULATED_CONTEXT = "promoflow-demo"  # the context the template's environments name
NAMESPACE_PREFIX = "promoflow-demo-"  # each environment's namespace: promoflow-demo-dev, ...
REGISTRY_REPOSITORY = "demo/web"
ROLLOUT_SECONDS = 0.6  # simulated pods become ready one after another over this long
GITHUB_SIMULATED = "simulated GitHub (promoflow's GitHub REST stand-in)"
GITHUB_REPOSITORY = "acme/demo-environments"
GITHUB_TOKEN_ENV = "PROMOFLOW_DEMO_GITHUB_TOKEN"
GITHUB_TOKEN = "demo-token-for-the-stand-in"  # the stand-in accepts any token; this one names the bot
NEVER_READY_SECONDS = 1.5  # until the simulated controller reports ProgressDeadlineExceeded

KUSTOMIZATION = """\
# The demo's web app.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
{namespace}resources:
{resources}images:
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
NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: {name}
"""
ENVIRONMENTS = {"dev": 1, "staging": 2, "prod": 3}  # replicas


def sandbox_dir(base: Path) -> Path:
    return base.resolve() / ".promoflow" / "demo"


def build_sandbox(base: Path, *, namespaced: bool = False) -> None:
    """Create the source and the repository (once): every environment runs 1.1.0 to begin with.

    `namespaced` (the demo's): each environment's objects go into its own namespace, created by promoflow,
    so that one cluster holds all three; otherwise (the tests' project) into the context's namespace.
    """
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
            resources = ["deployment.yaml", "service.yaml"]
            namespace = ""
            if namespaced:
                resources.insert(0, "namespace.yaml")
                namespace = f"namespace: {NAMESPACE_PREFIX}{env}  # every object of this environment\n"
                (app / "namespace.yaml").write_text(NAMESPACE.format(name=f"{NAMESPACE_PREFIX}{env}"))
            (app / "kustomization.yaml").write_text(
                KUSTOMIZATION.format(
                    namespace=namespace,
                    resources="".join(f"  - {r}\n" for r in resources),
                    image=IMAGE,
                    tag=BASELINE,
                    digest=digests[BASELINE],
                )
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


def write_config(base: Path, *, cluster: bool = False) -> Path:
    """./promotions.yaml from the template, unless there is one.

    With `cluster` (what `promoflow demo` writes), the environments deploy into the demo's cluster;
    without (the tests' project), their `cluster` lines are left out: target `none`, the merge ends it.
    """
    path = base / "promotions.yaml"
    if not path.exists():
        text = CONFIG_TEMPLATE.read_text()
        if not cluster:
            text = re.sub(r"(?m)^    cluster:.*\n(?:      .*\n)*", "", text)
        path.write_text(text)
    return path


@dataclass(frozen=True)
class RealCluster:
    """`--kube-context`: a cluster of the user's kubeconfig, checked before anything is built."""

    context: str
    kubeconfig: Path | None  # None: $KUBECONFIG or ~/.kube/config, as kubectl reads it

    @property
    def where(self) -> str:
        return str(self.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config")


def real_cluster(context: str, kubeconfig: Path | None) -> RealCluster:
    """The context, if the kubeconfig has it; else a TerminalError naming the contexts it does have."""
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    if kubeconfig is not None:
        kubeconfig = kubeconfig.expanduser().resolve()
        if not kubeconfig.is_file():
            raise TerminalError(f"--kubeconfig {kubeconfig}: no such file: pass the kubeconfig holding {context!r}")
    cluster = RealCluster(context, kubeconfig)
    try:
        contexts, _ = config.list_kube_config_contexts(config_file=str(kubeconfig) if kubeconfig else None)
    except (ConfigException, OSError) as error:
        raise TerminalError(f"cannot read the kubeconfig {cluster.where} ({error}): pass --kubeconfig FILE") from None
    names = [str(c["name"]) for c in contexts]
    if context not in names:
        raise TerminalError(
            f"the kubeconfig {cluster.where} has no context {context!r} (it has: {', '.join(names) or 'none'}): "
            "pass one of those to --kube-context, or the kubeconfig that has it with --kubeconfig FILE"
        )
    return cluster


def registry_wanted(choice: bool | None) -> bool:
    """--registry / --no-registry, or by default: whether Debian's `docker-registry` is installed."""
    installed = shutil.which("docker-registry") is not None
    if choice and not installed:
        raise TerminalError(
            "--registry needs Debian's `docker-registry` (apt-get install docker-registry): install it, "
            "or run without --registry to read the images from the OCI layout directory"
        )
    return installed if choice is None else choice


def run(
    base: Path,
    out: Console,
    *,
    yes: bool,
    reset: bool,
    keep_server: bool,
    kube_context: str | None = None,
    kubeconfig: Path | None = None,
    registry: bool | None = None,
    forge: str = "local",
) -> None:
    # Bad options fail before anything is built or started.
    real = real_cluster(kube_context, kubeconfig) if kube_context else None
    if kubeconfig is not None and real is None:
        raise TerminalError("--kubeconfig names the file holding --kube-context: pass --kube-context CONTEXT too")
    use_registry = registry_wanted(registry)
    if not (shutil.which("kubectl") or shutil.which("kustomize")):
        raise TerminalError("the demo's manifests are a kustomization: install kubectl (or kustomize) to render them")
    if reset:
        shutil.rmtree(base / ".promoflow", ignore_errors=True)
    config_path = write_config(base, cluster=True)
    build_sandbox(base, namespaced=True)
    if not _git_show(base, "env/dev", "apps/web/namespace.yaml"):
        raise TerminalError(
            f"{sandbox_dir(base)} was built by an older promoflow demo: run `promoflow demo --reset` to rebuild it"
        )
    # On a real cluster the demo image cannot be pulled (it lives only in the demo's source): run 0 pods.
    _set_replicas(base, dict.fromkeys(ENVIRONMENTS, 0) if real else ENVIRONMENTS)
    tag = publish_next_version(base)
    with contextlib.ExitStack() as stack:
        kube = None
        if real is None:
            kube = stack.enter_context(_simulated_cluster(sandbox_dir(base) / "kubeconfig"))
            out.rule(f"promoflow demo: {SIMULATED}")
            out.print(
                f"Cluster: {SIMULATED} at {kube.url}, started for this run and stopped at the end. It speaks the "
                "real Kubernetes API, but no container runs: its controllers only report rollouts. "
                "`promoflow demo --kube-context CONTEXT` deploys into a real cluster (kind, minikube) instead."
            )
        else:
            out.rule(f"promoflow demo: cluster context {real.context}")
            out.print(
                f"Cluster: context {real.context!r} of {real.where}, namespaces {NAMESPACE_PREFIX}dev/staging/prod. "
                "The demo image exists only in the demo's own source, so web runs 0 replicas there: apply, prune "
                "and the rollout check work all the same."
            )
        registry_url = stack.enter_context(_local_registry(sandbox_dir(base))) if use_registry else None
        if registry_url:
            out.print(
                f"Image source: local registry {registry_url}/{REGISTRY_REPOSITORY} (Debian's docker-registry, "
                "started for this run and stopped at the end; --no-registry reads the OCI layout instead)"
            )
        github = stack.enter_context(_github_stand_in(base)) if forge == "github" else None
        if github is not None:
            out.print(
                f"Forge: {GITHUB_SIMULATED} at {github.url} (repository {GITHUB_REPOSITORY}): every promotion is a "
                "pull request, reviews are the approvals, GitHub merges it."
            )
        if real or registry_url or github:
            config_path = _run_config(base, config_path, real, registry_url, github)
            out.print(f"This run's promotions.yaml: {config_path} (./promotions.yaml, pointed at the above)")
            stack.enter_context(_state_beside(base))
        _tour(base, out, config_path, tag, kube, registry_url, github, yes=yes, keep_server=keep_server)
        if kube is not None:
            out.print(f"The {SIMULATED} stopped with the demo; `promoflow sandbox kube` serves one that stays.")
        if registry_url:
            out.print(f"The local registry at {registry_url} stopped with the demo.")
        if github is not None:
            out.print(
                f"The {GITHUB_SIMULATED} stopped with the demo; `promoflow sandbox github` serves one that stays."
            )


def _tour(
    base: Path,
    out: Console,
    config_path: Path,
    tag: str,
    kube: KubeStandIn | None,
    registry_url: str | None,
    github: GitHubStandIn | None,
    *,
    yes: bool,
    keep_server: bool,
) -> None:
    from promoflow import server
    from promoflow.project import Project

    project = Project.load(config_path)
    source = f"{registry_url}/{REGISTRY_REPOSITORY}" if registry_url else sandbox_dir(base) / "oci" / "web"
    out.print(
        f"Published {IMAGE}:{tag} to {'the local registry' if registry_url else 'the OCI layout source'} {source}"
    )
    # The Prefect server $PREFECT_API_URL names, else the local one (started here if need be).
    already_running = server.running(project.state_dir)
    if not already_running and not os.environ.get("PREFECT_API_URL"):
        out.print("Starting a local Prefect server (its UI and API; this takes a few seconds)...")
    local = server.connect(project.state_dir, launch=True)
    server.without_heartbeat()
    ours = local if local and not already_running else None
    ui = local.url if local else os.environ["PREFECT_API_URL"].removesuffix("/api")
    out.print(f"Prefect UI: {ui}")

    from flows.pipeline import pipeline
    from flows.rollback import rollback
    from promoflow import cli

    config = str(config_path)
    stop = threading.Event()
    approver = threading.Thread(target=_approvals, args=(project, out, ui, yes, stop, github), daemon=True)
    approver.start()
    try:
        pipeline("web", release=tag, requested_by=REQUESTER, config=config)
        _show_cluster(project, out)
        if kube is not None:
            _failed_rollout(base, out, project, kube, registry_url)
        out.rule("History")
        cli.history("web", env=None, limit=20, config=config, as_json=False)
        out.rule("Rollback")
        out.print("Rolling prod back to its last known good release (as `promoflow rollback web --env prod`)")
        rollback("web", "prod", reason="demo: showing a rollback", requested_by=REQUESTER, config=config)
        out.rule("Status")
        cli.status(config=config, as_json=False)
        _show_cluster(project, out)
        if github is not None:
            _show_pull_requests(github, out)
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


def _failed_rollout(base: Path, out: Console, project: Project, kube: KubeStandIn, registry_url: str | None) -> None:
    """A release whose pods never get ready: dev's verification fails and promoflow rolls dev back by itself."""
    from flows.pipeline import pipeline

    bad = publish_next_version(base)
    digest = oci_layout.resolve(sandbox_dir(base) / "oci" / "web", bad)
    if registry_url:
        _push_layout(sandbox_dir(base) / "oci" / "web", registry_url)
    kube.cluster.rollouts.behave(f"*@{digest}", "never_ready", seconds=NEVER_READY_SECONDS)
    out.rule("Automatic rollback")
    out.print(
        f"Published {IMAGE}:{bad}, whose pods never get ready in the {SIMULATED} (as a crashing image's would): "
        "its verification in dev fails and promoflow rolls dev back by itself."
    )
    try:
        pipeline("web", release=bad, requested_by=REQUESTER, config=str(project.config_path))
    except TerminalError as error:
        _say(out, f"{bad} failed in dev:", f" {error}")
    state = project.db.environment_state("web", "dev")
    release = project.db.release("web", state.current_release) if state and state.current_release else None
    current = release.label if release else "its last known good release"
    out.print(
        f"dev runs {current} again; {bad} is rejected for dev, so neither `promoflow watch` nor the pipeline "
        f"promotes it there again (`promoflow release unreject` clears that)."
    )
    _show_cluster(project, out)


def _show_cluster(project: Project, out: Console) -> None:
    """What each environment's Deployment runs, read from its cluster as `kubectl get deployment` would."""
    from promoflow.clusters.kubernetes import ObjectRef

    table = tables.table(
        "In the cluster: Deployment web", *("namespace", "image", "ready", "rollout"), whole=("namespace", "ready")
    )
    for env in project.config.environments:
        if env.cluster.target != "kubernetes":
            continue
        ref = ObjectRef("apps/v1", "Deployment", f"{NAMESPACE_PREFIX}{env.name}", "web")
        with project.cluster(env) as cluster:
            live = cluster.get(ref) or {}
        containers = live.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        image = str(containers[0]["image"]) if containers else "-"
        name, _, digest = image.partition("@")
        status = live.get("status", {})
        progressing: dict[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), {}
        )
        ready = f"{status.get('readyReplicas', 0)}/{live.get('spec', {}).get('replicas', 0)}" if live else "-"
        table.add_row(
            str(ref.namespace),
            f"{name.rpartition('/')[2]}@{digest[:14]}" if digest else name,
            ready,
            str(progressing.get("reason", "-")),
        )
    tables.show(out, table)


@contextlib.contextmanager
def _simulated_cluster(kubeconfig: Path) -> Iterator[KubeStandIn]:
    """The Kubernetes API stand-in on a free 127.0.0.1 port, in this process, and a kubeconfig for it."""
    from promoflow.sandbox.kube import KubeStandIn

    with KubeStandIn() as kube:
        kube.write_kubeconfig(kubeconfig, context=SIMULATED_CONTEXT)
        kube.cluster.rollouts.behave("*", "slow", seconds=ROLLOUT_SECONDS)  # pods get ready one by one
        yield kube


@contextlib.contextmanager
def _local_registry(sandbox: Path) -> Iterator[str]:
    """Debian's docker-registry on a free 127.0.0.1 port over the sandbox's storage, holding the layout's images."""
    import httpx

    from promoflow.server import free_port

    binary = shutil.which("docker-registry")
    assert binary is not None  # registry_wanted checked
    root = sandbox / "registry"
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yml").write_text("version: 0.1\nstorage:\n  filesystem: {}\n")  # the rest from REGISTRY_*
    port = free_port(0)
    env = {
        **os.environ,
        "REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}",
        "REGISTRY_HTTP_SECRET": "promoflow-demo",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(root / "storage"),
        "REGISTRY_LOG_LEVEL": "warn",
        "REGISTRY_LOG_ACCESSLOG_DISABLED": "true",
    }
    url = f"http://127.0.0.1:{port}"
    with (root / "registry.log").open("ab") as log:
        process = subprocess.Popen(
            [binary, "serve", str(root / "config.yml")], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                raise TerminalError(
                    f"docker-registry exited with status {process.returncode}: see {root / 'registry.log'}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/v2/", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TerminalError(f"docker-registry did not answer on {url} within 10 s: see {root / 'registry.log'}")
            time.sleep(0.05)
        _push_layout(sandbox / "oci" / "web", url)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _push_layout(layout: Path, url: str) -> None:
    """Push the layout's tags the registry does not have yet, over plain HTTP, as `skopeo copy` would."""
    import httpx

    with httpx.Client(base_url=f"{url}/v2/{REGISTRY_REPOSITORY}", timeout=10) as http:
        listed = http.get("/tags/list")
        have = set(listed.json().get("tags") or []) if listed.status_code == 200 else set()
        for tag, digest in oci_layout.list_tags(layout).items():
            if tag in have:
                continue
            manifest = _blob(layout, digest)
            for descriptor in [json.loads(manifest)["config"], *json.loads(manifest)["layers"]]:
                if http.head(f"/blobs/{descriptor['digest']}").status_code == 200:
                    continue
                started = http.post("/blobs/uploads/")
                started.raise_for_status()
                location = started.headers["Location"]
                separator = "&" if "?" in location else "?"
                http.put(
                    f"{location}{separator}digest={descriptor['digest']}",
                    content=_blob(layout, descriptor["digest"]),
                    headers={"Content-Type": "application/octet-stream"},
                ).raise_for_status()
            http.put(
                f"/manifests/{tag}", content=manifest, headers={"Content-Type": oci_layout.MANIFEST_MEDIA_TYPE}
            ).raise_for_status()


def _blob(layout: Path, digest: str) -> bytes:
    algorithm, _, hexdigest = digest.partition(":")
    return (layout / "blobs" / algorithm / hexdigest).read_bytes()


def _run_config(
    base: Path,
    config_path: Path,
    real: RealCluster | None,
    registry_url: str | None,
    github: GitHubStandIn | None = None,
) -> Path:
    """./promotions.yaml with the environments pointed at the real cluster and the demo image at the registry.

    Written into the sandbox (paths made absolute); the records stay in ./.promoflow (see `_state_beside`).
    """
    layout = (sandbox_dir(base) / "oci" / "web").resolve()
    data: dict[str, Any] = yaml.safe_load(config_path.read_text())
    repository = data["repository"]
    if "://" not in repository["url"] and not repository["url"].startswith("git@"):
        repository["url"] = str((base / repository["url"]).resolve())
    if github is not None:
        repository["forge"] = "github"
        repository["github"] = {
            "repository": GITHUB_REPOSITORY,
            "api_url": github.url,
            "token": f"env:{GITHUB_TOKEN_ENV}",
            "poll_seconds": 2,
        }
    for env in data["environments"]:
        if github is not None and "approval" in env:  # reviews count, and the UI and CLI still do
            env["approval"]["sources"] = ["forge", "ui", "cli"]
        cluster = env.get("cluster") or {}
        if real is not None:
            cluster = {"target": "kubernetes", "context": real.context}
            if real.kubeconfig:
                cluster["kubeconfig"] = str(real.kubeconfig)
        elif cluster.get("kubeconfig"):
            cluster["kubeconfig"] = str((base / cluster["kubeconfig"]).resolve())
        env["cluster"] = cluster
    for app in data["apps"]:
        for image in app["images"]:
            source = image["source"]
            if "oci_layout" not in source:
                continue
            path = (base / source["oci_layout"]).resolve()
            if registry_url and path == layout:
                image["source"] = {"registry": registry_url, "repository": REGISTRY_REPOSITORY}
            else:
                source["oci_layout"] = str(path)
    target = sandbox_dir(base) / "promotions.yaml"
    header = "# Written by `promoflow demo` for one run: ./promotions.yaml pointed at this run's cluster and source.\n"
    target.write_text(header + yaml.safe_dump(data, sort_keys=False))
    return target


@contextlib.contextmanager
def _state_beside(base: Path) -> Iterator[None]:
    """Keep the records of a run under a generated config where ./promotions.yaml keeps them."""
    state = settings.state_dir((base / "promotions.yaml").resolve())
    previous = os.environ.get(settings.HOME_ENV)
    os.environ[settings.HOME_ENV] = str(state)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(settings.HOME_ENV, None)
        else:
            os.environ[settings.HOME_ENV] = previous


def _git_show(base: Path, branch: str, path: str) -> str | None:
    done = subprocess.run(
        ["git", "--git-dir", str(sandbox_dir(base) / "repo.git"), "show", f"{branch}:{path}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout if done.returncode == 0 else None


def _set_replicas(base: Path, replicas: dict[str, int]) -> None:
    """Make each environment branch's Deployment ask for `replicas[env]` pods (a commit where it differs)."""
    stale = {
        env: count
        for env, count in replicas.items()
        if f"replicas: {count}  #" not in (_git_show(base, f"env/{env}", "apps/web/deployment.yaml") or "")
    }
    if not stale:
        return
    repo = sandbox_dir(base) / "repo.git"
    with tempfile.TemporaryDirectory() as work:
        tree = Path(work)
        _git("clone", "--quiet", str(repo), str(tree))
        for env, count in stale.items():
            _git("-C", str(tree), "checkout", "--quiet", f"env/{env}")
            deployment = tree / "apps" / "web" / "deployment.yaml"
            deployment.write_text(re.sub(r"replicas: \d+  #", f"replicas: {count}  #", deployment.read_text()))
            _commit(tree, f"Run {count} replicas of web in {env}")
            _git("-C", str(tree), "push", "--quiet", "origin", f"env/{env}")


def _flush_to_prefect() -> None:
    """Send the buffered logs and events now: once the server is gone, exit would retry them for a minute."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=5)


def _approvals(
    project: Project, out: Console, ui: str, yes: bool, stop: threading.Event, github: GitHubStandIn | None
) -> None:
    """Announce each promotion that waits for approval; with --yes, approve it as the CLI would (or, with
    the GitHub forge, as a reviewer of its pull request)."""
    from promoflow import decisions

    announced: set[int] = set()
    while not stop.wait(0.3):
        for promotion in project.db.promotions(limit=10):
            if promotion.state != "awaiting_approval" or promotion.id in announced or promotion.id is None:
                continue
            announced.add(promotion.id)
            if github is not None:
                _review(project, out, github, promotion.id, yes)
            elif yes:
                _say(out, "--yes:", f" approving promotion {promotion.id} ({promotion.environment}) as {APPROVER}")
                decisions.send(project, promotion.id, APPROVER, "approve", "approved by `promoflow demo --yes`")
            else:
                _say(
                    out,
                    f"\nPromotion {promotion.id} ({promotion.app} -> {promotion.environment}) waits for approval.",
                    f"\n  In the Prefect UI: {ui}/runs/flow-run/{promotion.flow_run_id} -> Resume\n"
                    f"  Or in another terminal here: promoflow approve {promotion.id} --as YOUR_NAME\n",
                )


def _review(project: Project, out: Console, github: GitHubStandIn, promotion_id: int, yes: bool) -> None:
    """With --yes, approve the promotion's pull request as a reviewer; else say how to."""
    from promoflow.engine.context import step_output
    from promoflow.forges import Request

    request = step_output(project.db, promotion_id, "open_request", Request)
    assert request is not None and request.number is not None  # it waits for approval: its request is open
    number = request.number
    if yes:
        _say(out, "--yes:", f" {APPROVER} approves pull request #{number} on the {GITHUB_SIMULATED}")
        github.review(GITHUB_REPOSITORY, number, APPROVER, "APPROVE", body="approved by `promoflow demo --yes`")
        return
    _say(
        out,
        f"\nPull request #{number} waits for a review.",
        " Approve it as a reviewer:\n"
        f"  curl -s -X POST -H 'Authorization: token {APPROVER}' "
        f'{github.url}/repos/{GITHUB_REPOSITORY}/pulls/{number}/reviews -d \'{{"event": "APPROVE"}}\'\n'
        f"  (or click Resume on the paused run in the Prefect UI, or `promoflow approve {promotion_id} --as NAME`)\n",
    )


def _say(out: Console, bold: str, rest: str) -> None:
    """`bold` in bold, then `rest`: styled without markup, so every text is printed as it is."""
    out.print(Text.assemble((bold, "bold"), rest))


def _show_pull_requests(github: GitHubStandIn, out: Console) -> None:
    import github as pygithub

    client = pygithub.Github(base_url=github.url, auth=pygithub.Auth.Token(GITHUB_TOKEN))
    table = tables.table(
        f"Pull requests on the {GITHUB_SIMULATED}", *("pull request", "from", "into", "state"), whole=("into", "state")
    )
    for pull in client.get_repo(GITHUB_REPOSITORY).get_pulls(state="all", sort="created", direction="asc"):
        state = "merged" if pull.merged else pull.state
        table.add_row(f"#{pull.number} {pull.title}", pull.head.ref, pull.base.ref, state)
    tables.show(out, table)


@contextlib.contextmanager
def _github_stand_in(base: Path) -> Iterator[GitHubStandIn]:
    """The GitHub stand-in serving the demo repository, its token in this process's environment."""
    from promoflow.sandbox.github import GitHubStandIn

    previous = os.environ.get(GITHUB_TOKEN_ENV)
    os.environ[GITHUB_TOKEN_ENV] = GITHUB_TOKEN
    tokens = {GITHUB_TOKEN: "promoflow-bot", APPROVER: APPROVER}
    try:
        with GitHubStandIn({GITHUB_REPOSITORY: sandbox_dir(base) / "repo.git"}, tokens=tokens) as standin:
            yield standin
    finally:
        if previous is None:
            os.environ.pop(GITHUB_TOKEN_ENV, None)
        else:
            os.environ[GITHUB_TOKEN_ENV] = previous


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
