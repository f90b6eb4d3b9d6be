"""The kubernetes cluster target via the official client, against a real kube-apiserver and promoflow's stand-in;
kustomize via kubectl."""

from __future__ import annotations

import base64
import itertools
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from promoflow.clusters.health import rollout_status, workload_state
from promoflow.clusters.kubernetes import KubernetesTarget, ObjectRef, Throttled
from promoflow.clusters.render import render
from promoflow.errors import TerminalError, TransientError
from tests.kube_servers import KubeServer

stand_in_only = pytest.mark.parametrize("kube_server", ["stand-in"], indirect=True)  # faults are injected there


@pytest.fixture
def namespace(kube_server: KubeServer) -> str:
    """Where this test's objects go: the context's namespace."""
    return kube_server.namespace()


@pytest.fixture
def target(kube_server: KubeServer, namespace: str, tmp_path: Path) -> Iterator[KubernetesTarget]:
    kubeconfig = kube_server.write_kubeconfig(tmp_path / "kubeconfig", "sandbox", namespace=namespace)
    with KubernetesTarget(str(kubeconfig), "sandbox") as cluster:
        yield cluster


def deployment(name: str, image: str, replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 2,  # how soon a real deployment controller gives up on pods never ready
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def secret(name: str, **data: str) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}


def versions(target: KubernetesTarget, refs: list[ObjectRef]) -> dict[ObjectRef, str]:
    found = {ref: target.get(ref) for ref in refs}
    return {ref: obj["metadata"]["resourceVersion"] for ref, obj in found.items() if obj}


# --- render ------------------------------------------------------------------------------------------------


def test_render_plain_directory_multi_document_namespaces_first(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec:\n"
        "  selector: {matchLabels: {app: web}}\n"
        "  template: {metadata: {labels: {app: web}}, spec: {containers: [{name: web, image: web}]}}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-config, namespace: shop}\n"
    )
    (tmp_path / "ns.yml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n")
    (tmp_path / "README.md").write_text("not a manifest")
    assert [(o["kind"], o["metadata"]["name"]) for o in render(tmp_path)] == [
        ("Namespace", "shop"),
        ("Deployment", "web"),
        ("ConfigMap", "web-config"),
    ]


def test_render_kustomization_with_kubectl(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "deployment.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
        "spec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n"
        "    spec:\n      containers: [{name: app, image: shop/web:1.0}]\n"
    )
    (base / "kustomization.yaml").write_text("resources: [deployment.yaml]\n")
    overlay = tmp_path / "prod"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "resources: [../base]\nnamespace: prod\nnamePrefix: prod-\nimages: [{name: shop/web, newTag: '2.0'}]\n"
    )
    [web] = render(overlay)
    assert web["metadata"] == {"name": "prod-web", "namespace": "prod"}
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/web:2.0"

    (overlay / "kustomization.yaml").write_text("resources: [../missing]\n")
    with pytest.raises(TerminalError, match="kubectl kustomize failed"):
        render(overlay)


