"""The `kubernetes` target end to end: render, server-side apply, rollout verification, automatic rollback.

The cluster is a real kube-apiserver (with the real controllers and a simulated kubelet) or promoflow's
stand-in; kubectl renders. Tests that inject faults or count requests run on the stand-in only.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Sandbox
from tests.kube_servers import KubeServer

pytestmark = pytest.mark.prefect
REQUESTER = {"PROMOFLOW_USER": "rita"}
stand_in_only = pytest.mark.parametrize("kube_server", ["stand-in"], indirect=True)


@dataclass
class Cluster:
    """dev's cluster: a Kubernetes API and the namespace dev's objects go to."""

    server: KubeServer
    namespace: str

    def image(self) -> str:
        deployment = self.server.find("deployments.apps", self.namespace, "web")
        assert deployment is not None
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


@pytest.fixture
def kube(sandbox: Sandbox, prefect_api: str, kube_server: KubeServer) -> Iterator[Cluster]:
    namespace = kube_server.namespace()
    kube_server.write_kubeconfig(sandbox.base / "sandbox.kubeconfig", context="sandbox", namespace=namespace)
    sandbox.edit_config(
        "    branch: env/dev\n",
        "    branch: env/dev\n    cluster: {target: kubernetes, kubeconfig: sandbox.kubeconfig, "
        "context: sandbox, rollout_timeout_seconds: 60}\n",
    )
    # a real deployment controller gives up on pods that never get ready after this long (the stand-in: `seconds`)
    _edit_environment(sandbox, "env/dev", "apps/web/deployment.yaml", "  replicas: 1", DEADLINE + "  replicas: 1")
    yield Cluster(kube_server, namespace)


DEADLINE = "  progressDeadlineSeconds: 2\n"


def test_apply_verify_and_roll_back_a_release_that_never_gets_ready(sandbox: Sandbox, kube: Cluster) -> None:
    good = sandbox.publish("1.2.0")
    promoted = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert promoted.returncode == 0, promoted.stderr
    assert kube.image() == f"registry.example.com/demo/web:1.2.0@{good}"
    service = kube.server.find("services", kube.namespace, "web")
    assert service is not None and service["metadata"]["labels"]["promoflow.dev/app"] == "web"

    (promotion,) = [p for p in sandbox.cli_json("history") if p["kind"] == "promotion"]  # type: ignore[union-attr, index]
    steps = {s["name"]: s for s in promotion["steps"]}
    ns = kube.namespace
    assert steps["apply"]["detail"]["changed"] == [f"Service {ns}/web", f"Deployment {ns}/web"]
    assert {r["kind"] for r in steps["apply"]["detail"]["applied"]} == {"Deployment", "Service"}
    assert steps["verify"]["detail"]["rollouts"] == [
        {
            "object": f"Deployment {ns}/web",
            "healthy": True,
            "message": f"Deployment {ns}/web rolled out: 1 of 1 replicas available",
        }
    ]

    bad = sandbox.publish("1.3.0")
    kube.server.behave(f"*{bad}", "never_ready", seconds=0.5)
    failed = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert failed.returncode == 1
    assert "did not roll out in dev" in failed.stderr and "exceeded its progress deadline" in failed.stderr
    assert "Traceback" not in failed.stderr

    entries = sandbox.cli_json("history", "web", "--env", "dev")
    by_release = {(p["kind"], p["release"]["label"]): p for p in entries}  # type: ignore[union-attr, index]
    assert by_release[("promotion", "1.3.0")]["state"] == "rolled_back", [
        (p["kind"], p["state"], p["error"]) for p in entries
    ]  # type: ignore[index]
    rollback = by_release[("rollback", "1.2.0")]
    assert rollback["state"] == "succeeded"
    assert rollback["rollback_of"] == by_release[("promotion", "1.3.0")]["id"]
    assert kube.image() == f"registry.example.com/demo/web:1.2.0@{good}"  # the cluster runs the good release again
    status = {s["environment"]: s for s in sandbox.cli_json("status")}  # type: ignore[union-attr]
    assert status["dev"]["current_release"]["label"] == "1.2.0"
    assert len(status["dev"]["rejected_releases"]) == 1


def _edit_environment(sandbox: Sandbox, branch: str, path: str, old: str, new: str) -> None:
    """Change one file of an environment branch as a person would: clone, edit, commit, push."""

    def edit(tree: Path) -> None:
        text = (tree / path).read_text()
        assert old in text, text
        (tree / path).write_text(text.replace(old, new))

    _change_environment(sandbox, branch, f"edit {path}", edit)


def _change_environment(sandbox: Sandbox, branch: str, message: str, change: Callable[[Path], None]) -> None:
    clone = sandbox.base / "clone"
    if not clone.exists():
        subprocess.run(["git", "clone", "-q", str(sandbox.repo), str(clone)], check=True, capture_output=True)
    git = ["git", "-C", str(clone), "-c", "user.name=ed", "-c", "user.email=ed@example.com"]
    subprocess.run([*git, "checkout", "-q", branch], check=True)
    subprocess.run([*git, "pull", "-q"], check=True)
    change(clone)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", message], check=True)
    subprocess.run([*git, "push", "-q", "origin", branch], check=True)


@stand_in_only  # refused while rendering: no cluster involved
def test_an_invalid_manifest_fails_the_promotion_before_anything_is_applied(sandbox: Sandbox, kube: Cluster) -> None:
    good = sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    before = kube.server.cluster.resource_version  # type: ignore[attr-defined]
    _edit_environment(
        sandbox, "env/dev", "apps/web/deployment.yaml", "  replicas: 1", '  surprise: true\n  replicas: "three"'
    )
    sandbox.publish("1.3.0")
    failed = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert failed.returncode == 1
    assert "web (kustomize output): object 2 (Deployment web): invalid Deployment (Kubernetes 1." in failed.stderr
    assert 'spec.replicas: must be an integer, not "three"; spec.surprise: unknown field' in failed.stderr
    assert "Traceback" not in failed.stderr
    assert kube.server.cluster.resource_version == before  # type: ignore[attr-defined]  # nothing written
    assert kube.image() == f"registry.example.com/demo/web:1.2.0@{good}"
    entries = sandbox.cli_json("history", "web", "--env", "dev")
    (failure,) = [p for p in entries if p["release"]["label"] == "1.3.0"]  # type: ignore[union-attr, index]
    assert failure["state"] == "failed" and "spec.surprise: unknown field" in failure["error"]


def test_diff_previews_a_promotion_and_a_cli_rollback_restores_the_last_good_release(
    sandbox: Sandbox, kube: Cluster
) -> None:
    good = sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    assert "No changes: the cluster matches web in dev." in sandbox.cli("diff", "web", "--env", "dev").stdout

    nxt = sandbox.publish("1.3.0")
    preview = sandbox.cli_json("diff", "web", "--env", "dev", "--release", "1.3.0")
    (change,) = preview  # type: ignore[misc]
    assert change["object"] == f"Deployment {kube.namespace}/web" and change["action"] == "update"
    assert f"-      - image: registry.example.com/demo/web:1.2.0@{good}" in change["diff"], change["diff"]
    assert f"+      - image: registry.example.com/demo/web:1.3.0@{nxt}" in change["diff"]
    assert kube.image() == f"registry.example.com/demo/web:1.2.0@{good}"  # a dry run: nothing applied

    none = sandbox.cli("diff", "web", "--env", "staging")
    assert none.returncode == 1 and "staging has cluster target none" in none.stderr

    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    assert kube.image() == f"registry.example.com/demo/web:1.3.0@{nxt}"
    rolled = sandbox.cli("rollback", "web", "--env", "dev", "--reason", "pager", env=REQUESTER)
    assert rolled.returncode == 0, rolled.stderr
    assert kube.image() == f"registry.example.com/demo/web:1.2.0@{good}"
    entries = sandbox.cli_json("history", "web", "--env", "dev")
    newest = entries[0]  # type: ignore[index]
    assert (newest["kind"], newest["release"]["label"], newest["state"]) == ("rollback", "1.2.0", "succeeded")
    verify = next(s for s in newest["steps"] if s["name"] == "verify")
    assert verify["detail"]["rollouts"][0]["healthy"] is True


@stand_in_only  # the sandbox's kubeconfig file is the one rewritten
@pytest.mark.parametrize(
    "kubeconfig",
    [
        "apiVersion: v1\nclusters: [{name: a, cluster: {server: 'https://x'\n",
        "contexts: 5\nclusters: nope\n",
        "- a\n- b\n",
    ],
    ids=["not-yaml", "wrong-shape", "a-list"],
)
def test_an_unparsable_kubeconfig_is_one_sentence_for_diff_and_apply(
    sandbox: Sandbox, kube: Cluster, kubeconfig: str
) -> None:
    sandbox.publish("1.2.0")
    (sandbox.base / "sandbox.kubeconfig").write_text(kubeconfig)
    diff = sandbox.cli("diff", "web", "--env", "dev")
    assert diff.returncode == 1 and "Traceback" not in diff.stderr, diff.stderr
    [sentence] = diff.stderr.splitlines()
    kubeconfig_file = str(sandbox.base / "sandbox.kubeconfig")
    assert (
        sentence.startswith("error: cannot load the kubeconfig (context 'sandbox'): ") and kubeconfig_file in sentence
    )
    promoted = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert promoted.returncode == 1 and "Traceback" not in promoted.stderr, promoted.stderr
    assert sentence.removeprefix("error: ") in promoted.stderr


@stand_in_only  # faults are injected there
def test_throttling_conflicts_and_server_errors_are_retried_honouring_retry_after(
    sandbox: Sandbox, kube: Cluster
) -> None:
    faults = kube.server.cluster.faults  # type: ignore[attr-defined]
    good = sandbox.publish("1.2.0")
    # dev retries 3 times with 1 s, then 2 s backoff; the API server asks for 3 s, then loses a race, then fails
    faults.throttle(retry_after=3, verb="patch", path="/deployments/web")
    faults.fail(409, verb="patch", path="/deployments/web")
    faults.fail(500, verb="get", path="/deployments/web")  # verify reads the rollout
    promoted = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert promoted.returncode == 0, promoted.stderr
    assert kube.image() == f"registry.example.com/demo/web:1.2.0@{good}"

    (promotion,) = [p for p in sandbox.db().promotions("web", "dev") if p.kind == "promotion"]
    steps = sandbox.db().steps(promotion.id)
    applies = [s for s in steps if s.name == "apply"]
    assert [s.outcome for s in applies] == ["failed", "failed", "succeeded"]
    assert "the API server is throttling requests, retry after 3 s" in applies[0].error
    assert "answered 409" in applies[1].error
    waited = (applies[1].started_at - applies[0].ended_at).total_seconds()
    assert 2.9 <= waited < 6, waited  # the server's 3 s, not the policy's 1 s
    verifies = [s for s in steps if s.name == "verify"]
    assert [s.outcome for s in verifies] == ["failed", "succeeded"]
    assert "answered 500" in verifies[0].error


def test_a_field_another_manager_took_fails_the_promotion_unless_the_cluster_says_force(
    sandbox: Sandbox, kube: Cluster, tmp_path: Path
) -> None:
    """`cluster.force: false` (the default): a promotion never overwrites what someone else changed with their own
    field manager; it fails saying so, and applies with `force: true` (catches issue 16, behaviour 5)."""
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    from kubernetes import dynamic

    with kube.server.api_client() as api:  # someone scales web by hand, with their own field manager
        dyn = dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
        edit = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": kube.namespace}}
        edit["spec"] = {"replicas": 4}
        deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
        deployments.server_side_apply(body=edit, field_manager="kubectl-edit", force_conflicts=True)

    new = sandbox.publish("1.3.0")
    refused = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert ".spec.replicas owned by kubectl-edit: re-run with force or fix the manifest" in refused.stderr
    live = kube.server.find("deployments.apps", kube.namespace, "web")
    assert live is not None and live["spec"]["replicas"] == 4
    assert kube.image().startswith("registry.example.com/demo/web:1.2.0@")  # nothing of 1.3.0 was applied

    sandbox.edit_config("rollout_timeout_seconds: 60}", "rollout_timeout_seconds: 60, force: true}")
    forced = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert forced.returncode == 0, forced.stderr
    live = kube.server.find("deployments.apps", kube.namespace, "web")
    assert live is not None and live["spec"]["replicas"] == 1
    assert kube.image() == f"registry.example.com/demo/web:1.3.0@{new}"


@stand_in_only  # it counts the requests the cluster got
def test_a_crash_between_apply_and_verify_resumes_at_verify_without_applying_again(
    sandbox: Sandbox, kube: Cluster
) -> None:
    """Killed once the apply's outcome is recorded: the re-run takes it from the records, writes nothing to the
    cluster, and verify runs once."""
    cluster = kube.server.cluster  # type: ignore[attr-defined]
    good = sandbox.publish("1.2.0")
    crashed = sandbox.cli("promote", "web", "--to", "dev", env={**REQUESTER, "PROMOFLOW_FAILPOINTS": "recorded-apply"})
    assert crashed.returncode == -9, crashed.stderr  # killed by SIGKILL right after the apply step was recorded
    assert kube.image() == f"registry.example.com/demo/web:1.2.0@{good}"
    generation = cluster.find("deployments.apps", kube.namespace, "web")["metadata"]["generation"]
    writes = {verb: cluster.requests[verb] for verb in ("create", "update", "patch", "delete")}
    assert writes["create"] + writes["patch"] >= 2  # the count sees the first apply's writes (Service, Deployment)

    rerun = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert rerun.returncode == 0, rerun.stderr
    assert {verb: cluster.requests[verb] for verb in writes} == writes  # not one write to the cluster
    assert cluster.find("deployments.apps", kube.namespace, "web")["metadata"]["generation"] == generation

    (promotion,) = [p for p in sandbox.db().promotions("web", "dev") if p.kind == "promotion"]
    assert promotion.state == "succeeded"
    steps = sandbox.db().steps(promotion.id)
    applies = [json.loads(s.detail) for s in steps if s.name == "apply" and s.outcome == "succeeded"]
    assert len(applies) == 1 and applies[0]["requests"] > 0  # the re-run took it from the records
    assert [s.outcome for s in steps if s.name == "verify"] == ["succeeded"]


# On a real cluster the old ReplicaSet's pods still serve while the bad release fails, so rolling back to them
# succeeds at once: only the stand-in can make the rollback's own rollout fail.
@stand_in_only
def test_a_rollback_that_fails_its_own_rollout_leaves_the_environment_marked_and_never_loops(
    sandbox: Sandbox, kube: Cluster
) -> None:
    good = sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    bad = sandbox.publish("1.3.0")
    for digest in (bad, good):  # from now on neither release's pods get ready: the rollback fails too
        kube.server.behave(f"*{digest}", "never_ready", seconds=0.5)
    failed = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert failed.returncode == 1
    assert "The rollback of web in dev failed" in failed.stderr and "did not roll out in dev" in failed.stderr
    assert "fix the cause and run `promoflow rollback` again" in failed.stderr
    assert "Traceback" not in failed.stderr

    entries = sandbox.cli_json("history", "web", "--env", "dev")
    newest = [(p["kind"], p["release"]["label"], p["state"]) for p in entries if p["kind"] != "baseline"]  # type: ignore[index, union-attr]
    assert newest == [
        ("rollback", "1.2.0", "failed"),
        ("promotion", "1.3.0", "failed"),
        ("promotion", "1.2.0", "succeeded"),
    ]
    status = {s["environment"]: s for s in sandbox.cli_json("status")}  # type: ignore[union-attr]
    (rejected,) = status["dev"]["rejected_releases"]
    assert rejected == entries[1]["release"]["id"]  # type: ignore[index]
    again = sandbox.cli("pipeline", "web", "--release", "1.3.0")
    assert again.returncode == 1 and "was rejected for dev" in again.stderr


def every_kind(namespace: str) -> str:
    """An app's other objects, of the kinds promoflow meets in clusters, and a CRD with a resource of it."""
    group = f"{namespace}.example.com"  # cluster-wide names: one per test
    return f"""\
apiVersion: v1
kind: ServiceAccount
metadata: {{name: web}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: web}}
rules: [{{apiGroups: [""], resources: [configmaps], verbs: [get, list, watch]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: web}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: web}}
subjects: [{{kind: ServiceAccount, name: web, namespace: {namespace}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {namespace}-web-reader}}
rules: [{{apiGroups: [{group}], resources: [widgets], verbs: [get, list]}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: web}}
spec:
  rules:
    - host: web.example.com
      http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}]}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: web}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}
  minReplicas: 1
  maxReplicas: 3
  metrics: [{{type: Resource, resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 80}}}}}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: web}}
spec: {{minAvailable: 1, selector: {{matchLabels: {{app: web}}}}}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {{name: report}}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{{name: report, image: busybox:1.36}}]
---
apiVersion: batch/v1
kind: Job
metadata: {{name: migrate}}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: migrate, image: busybox:1.36}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: web}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  ingress: [{{ports: [{{port: 8080}}]}}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: web-data}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 1Gi}}}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: widgets.{group}}}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties: {{spec: {{type: object, properties: {{size: {{type: integer}}}}}}}}
---
apiVersion: {group}/v1
kind: Widget
metadata: {{name: web}}
spec: {{size: 3}}
"""