def test_render_chart_without_helm_names_helm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "Chart.yaml").write_text("apiVersion: v2\nname: web\nversion: 0.1.0\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(TerminalError, match="helm is not installed"):
        render(tmp_path)
    (tmp_path / "Chart.yaml").unlink()
    (tmp_path / "kustomization.yaml").write_text("resources: []\n")
    with pytest.raises(TerminalError, match="neither kubectl nor kustomize is installed"):
        render(tmp_path)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "kind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: Web}\n",
            "bad.yaml: object 1: apiVersion must be a non-empty string",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Deployment\n"
            "metadata: {name: Web_1}\n",
            "bad.yaml: object 2 (Deployment Web_1): metadata.name must be a DNS-1123 subdomain",
        ),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 7}\n", "object 1 (ConfigMap): metadata.name must be"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: a.b}\n", "(Service a.b): metadata.name must be a DNS-1123"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: Prod}\n", "metadata.namespace must be"),
        ("- just\n- a list\n", "bad.yaml: object 1: must be a mapping"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n  bad: indent\n", "bad.yaml:4: invalid YAML"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\n"
            "metadata: {name: a}\n",
            "bad.yaml: object 2 (ConfigMap a): duplicate of bad.yaml: object 1 (ConfigMap a)",
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: three\n  paused: 1\n"
            "  surprise: yes\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n"
            "    spec: {containers: [{image: web, ports: [{containerPort: '80'}]}]}\n"
            "  strategy: {type: Recreate, rollingUpdate: {maxSurge: [1]}}\n",
            "bad.yaml: object 1 (Deployment web): invalid Deployment (Kubernetes 1.x schema): "
            'spec.paused: must be true or false, not 1; spec.replicas: must be an integer, not "three"; '
            "spec.strategy.rollingUpdate.maxSurge: must be a string or an integer, not list; "
            "spec.surprise: unknown field; spec.template.spec.containers[0].name: required (and 1 more): "
            "fix the manifest",
        ),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: {tier: 1}}\n", "metadata.labels.tier: must be"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: http}]}\n", "ports[0].port: must"),
    ],
)
def test_render_refuses_invalid_objects_with_their_location(tmp_path: Path, text: str, error: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(TerminalError) as refused:
        render(tmp_path)
    assert error in re.sub(r"\(Kubernetes 1\.\d+ schema\)", "(Kubernetes 1.x schema)", str(refused.value))


def test_schemas_check_builtin_kinds_only_and_accept_what_kubectl_accepts(tmp_path: Path) -> None:
    (tmp_path / "objects.yaml").write_text(
        # custom resources (and look-alike kinds of other groups) are their CRD's business
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: web}\nspec: {anything: [1, 2]}\n---\n"
        "apiVersion: apps.example.com/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: many}\n---\n"
        # a date-looking annotation is a string to kubectl; an int-or-string port takes a name; nulls are allowed
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, annotations: {since: 2024-01-01}}\n"
        "spec: {selector: {app: web}, ports: [{port: 80, targetPort: http}], clusterIP: null}\n---\n"
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: reader}\n"
        "rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]\n"
    )
    assert [o["kind"] for o in render(tmp_path)] == ["Application", "Deployment", "Service", "Role"]
    (tmp_path / "objects.yaml").write_text(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: reader}\nrules: [{verbs: get}]\n"
    )
    with pytest.raises(TerminalError, match=r"\(Role reader\): invalid Role .*rules\[0\]\.verbs: must be a list"):
        render(tmp_path)


# --- apply, prune, conflicts -------------------------------------------------------------------------------


def test_apply_creates_reapply_changes_nothing_and_image_change_changes_one(
    target: KubernetesTarget, namespace: str
) -> None:
    manifests = [deployment("shop-web", "shop/web:1.0"), deployment("shop-api", "shop/api:1.0"), configmap("shop-cfg")]
    first = target.apply("shop", "dev", manifests)
    assert first.changed == first.applied and len(first.applied) == 3
    web = ObjectRef("apps/v1", "Deployment", namespace, "shop-web")
    live = target.get(web)
    assert live is not None and live["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "promoflow",
        "promoflow.dev/app": "shop",
        "promoflow.dev/environment": "dev",
    }
    assert [e["manager"] for e in live["metadata"]["managedFields"] if e["operation"] == "Apply"] == ["promoflow"]
    assert all(r.healthy for r in rollout_status(target, first.applied, timeout_seconds=60, poll_seconds=0.05))

    settled = versions(target, [ref for ref in first.applied if ref.kind == "ConfigMap"])
    specs = {ref: target.get(ref)["metadata"]["generation"] for ref in first.applied if ref.kind == "Deployment"}  # type: ignore[index]
    again = target.apply("shop", "dev", manifests, previous=first.applied)
    assert again.changed == [] and again.pruned == []
    assert versions(target, list(settled)) == settled  # no resourceVersion moved (a Deployment's moves with its status)
    assert {ref: target.get(ref)["metadata"]["generation"] for ref in specs} == specs  # type: ignore[index]
    assert again.requests == 2  # one list per kind; nothing to apply: each object holds its manifest already

    manifests[0] = deployment("shop-web", "shop/web:1.1")
    upgraded = target.apply("shop", "dev", manifests, previous=again.applied)
    assert upgraded.changed == [web]
    after = target.get(web)
    assert after is not None and after["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/web:1.1"
    assert after["metadata"]["generation"] == 2


def test_reapply_sends_what_the_cluster_does_not_hold_yet(target: KubernetesTarget, namespace: str) -> None:
    manifests = [configmap("keep-cfg", a="1", b="2"), configmap("keep-other", c="3")]
    first = target.apply("keep", "dev", manifests)
    cfg = first.applied[0]

    # a field dropped from the manifest: the live object still holds every value left, yet b must go
    dropped = target.apply("keep", "dev", [configmap("keep-cfg", a="1"), manifests[1]], previous=first.applied)
    assert dropped.changed == [cfg] and dropped.requests == 1 + 1
    assert target.get(cfg)["data"] == {"a": "1"}  # type: ignore[index]

    # drift: a value changed behind promoflow's back (by a force-apply), then the whole object deleted
    force_edit = {**configmap("keep-cfg", a="9"), "metadata": {"name": "keep-cfg", "namespace": namespace}}
    configmaps = target._dynamic().resources.get(api_version="v1", kind="ConfigMap")
    configmaps.server_side_apply(body=force_edit, field_manager="someone", force_conflicts=True)
    with pytest.raises(TerminalError, match=r"data\.a owned by someone"):  # noticed and sent: the server refuses
        target.apply("keep", "dev", [configmap("keep-cfg", a="1"), manifests[1]], previous=dropped.applied)
    again = target.apply(
        "keep", "dev", [configmap("keep-cfg", a="1"), manifests[1]], previous=dropped.applied, force=True
    )
    assert target.get(cfg)["data"] == {"a": "1"} and again.changed == [cfg]  # type: ignore[index]
    configmaps.delete(name="keep-cfg", namespace=namespace)
    restored = target.apply("keep", "dev", [configmap("keep-cfg", a="1"), manifests[1]], previous=dropped.applied)
    assert restored.changed == [cfg] and target.get(cfg) is not None


def test_prune_removes_what_was_dropped_and_only_this_apps(target: KubernetesTarget, namespace: str) -> None:
    target.apply("other", "dev", [configmap("other-cfg")])
    first = target.apply("cart", "dev", [deployment("cart", "shop/cart:1.0"), configmap("cart-cfg")])
    dry = target.apply("cart", "dev", [deployment("cart", "shop/cart:1.0")], previous=first.applied, dry_run=True)
    cfg = ObjectRef("v1", "ConfigMap", namespace, "cart-cfg")
    assert dry.pruned == [cfg] and target.get(cfg) is not None  # a dry run deletes nothing

    # the ConfigMap kind is no longer rendered at all: found through the previous inventory
    second = target.apply("cart", "dev", [deployment("cart", "shop/cart:1.0")], previous=first.applied)
    assert second.pruned == [cfg] and second.terminating == []
    assert target.get(cfg) is None
    assert target.get(ObjectRef("v1", "ConfigMap", namespace, "other-cfg")) is not None


def test_conflict_with_another_manager_is_terminal_and_force_takes_over(
    target: KubernetesTarget, kube_server: KubeServer, namespace: str, tmp_path: Path
) -> None:
    target.apply("pay", "dev", [deployment("pay", "shop/pay:1.0")])
    from kubernetes import dynamic

    with kube_server.api_client() as api:  # someone edits replicas with their own field manager
        dyn = dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
        edit = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "pay", "namespace": namespace}}
        edit["spec"] = {"replicas": 5}
        deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
        deployments.server_side_apply(body=edit, field_manager="kubectl-edit", force_conflicts=True)

    with pytest.raises(TerminalError) as conflict:
        target.apply("pay", "dev", [deployment("pay", "shop/pay:1.0", replicas=3)])
    assert ".spec.replicas owned by kubectl-edit: re-run with force or fix the manifest" in str(conflict.value)
    assert not isinstance(conflict.value, TransientError)

    forced = target.apply("pay", "dev", [deployment("pay", "shop/pay:1.0", replicas=3)], force=True)
    live = target.get(forced.applied[0])
    assert live is not None and live["spec"]["replicas"] == 3