EXTRA_KINDS = [
    ("serviceaccounts", "ServiceAccount", "web"),
    ("roles.rbac.authorization.k8s.io", "Role", "web"),
    ("rolebindings.rbac.authorization.k8s.io", "RoleBinding", "web"),
    ("ingresses.networking.k8s.io", "Ingress", "web"),
    ("horizontalpodautoscalers.autoscaling", "HorizontalPodAutoscaler", "web"),
    ("poddisruptionbudgets.policy", "PodDisruptionBudget", "web"),
    ("cronjobs.batch", "CronJob", "report"),
    ("jobs.batch", "Job", "migrate"),
    ("networkpolicies.networking.k8s.io", "NetworkPolicy", "web"),
    ("persistentvolumeclaims", "PersistentVolumeClaim", "web-data"),
]


@pytest.mark.parametrize("kube_server", ["real"], indirect=True)  # the stand-in serves fewer kinds
def test_an_app_of_every_common_kind_and_a_crd_is_promoted_verified_and_pruned(sandbox: Sandbox, kube: Cluster) -> None:
    ns = kube.namespace
    group = f"{ns}.example.com"

    def add(tree: Path) -> None:
        (tree / "apps/web/extras.yaml").write_text(every_kind(ns))
        kustomization = tree / "apps/web/kustomization.yaml"
        kustomization.write_text(kustomization.read_text().replace("resources:\n", "resources:\n  - extras.yaml\n"))

    _change_environment(sandbox, "env/dev", "web: the objects around it", add)
    sandbox.publish("1.2.0")
    promoted = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert promoted.returncode == 0, promoted.stderr
    for resource, kind, name in EXTRA_KINDS:
        live = kube.server.find(resource, ns, name)
        assert live is not None and live["metadata"]["labels"]["promoflow.dev/app"] == "web", kind
    assert kube.server.find("clusterroles.rbac.authorization.k8s.io", "", f"{ns}-web-reader") is not None
    assert kube.server.find(f"widgets.{group}", ns, "web")["spec"] == {"size": 3}  # type: ignore[index]
    (promotion,) = [p for p in sandbox.cli_json("history", "web", "--env", "dev") if p["kind"] == "promotion"]  # type: ignore[union-attr, index]
    steps = {s["name"]: s for s in promotion["steps"]}
    applied = [r["kind"] for r in steps["apply"]["detail"]["applied"]]
    assert applied[:1] == ["CustomResourceDefinition"] and len(applied) == len(EXTRA_KINDS) + 5  # + web, its Service
    assert [r["object"] for r in steps["verify"]["detail"]["rollouts"]] == [f"Deployment {ns}/web"]

    def drop(tree: Path) -> None:
        (tree / "apps/web/extras.yaml").unlink()
        kustomization = tree / "apps/web/kustomization.yaml"
        kustomization.write_text(kustomization.read_text().replace("  - extras.yaml\n", ""))

    _change_environment(sandbox, "env/dev", "web: alone again", drop)
    sandbox.publish("1.3.0")
    promoted = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert promoted.returncode == 0, promoted.stderr
    newest = sandbox.cli_json("history", "web", "--env", "dev")[0]  # type: ignore[index]
    detail = next(s for s in newest["steps"] if s["name"] == "apply")["detail"]
    pruned = detail["pruned"]
    assert len(pruned) == len(EXTRA_KINDS) + 3  # the ClusterRole, the Widget and its CRD too
    assert pruned.index(f"Widget {ns}/web") < pruned.index(f"CustomResourceDefinition widgets.{group}")
    # deleted, but their finalizers (the claim's protection, the CRD's cleanup) still run: reported, not waited for
    assert detail["terminating"] == [
        f"PersistentVolumeClaim {ns}/web-data",
        f"CustomResourceDefinition widgets.{group}",
    ]
    deadline = time.monotonic() + 60
    for resource, namespace, name in [
        *((resource, ns, name) for resource, _, name in EXTRA_KINDS),
        ("customresourcedefinitions.apiextensions.k8s.io", "", f"widgets.{group}"),
    ]:
        while kube.server.find(resource, namespace, name) is not None:
            assert time.monotonic() < deadline, f"{resource} {name} is still there"
            time.sleep(0.1)