def test_diff_shows_image_change_masks_secrets_and_lists_prunes(target: KubernetesTarget, namespace: str) -> None:
    first = target.apply(
        "blog",
        "dev",
        [deployment("blog", "shop/blog:1.0"), secret("blog-db", password="hunter2-old"), configmap("blog-extra")],
    )
    before = versions(target, [ref for ref in first.applied if ref.kind != "Deployment"])
    desired = [deployment("blog", "shop/blog:2.0"), secret("blog-db", password="hunter2-new")]
    changes = target.diff("blog", "dev", desired, previous=first.applied)
    by_name = {(d.ref.name, d.action): d.diff for d in changes}
    assert set(by_name) == {("blog", "update"), ("blog-db", "update"), ("blog-extra", "prune")}
    image = by_name["blog", "update"]
    assert "-      - image: shop/blog:1.0\n+      - image: shop/blog:2.0" in image
    masked = by_name["blog-db", "update"]
    assert "*** (before)" in masked and "*** (after)" in masked
    assert "hunter2" not in masked and base64.b64encode(b"hunter2-new").decode() not in masked
    assert versions(target, list(before)) == before  # a diff persists nothing
    live = target.get(ObjectRef("apps/v1", "Deployment", namespace, "blog"))
    assert live is not None and live["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/blog:1.0"
    assert live["metadata"]["generation"] == 1
    unchanged = target.diff("blog", "dev", [deployment("blog", "shop/blog:1.0")], previous=first.applied)
    assert [(d.ref.name, d.action) for d in unchanged] == [("blog-db", "prune"), ("blog-extra", "prune")]


def test_diff_shows_the_objects_of_a_namespace_it_would_create_as_created(target: KubernetesTarget) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "blog-preview"}}
    inside = [deployment("blog", "shop/blog:1.0"), configmap("blog-extra", mode="fast")]
    for obj in inside:
        obj["metadata"]["namespace"] = "blog-preview"
    changes = target.diff("blog", "dev", [*inside, namespace])
    assert [(str(d.ref), d.action) for d in changes] == [
        ("Namespace blog-preview", "create"),
        ("Deployment blog-preview/blog", "create"),
        ("ConfigMap blog-preview/blog-extra", "create"),
    ]
    created = {str(d.ref): d.diff for d in changes}
    assert "+      - image: shop/blog:1.0" in created["Deployment blog-preview/blog"]
    assert "+  mode: fast" in created["ConfigMap blog-preview/blog-extra"]
    assert target.get(ObjectRef("v1", "Namespace", None, "blog-preview")) is None  # a diff creates nothing


# --- rollout status --------------------------------------------------------------------------------------


def settle(target: KubernetesTarget, ref: ObjectRef, expected: str, timeout: float = 60) -> None:
    """Wait (generously) until the workload's rollout is where `expected` says it stays."""
    deadline = time.monotonic() + timeout
    while (message := workload_state(target.get(ref), ref)[1]) != expected:
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def test_rollout_status_healthy_slow_and_never_ready(
    target: KubernetesTarget, kube_server: KubeServer, namespace: str
) -> None:
    kube_server.behave("slow-*", "slow", seconds=0.6)
    kube_server.behave("*:broken", "never_ready", seconds=0.3)
    applied = target.apply(
        "roll", "dev", [deployment("fine", "shop/fine:1"), deployment("slow-one", "shop/slow:1", replicas=3)]
    ).applied
    results = rollout_status(target, applied, timeout_seconds=60, poll_seconds=0.05)
    assert [(r.ref.name, r.healthy) for r in results] == [("fine", True), ("slow-one", True)]

    target.apply("roll", "dev", [deployment("fine", "shop/fine:broken"), deployment("slow-one", "shop/slow:1", 3)])
    started = time.monotonic()
    [fine, slow] = rollout_status(target, applied, timeout_seconds=60, poll_seconds=0.05)
    assert time.monotonic() - started < 30  # failed at the deadline the controller reported, not the timeout
    assert not fine.healthy and fine.message.startswith(
        f'Deployment {namespace}/fine exceeded its progress deadline: ReplicaSet "fine-'
    )
    assert slow.healthy  # unchanged: nothing to roll out

    # rolled back: a real controller keeps reporting the deadline until the broken pod is gone; not a failure
    back = target.apply("roll", "dev", [deployment("fine", "shop/fine:1"), deployment("slow-one", "shop/slow:1", 3)])
    assert list(back.stale_deadlines) == [applied[0]]
    # the condition's own time, to tell it from a newer deadline
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", back.stale_deadlines[applied[0]])
    [fine, _] = rollout_status(
        target, applied, timeout_seconds=60, poll_seconds=0.05, stale_deadlines=back.stale_deadlines
    )
    assert fine.healthy, fine.message


def test_a_progress_deadline_from_before_the_change_is_not_this_rollouts_failure() -> None:
    ref = ObjectRef("apps/v1", "Deployment", "shop", "web")
    before = "2026-12-04T19:00:00Z"

    def web(deadline_updated: str, replicas: int) -> dict[str, Any]:
        condition = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        status: dict[str, Any] = {"observedGeneration": 3, "replicas": replicas, "updatedReplicas": 1}
        status |= {"readyReplicas": 1, "availableReplicas": 1}
        status["conditions"] = [{**condition, "lastUpdateTime": deadline_updated}]
        return {"metadata": {"generation": 3}, "spec": {"replicas": 1}, "status": status}

    assert workload_state(web(before, 2), ref, stale_deadline=before) == (
        "progressing",
        "Deployment shop/web: 1 old replicas pending termination",
    )
    assert workload_state(web(before, 1), ref, stale_deadline=before)[0] == "rolled_out"
    assert workload_state(web("2026-12-04T19:00:09Z", 2), ref, stale_deadline=before)[0] == "failed"  # a new one
    assert workload_state(web(before, 2), ref)[0] == "failed"


def workload(kind: str, name: str, image: str, replicas: int | None = None) -> dict[str, Any]:
    obj = deployment(name, image, replicas or 1)
    obj["kind"] = kind
    del obj["spec"]["progressDeadlineSeconds"]  # a Deployment's only
    if replicas is None:
        del obj["spec"]["replicas"]  # a DaemonSet runs one pod per node (both servers have one)
    if kind == "StatefulSet":
        obj["spec"]["serviceName"] = name
    return obj


def test_rollout_status_of_statefulsets_and_daemonsets(
    target: KubernetesTarget, kube_server: KubeServer, namespace: str
) -> None:
    kube_server.behave("shop/db:2", "slow", seconds=0.6)
    kube_server.behave("*:stuck", "never_ready", seconds=0.2)
    objects = [workload("StatefulSet", "db", "shop/db:1", replicas=3), workload("DaemonSet", "agent", "shop/agent:1")]
    applied = target.apply("stateful", "dev", objects).applied
    results = rollout_status(target, applied, timeout_seconds=60, poll_seconds=0.05)
    assert [(str(r.ref), r.healthy) for r in results] == [
        (f"StatefulSet {namespace}/db", True),
        (f"DaemonSet {namespace}/agent", True),
    ]
    assert results[0].message == f"StatefulSet {namespace}/db rolled out: 3 of 3 replicas available"
    db_ref, agent_ref = applied

    objects = [
        workload("StatefulSet", "db", "shop/db:2", replicas=3),
        workload("DaemonSet", "agent", "shop/agent:stuck"),
    ]
    target.apply("stateful", "dev", objects)
    [db] = rollout_status(target, [db_ref], timeout_seconds=60, poll_seconds=0.05)
    assert db.healthy, db.message  # pods of the new revision got ready one by one
    # neither kind has a progress deadline: a stuck one is reported at the timeout, with what was last seen
    settle(target, agent_ref, f"DaemonSet {namespace}/agent: 0 of 1 replicas available")
    _, agent = rollout_status(target, applied, timeout_seconds=0.5, poll_seconds=0.05)
    assert not agent.healthy
    assert agent.message == f"not rolled out within 0.5 s: DaemonSet {namespace}/agent: 0 of 1 replicas available"

    target.apply("stateful", "dev", [workload("StatefulSet", "db", "shop/db:stuck", replicas=3), objects[1]])
    # the first replaced pod never gets ready: 1 updated, the other 2 still the old revision
    settle(target, db_ref, f"StatefulSet {namespace}/db: 1 of 3 replicas updated")
    [db, _] = rollout_status(target, applied, timeout_seconds=0.5, poll_seconds=0.05)
    assert not db.healthy
    assert db.message == f"not rolled out within 0.5 s: StatefulSet {namespace}/db: 1 of 3 replicas updated"


def test_rollout_status_timeout_reports_what_was_last_seen(
    target: KubernetesTarget, kube_server: KubeServer, namespace: str
) -> None:
    kube_server.behave("*:crawl", "slow", seconds=5)
    applied = target.apply("crawl", "dev", [deployment("crawl", "shop/crawl:crawl", replicas=4)]).applied
    [result] = rollout_status(target, applied, timeout_seconds=0.3, poll_seconds=0.05)
    assert not result.healthy
    assert result.message.startswith(f"not rolled out within 0.3 s: Deployment {namespace}/crawl:")


# --- errors --------------------------------------------------------------------------------------------------