CHART = {
    "Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.3.0\n",
    "values.yaml": "greeting: hello from helm\n",
    "templates/deployment.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: "{{ .Release.Name }}"
  labels: {app: web, chart: "{{ .Chart.Name }}-{{ .Chart.Version }}"}
spec:
  replicas: 1
  progressDeadlineSeconds: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: registry.example.com/demo/web:1.1.0
          env: [{name: GREETING, value: "{{ .Values.greeting }}"}]
""",
    "templates/configmap.yaml": """\
apiVersion: v1
kind: ConfigMap
metadata: {name: "{{ .Release.Name }}-settings"}
data: {greeting: "{{ .Values.greeting }}"}
""",
}


@pytest.mark.parametrize("kube_server", ["real"], indirect=True)
def test_a_helm_chart_is_rendered_with_helm_and_promoted(sandbox: Sandbox, kube: Cluster) -> None:
    def chart(tree: Path) -> None:
        app = tree / "apps/web"
        for old in app.iterdir():
            old.unlink()
        for name, text in CHART.items():
            (app / name).parent.mkdir(exist_ok=True)
            (app / name).write_text(text)

    _change_environment(sandbox, "env/dev", "web as a Helm chart", chart)
    good = sandbox.publish("1.2.0")
    promoted = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert promoted.returncode == 0, promoted.stderr
    assert kube.image() == f"registry.example.com/demo/web:1.2.0@{good}"  # pinned in the template, then rendered
    deployment = kube.server.find("deployments.apps", kube.namespace, "web")
    assert deployment is not None and deployment["metadata"]["labels"]["chart"] == "web-0.3.0"
    settings = kube.server.find("configmaps", kube.namespace, "web-settings")
    assert settings is not None and settings["data"] == {"greeting": "hello from helm"}
    assert "templates/deployment.yaml" in sandbox.git("show", "--stat", "env/dev")  # the promotion's change