@stand_in_only
def test_server_errors_are_transient_and_refusals_terminal(target: KubernetesTarget, kube_server: KubeServer) -> None:
    faults = kube_server.cluster.faults  # type: ignore[attr-defined]
    target.apply("err", "dev", [configmap("err-cfg")])
    faults.fail(500, verb="patch", path="/configmaps/err-cfg")
    with pytest.raises(TransientError, match="500"):
        target.apply("err", "dev", [configmap("err-cfg", a="1")])

    faults.throttle(retry_after=2, verb="list", path="/configmaps")
    with pytest.raises(Throttled) as throttled:
        target.apply("err", "dev", [configmap("err-cfg", a="1")])
    assert throttled.value.retry_after == 2

    with pytest.raises(TerminalError, match=r"does not serve kind Widget in example\.com/v1"):
        target.apply("err", "dev", [{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}])
    with pytest.raises(TerminalError, match="app name 'a b' cannot be a Kubernetes label value"):
        target.apply("a b", "dev", [configmap("x")])


def test_unreachable_cluster_is_transient(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n"
        "clusters: [{name: gone, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: gone, user: {}}]\ncontexts: [{name: gone, context: {cluster: gone, user: gone}}]\n"
    )
    with KubernetesTarget(str(config)) as target, pytest.raises(TransientError, match="cannot reach the cluster"):
        target.apply("x", "dev", [configmap("x")])
    with pytest.raises(TerminalError, match="cannot load the kubeconfig"):
        KubernetesTarget(str(config), "nope").apply("x", "dev", [configmap("x")])


# --- what only a real API server does -------------------------------------------------------------------------

real_only = pytest.mark.parametrize("kube_server", ["real"], indirect=True)


@real_only
def test_a_crd_is_established_before_its_custom_resources_are_applied(target: KubernetesTarget, namespace: str) -> None:
    group = f"{namespace}.example.com"  # CRDs are cluster-wide: one group per test
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"size": {"type": "integer"}}}},
                }
            ],
        },
    }
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}, "size": 3}
    preview = target.diff("widgets", "dev", [widget, crd])  # not served yet: shown as it would be created
    assert [(d.ref.kind, d.action) for d in preview] == [("CustomResourceDefinition", "create"), ("Widget", "create")]
    assert "+size: 3" in preview[1].diff

    first = target.apply("widgets", "dev", [widget, crd])
    assert [str(ref) for ref in first.changed] == [f"CustomResourceDefinition widgets.{group}", f"Widget {namespace}/w"]
    live = target.get(ObjectRef(f"{group}/v1", "Widget", namespace, "w"))
    assert live is not None and live["size"] == 3
    assert target.apply("widgets", "dev", [widget, crd], previous=first.applied).requests == 2  # nothing resent

    gone = target.apply("widgets", "dev", [], previous=first.applied)  # the resource first, then its definition
    assert [ref.kind for ref in gone.pruned] == ["Widget", "CustomResourceDefinition"]


@real_only
def test_pruning_a_namespace_held_by_finalizers_reports_it_terminating_and_does_not_wait(
    target: KubernetesTarget, kube_server: KubeServer, namespace: str
) -> None:
    shop = f"{namespace}-shop"
    held = {**configmap("held"), "metadata": {"name": "held", "namespace": shop, "finalizers": ["example.com/hold"]}}
    first = target.apply("fin", "dev", [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": shop}}, held])
    started = time.monotonic()
    pruned = target.apply("fin", "dev", [], previous=first.applied)
    assert [str(r) for r in pruned.pruned] == [f"ConfigMap {shop}/held", f"Namespace {shop}"]
    assert pruned.terminating == pruned.pruned  # a finalizer holds the ConfigMap, and so the Namespace
    live = kube_server.find("namespaces", "", shop)
    assert live is not None and live["status"]["phase"] == "Terminating"
    again = target.apply("fin", "dev", [], previous=first.applied)  # still there: not deleted twice, no error
    assert again.terminating == pruned.pruned and again.requests == 2
    assert time.monotonic() - started < 10

    with kube_server.api_client() as api:  # the finalizer's owner finishes: everything goes
        from kubernetes import client

        core: Any = client.CoreV1Api(api)
        core.patch_namespaced_config_map("held", shop, {"metadata": {"finalizers": None}})
    settle_gone = time.monotonic() + 60
    while kube_server.find("namespaces", "", shop) is not None:
        assert time.monotonic() < settle_gone, "the namespace was not removed"
        time.sleep(0.1)


def limited_kubeconfig(kube_server: KubeServer, namespace: str, rules: list[dict[str, Any]], path: Path) -> Path:
    """A kubeconfig for a service account of `namespace` that a Role with `rules` binds there, and nothing else."""
    token = service_account_token(kube_server, namespace, rules)
    return kube_server.plane.write_kubeconfig(path, "limited", token=token, namespace=namespace)  # type: ignore[attr-defined]


def service_account_token(kube_server: KubeServer, namespace: str, rules: list[dict[str, Any]]) -> str:
    """A token of the service account `deployer` of `namespace`, which a Role with `rules` binds there (TokenRequest,
    as the kubelet asks for the token it mounts into a pod)."""
    from kubernetes import client

    with kube_server.api_client() as api:
        core: Any = client.CoreV1Api(api)
        rbac: Any = client.RbacAuthorizationV1Api(api)
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "deployer"}})
        rbac.create_namespaced_role(namespace, {"metadata": {"name": "deployer"}, "rules": rules})
        binding = {
            "metadata": {"name": "deployer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": namespace}],
        }
        rbac.create_namespaced_role_binding(namespace, binding)
        request = {"spec": {"expirationSeconds": 3600}}
        return str(core.create_namespaced_service_account_token("deployer", namespace, request).status.token)


@real_only
def test_an_identity_with_a_namespaced_role_promotes_there_and_a_missing_verb_is_named(
    kube_server: KubeServer, namespace: str, tmp_path: Path
) -> None:
    everything = ["get", "list", "create", "patch", "delete"]
    rules = [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": everything},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},  # may not patch
    ]
    kubeconfig = limited_kubeconfig(kube_server, namespace, rules, tmp_path / "limited.kubeconfig")
    with KubernetesTarget(str(kubeconfig), "limited") as limited:
        first = limited.apply("rbac", "dev", [configmap("allowed", a="1")])  # listed in its namespace only
        assert [ref.name for ref in first.changed] == ["allowed"]
        with pytest.raises(TerminalError) as refused:
            limited.apply("rbac", "dev", [configmap("allowed", a="1"), deployment("web", "shop/web:1")])
    assert str(refused.value) == (
        f"Deployment {namespace}/web: system:serviceaccount:{namespace}:deployer may not patch deployments.apps "
        f"in namespace {namespace} (context 'limited'): grant it that verb in a Role or ClusterRole bound to it, "
        "or use a context that has it"
    )


@real_only
def test_with_no_kubeconfig_promoflow_acts_as_its_pods_service_account(
    kube_server: KubeServer, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = ["get", "list", "create", "patch", "delete"]
    token = service_account_token(
        kube_server, namespace, [{"apiGroups": [""], "resources": ["configmaps"], "verbs": everything}]
    )
    mount = tmp_path / "serviceaccount"  # what the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount
    mount.mkdir()
    (mount / "token").write_text(token)
    (mount / "ca.crt").write_bytes(kube_server.plane.ca_file.read_bytes())  # type: ignore[attr-defined]
    (mount / "namespace").write_text(namespace)
    api = urlsplit(kube_server.url)
    in_a_pod(monkeypatch, tmp_path, api.hostname, api.port)

    with KubernetesTarget(service_account=mount) as pod:
        assert pod.in_cluster and pod.where == "the pod's ServiceAccount"
        first = pod.apply("incluster", "dev", [configmap("from-the-pod", a="1")])  # no namespace: the pod's
        assert [str(ref) for ref in first.changed] == [f"ConfigMap {namespace}/from-the-pod"]
        with pytest.raises(TerminalError) as refused:
            pod.apply("incluster", "dev", [configmap("from-the-pod", a="1"), deployment("web", "shop/web:1")])
    live = kube_server.find("configmaps", namespace, "from-the-pod")
    assert live is not None and live["data"] == {"a": "1"}
    assert str(refused.value) == (  # the token is the service account's: its Role allows no Deployments
        f"list Deployment: system:serviceaccount:{namespace}:deployer may not list deployments.apps in namespace "
        f"{namespace} (the pod's ServiceAccount): grant it that verb in a Role or ClusterRole bound to it, or use a "
        "context that has it"
    )


def test_with_no_kubeconfig_outside_a_pod_the_error_says_what_to_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_a_pod(monkeypatch, tmp_path, None, None)
    ref = ObjectRef("v1", "ConfigMap", "default", "c")
    with pytest.raises(TerminalError) as outside, KubernetesTarget(service_account=tmp_path / "nothing") as target:
        target.get(ref)
    assert str(outside.value) == (
        "no cluster credentials: name a kubeconfig on the environment (`cluster: {kubeconfig: FILE, context: NAME}`), "
        "set $KUBECONFIG or create ~/.kube/config, or run promoflow in a Kubernetes pod with a ServiceAccount"
    )

    in_a_pod(monkeypatch, tmp_path, "127.0.0.1", 6443)  # a pod whose ServiceAccount token is not mounted
    with pytest.raises(TerminalError) as unmounted, KubernetesTarget(service_account=tmp_path / "nothing") as target:
        target.get(ref)
    assert str(unmounted.value) == (
        f"cannot use the pod's ServiceAccount ({tmp_path / 'nothing'}): Service token file does not exist: mount its "
        "token (automountServiceAccountToken) or name a kubeconfig on the environment"
    )


def in_a_pod(monkeypatch: pytest.MonkeyPatch, home: Path, host: str | None, port: int | None) -> None:
    """No kubeconfig anywhere (no $KUBECONFIG, an empty home); the API server as Kubernetes tells a pod, if given."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(home))
    for name, value in (("KUBERNETES_SERVICE_HOST", host), ("KUBERNETES_SERVICE_PORT", port)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(value))


@real_only
def test_admission_refusals_are_reported_verbatim(
    target: KubernetesTarget, kube_server: KubeServer, namespace: str
) -> None:
    from kubernetes import client

    with kube_server.api_client() as api:
        core: Any = client.CoreV1Api(api)
        quota = {"metadata": {"name": "few"}, "spec": {"hard": {"count/configmaps": "2"}}}  # kube-root-ca.crt is one
        core.create_namespaced_resource_quota(namespace, quota)
        deadline = time.monotonic() + 60
        while not (core.read_namespaced_resource_quota("few", namespace).status.hard or {}):
            assert time.monotonic() < deadline, "the quota controller did not count the namespace"
            time.sleep(0.1)

        with pytest.raises(TerminalError) as over_quota:
            target.apply("quota", "dev", [configmap("a"), configmap("b")])
        assert str(over_quota.value) == (
            f'ConfigMap {namespace}/b: the API server refused it (403): configmaps "b" is forbidden: exceeded quota: '
            "few, requested: count/configmaps=1, used: count/configmaps=2, limited: count/configmaps=2"
        )

        admission: Any = client.AdmissionregistrationV1Api(api)
        policy = f"{namespace}-no-latest"
        admission.create_validating_admission_policy(
            {
                "metadata": {"name": policy},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {
                        "resourceRules": [
                            {
                                "apiGroups": ["apps"],
                                "apiVersions": ["v1"],
                                "operations": ["CREATE", "UPDATE"],
                                "resources": ["deployments"],
                            }
                        ]
                    },
                    "validations": [
                        {
                            "expression": "object.spec.template.spec.containers.all(c, !c.image.endsWith(':latest'))",
                            "message": "images must not use the latest tag",
                        }
                    ],
                },
            }
        )
        admission.create_validating_admission_policy_binding(
            {
                "metadata": {"name": policy},
                "spec": {
                    "policyName": policy,
                    "validationActions": ["Deny"],
                    "matchResources": {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                    },
                },
            }
        )
        try:
            deadline = time.monotonic() + 60
            refusal = ""
            for attempt in itertools.count():  # the API server loads a new policy within a moment
                try:
                    target.apply("vap", "dev", [deployment(f"web-{attempt}", "shop/web:latest")])
                except TerminalError as refused:
                    refusal = str(refused)
                    break
                assert time.monotonic() < deadline, "the policy never refused anything"
                time.sleep(0.2)
            assert refusal == (
                f"Deployment {namespace}/web-{attempt}: the API server refused it (422): "
                f"deployments.apps \"web-{attempt}\" is forbidden: ValidatingAdmissionPolicy '{policy}' with binding "
                f"'{policy}' denied request: images must not use the latest tag"
            )
        finally:
            admission.delete_validating_admission_policy_binding(policy)
            admission.delete_validating_admission_policy(policy)
