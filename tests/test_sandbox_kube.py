"""The Kubernetes API stand-in, used only through real clients: the official `kubernetes` package and `kubectl`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promoflow.sandbox.kube import GIT_VERSION, KubeStandIn


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    with KubeStandIn() as server:
        yield server


@pytest.fixture
def dyn(kube: KubeStandIn, tmp_path: Path) -> Iterator[Any]:
    from kubernetes import dynamic
    from kubernetes.client import ApiClient, Configuration

    api = ApiClient(Configuration(host=kube.url))
    try:  # own discovery cache: another test's server may have had this port
        yield dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    finally:
        api.close()


def deployment(name: str, image: str, replicas: int | None = 2, **labels: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": image}]}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    metadata = (
        {"name": name, "namespace": "default", "labels": labels} if labels else {"name": name, "namespace": "default"}
    )
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def configmap(name: str, **fields: Any) -> dict[str, Any]:
    labels = fields.pop("labels", None)
    metadata = {"name": name, "labels": labels} if labels else {"name": name}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, **fields}


def managers(obj: Any) -> dict[str, dict[str, Any]]:
    return {e["manager"]: e["fieldsV1"] for e in obj.to_dict()["metadata"].get("managedFields", [])}


def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.02)


# --- with the official client -------------------------------------------------------------------------


def test_discovery_version_and_openapi(kube: KubeStandIn, dyn: Any) -> None:
    assert dyn.version["kubernetes"]["gitVersion"] == GIT_VERSION  # says it is simulated
    for api_version, kind in [
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "Service"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("argoproj.io/v1alpha1", "Application"),
        ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
    ]:
        assert dyn.resources.get(api_version=api_version, kind=kind).kind == kind
    assert "status" in dyn.resources.get(api_version="apps/v1", kind="Deployment").subresources
    assert (
        "status" in dyn.resources.get(api_version="kustomize.toolkit.fluxcd.io/v1", kind="Kustomization").subresources
    )
    assert "status" not in dyn.resources.get(api_version="argoproj.io/v1alpha1", kind="Application").subresources
    assert not dyn.resources.get(api_version="v1", kind="Namespace").namespaced

    assert httpx.get(f"{kube.url}/openapi/v2").status_code == 404
    root = httpx.get(f"{kube.url}/openapi/v3").json()
    document = httpx.get(kube.url + root["paths"]["apis/apps/v1"]["serverRelativeURL"]).json()
    patch = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert {"name": "fieldValidation", "in": "query"}.items() <= patch["parameters"][2].items()
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "kind": "Deployment", "version": "v1"}


def test_server_side_apply_create_update_and_noop(dyn: Any) -> None:
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    created = deployments.server_side_apply(body=deployment("web", "shop/web:1.0"), field_manager="promoflow")
    assert created.metadata.generation == 1
    assert created.spec.replicas == 2 and created.spec.strategy.type == "RollingUpdate"  # defaulted
    assert list(managers(created)) == ["promoflow"]
    assert created.metadata.managedFields[0].operation == "Apply"

    settled = eventually(lambda: deployments.get(name="web", namespace="default").status.observedGeneration == 1)
    current = deployments.get(
        name="web", namespace="default"
    ).metadata.resourceVersion  # after the simulated controller
    again = deployments.server_side_apply(body=deployment("web", "shop/web:1.0"), field_manager="promoflow")
    assert settled and again.metadata.resourceVersion == current  # a no-op write bumps nothing

    labelled = deployments.server_side_apply(
        body=deployment("web", "shop/web:1.0", tier="a"), field_manager="promoflow"
    )
    assert int(labelled.metadata.resourceVersion) > int(current)
    assert labelled.metadata.generation == 1  # metadata is not part of generation

    updated = deployments.server_side_apply(body=deployment("web", "shop/web:2.0", tier="a"), field_manager="promoflow")
    assert updated.metadata.generation == 2
    assert updated.spec.template.spec.containers[0].image == "shop/web:2.0"


def test_apply_conflicts_force_ownership_and_field_removal(dyn: Any) -> None:
    from kubernetes.dynamic.exceptions import ConflictError

    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    deployments.server_side_apply(body=deployment("web", "shop/web:1.0", team="a", tier="b"), field_manager="promoflow")

    scaler = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"}}
    scaler["spec"] = {"replicas": 5}
    with pytest.raises(ConflictError) as conflict:
        deployments.server_side_apply(body=scaler, field_manager="autoscaler")
    status = json.loads(conflict.value.body)
    assert status["kind"] == "Status" and status["reason"] == "Conflict" and status["code"] == 409
    assert status["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "promoflow" using apps/v1',
            "field": ".spec.replicas",
        }
    ]

    forced = deployments.server_side_apply(body=scaler, field_manager="autoscaler", force_conflicts=True)
    assert forced.spec.replicas == 5
    owners = managers(forced)
    assert "f:replicas" in owners["autoscaler"]["f:spec"] and "f:replicas" not in owners["promoflow"]["f:spec"]

    # A sidecar added by another manager is merged into `containers` by name, and survives promoflow's applies.
    sidecar = {**scaler, "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy:1"}]}}}}
    deployments.server_side_apply(body=sidecar, field_manager="injector")

    # promoflow stops applying replicas (owned by the autoscaler: kept) and the tier label (its own: removed).
    body = deployment("web", "shop/web:2.0", replicas=None, team="a")
    result = deployments.server_side_apply(body=body, field_manager="promoflow")
    assert result.spec.replicas == 5
    assert result.metadata.labels.to_dict() == {"team": "a"}
    assert [(c.name, c.image) for c in result.spec.template.spec.containers] == [
        ("app", "shop/web:2.0"),
        ("proxy", "envoy:1"),
    ]
    assert 'k:{"name":"proxy"}' in managers(result)["injector"]["f:spec"]["f:template"]["f:spec"]["f:containers"]


def test_status_subresource_isolation_and_generation(kube: KubeStandIn, dyn: Any) -> None:
    kustomizations = dyn.resources.get(api_version="kustomize.toolkit.fluxcd.io/v1", kind="Kustomization")
    dyn.resources.get(api_version="v1", kind="Namespace").create(body=namespace("flux-system"))
    body = {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "shop", "namespace": "flux-system"},
        "spec": {"path": "./clusters/dev", "interval": "1m"},
        "status": {"lastAppliedRevision": "forged"},
    }
    created = kustomizations.server_side_apply(body=body, field_manager="promoflow")
    assert "status" not in created.to_dict()  # main-resource writes ignore .status

    merge = "application/merge-patch+json"
    status_write = {"spec": {"path": "./elsewhere"}, "status": {"lastAppliedRevision": "main@sha1:abc"}}
    after_status = dyn.patch(
        kustomizations.status, body=status_write, name="shop", namespace="flux-system", content_type=merge
    )
    assert after_status.status.lastAppliedRevision == "main@sha1:abc"
    assert after_status.spec.path == "./clusters/dev"  # /status writes change only .status
    assert after_status.metadata.generation == 1

    spec_write = {"spec": {"path": "./clusters/prod"}, "status": {"lastAppliedRevision": "forged"}}
    after_spec = kustomizations.patch(body=spec_write, name="shop", namespace="flux-system", content_type=merge)
    assert after_spec.spec.path == "./clusters/prod" and after_spec.status.lastAppliedRevision == "main@sha1:abc"
    assert after_spec.metadata.generation == 2

    # Argo CD Applications have no /status: their status is written through the main resource.
    dyn.resources.get(api_version="v1", kind="Namespace").create(body=namespace("argocd"))
    applications = dyn.resources.get(api_version="argoproj.io/v1alpha1", kind="Application")
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "shop", "namespace": "argocd"},
    }
    applications.server_side_apply(body={**app, "spec": {"project": "default"}}, field_manager="promoflow")
    written = applications.patch(
        body={"status": {"health": {"status": "Healthy"}}}, name="shop", namespace="argocd", content_type=merge
    )
    assert written.status.health.status == "Healthy"
    assert (
        httpx.get(f"{kube.url}/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/shop/status").status_code == 404
    )


def test_stale_resource_version_is_a_conflict(dyn: Any) -> None:
    from kubernetes.dynamic.exceptions import ConflictError

    configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")
    first = configmaps.create(body=configmap("settings", data={"a": "1"}), namespace="default")
    assert first.metadata.get("generation") is None  # core kinds have none
    body = first.to_dict()
    body["data"] = {"a": "2"}
    second = configmaps.replace(body=body, namespace="default")
    assert int(second.metadata.resourceVersion) > int(first.metadata.resourceVersion)
    unchanged = configmaps.replace(body=second.to_dict(), namespace="default")
    assert unchanged.metadata.resourceVersion == second.metadata.resourceVersion

    body["data"] = {"a": "3"}  # still carries the first resourceVersion
    with pytest.raises(ConflictError) as conflict:
        configmaps.replace(body=body, namespace="default")
    assert "the object has been modified" in json.loads(conflict.value.body)["message"]


def test_watch_resumes_filters_times_out_and_expires(kube: KubeStandIn, dyn: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")
    configmaps.create(body=configmap("a", labels={"team": "x"}), namespace="default")
    since = configmaps.get(namespace="default").metadata.resourceVersion
    configmaps.create(body=configmap("b", labels={"team": "y"}), namespace="default")
    configmaps.patch(
        body={"data": {"k": "v"}}, name="a", namespace="default", content_type="application/merge-patch+json"
    )
    configmaps.delete(name="b", namespace="default")

    def events(**options: Any) -> list[tuple[str, str]]:
        return [(e["type"], e["object"].metadata.name) for e in dyn.watch(configmaps, namespace="default", **options)]

    assert events(resource_version=since, timeout=1) == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert events(resource_version=since, timeout=1, label_selector="team=x") == [("MODIFIED", "a")]
    assert events(timeout=1) == [("ADDED", "a")]  # no resourceVersion: the current state first

    received: list[tuple[str, str]] = []

    def follow() -> None:
        for event in dyn.watch(
            configmaps, namespace="default", resource_version=since, timeout=3, field_selector="metadata.name=c"
        ):
            received.append((event["type"], event["object"].metadata.name))
            return

    follower = threading.Thread(target=follow)
    started = time.monotonic()
    follower.start()
    configmaps.create(body=configmap("c"), namespace="default")
    follower.join()
    assert received == [("ADDED", "c")] and time.monotonic() - started < 2

    started = time.monotonic()
    assert events(resource_version=configmaps.get(namespace="default").metadata.resourceVersion, timeout=1) == []
    assert 0.9 < time.monotonic() - started < 2.5  # timeoutSeconds honoured

    kube.cluster.faults.expire_watches()  # as after an etcd compaction
    with pytest.raises(ApiException) as expired:
        events(resource_version=since, timeout=1)
    assert expired.value.status == 410 and "Expired" in str(expired.value.reason)


def test_dry_run_persists_nothing(dyn: Any) -> None:
    from kubernetes.dynamic.exceptions import NotFoundError

    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    preview = deployments.server_side_apply(
        body=deployment("web", "shop/web:1.0"), field_manager="promoflow", dry_run="All"
    )
    assert preview.metadata.name == "web" and preview.spec.replicas == 2
    with pytest.raises(NotFoundError):
        deployments.get(name="web", namespace="default")

    real = deployments.server_side_apply(body=deployment("web", "shop/web:1.0"), field_manager="promoflow")
    changed = deployments.server_side_apply(
        body=deployment("web", "shop/web:9.9"), field_manager="promoflow", dry_run="All"
    )
    assert changed.spec.template.spec.containers[0].image == "shop/web:9.9"
    stored = deployments.get(name="web", namespace="default")
    assert stored.spec.template.spec.containers[0].image == "shop/web:1.0"
    assert stored.metadata.generation == real.metadata.generation == 1


def test_status_bodies_patch_types_and_selectors(kube: KubeStandIn) -> None:
    api = httpx.Client(base_url=kube.url)
    cms = "/api/v1/namespaces/default/configmaps"

    missing = api.get(f"{cms}/nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "kind": "configmaps"},
        "code": 404,
    }

    def named(name: str) -> dict[str, Any]:
        return {"name": name, "labels": {"app": "shop"}}

    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": named("c"), "data": {"a": "1"}}
    assert api.post(cms, json=body).status_code == 201
    assert api.post(cms, json=body).json()["reason"] == "AlreadyExists"
    flag = api.post(cms, json={**body, "metadata": named("d"), "data": {"enabled": True}})
    assert flag.status_code == 400 and "expected string" in flag.json()["message"]
    elsewhere = api.post("/api/v1/namespaces/nowhere/configmaps", json=body)
    assert elsewhere.status_code == 404 and elsewhere.json()["message"] == 'namespaces "nowhere" not found'

    strict = api.post(cms, params={"fieldValidation": "Strict"}, json={**body, "metadata": named("e"), "dta": {}})
    assert strict.status_code == 400 and 'unknown field "dta"' in strict.json()["message"]
    warned = api.post(cms, json={**body, "metadata": named("e"), "dta": {}})
    assert warned.status_code == 201 and "unknown field" in warned.headers["Warning"] and "dta" not in warned.json()

    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    bad["spec"] = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": [{"name": "app"}]}},
    }
    refused = api.post("/apis/apps/v1/namespaces/default/deployments", json=bad)
    assert refused.status_code == 422 and refused.json()["reason"] == "Invalid"
    assert [c["field"] for c in refused.json()["details"]["causes"]] == [
        "spec.template.metadata.labels",
        "spec.template.spec.containers[0].image",
    ]

    def patch(content_type: str, payload: Any, path: str = f"{cms}/c", **params: str) -> httpx.Response:
        return api.patch(path, content=json.dumps(payload), headers={"Content-Type": content_type}, params=params)

    merged = patch("application/merge-patch+json", {"data": {"b": "2", "a": None}})
    assert merged.json()["data"] == {"b": "2"}
    patched = patch("application/json-patch+json", [{"op": "add", "path": "/data/c", "value": "3"}])
    assert patched.json()["data"] == {"b": "2", "c": "3"}
    assert patch("application/json-patch+json", [{"op": "test", "path": "/data/c", "value": "x"}]).status_code == 422
    assert patch("application/strategic-merge-patch+json", {"data": {"d": "4"}}).json()["data"]["d"] == "4"
    assert patch("text/plain", {}).status_code == 415
    applied = patch("application/apply-patch+yaml", {**body, "metadata": named("f")}, f"{cms}/f", fieldManager="me")
    assert applied.status_code == 201
    assert (
        patch(
            "application/apply-patch+yaml", {**body, "metadata": named("f")}, f"{cms}/f", fieldManager="me"
        ).status_code
        == 200
    )
    assert patch("application/apply-patch+yaml", body, f"{cms}/f").status_code == 400  # no fieldManager

    api.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}})
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "shop"}, "spec": {}}
    apps = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications"
    assert api.post(apps, json=app).status_code == 201
    unsupported = patch("application/strategic-merge-patch+json", {"spec": {}}, f"{apps}/shop")
    assert unsupported.status_code == 415 and unsupported.json()["reason"] == "UnsupportedMediaType"

    names = lambda response: [i["metadata"]["name"] for i in response.json()["items"]]  # noqa: E731
    assert names(api.get(cms, params={"labelSelector": "app=shop"})) == ["c", "e", "f"]
    assert names(
        api.get(cms, params={"labelSelector": "app in (shop),app!=web", "fieldSelector": "metadata.name!=c"})
    ) == ["e", "f"]
    assert names(api.get("/api/v1/configmaps", params={"fieldSelector": "metadata.name=f"})) == ["f"]
    page = api.get(cms, params={"limit": "2"}).json()
    assert len(page["items"]) == 2 and page["metadata"]["remainingItemCount"] == 1
    assert names(api.get(cms, params={"limit": "2", "continue": page["metadata"]["continue"]})) == ["f"]
    deleted = api.delete(f"{cms}/c")
    assert deleted.json()["status"] == "Success" and api.get(f"{cms}/c").status_code == 404


def test_fault_injection(kube: KubeStandIn, dyn: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")
    kube.cluster.faults.fail(500, verb="list")
    with pytest.raises(ApiException) as failure:
        configmaps.get(namespace="default")
    assert failure.value.status == 500 and json.loads(failure.value.body)["reason"] == "InternalError"
    assert configmaps.get(namespace="default").items == []  # only once

    kube.cluster.faults.throttle(retry_after=2, path="/configmaps")
    throttled = httpx.get(f"{kube.url}/api/v1/namespaces/default/configmaps")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "2"
    assert throttled.json()["details"]["retryAfterSeconds"] == 2

    with httpx.stream("GET", f"{kube.url}/api/v1/namespaces?watch=true&timeoutSeconds=5") as stream:
        lines = stream.iter_lines()
        assert json.loads(next(lines))["type"] == "ADDED"
        assert kube.cluster.faults.drop_watches() == 1
        with pytest.raises(httpx.RemoteProtocolError):
            list(lines)


def test_simulated_controllers(kube: KubeStandIn, dyn: Any) -> None:
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    kube.cluster.rollouts.behave("slow-*", "slow", seconds=0.6)
    kube.cluster.rollouts.behave("*:broken", "never_ready", seconds=0.2)

    def status(name: str) -> dict[str, Any]:
        return deployments.get(name=name, namespace="default").to_dict().get("status", {})

    deployments.server_side_apply(body=deployment("web", "shop/web:1.0", replicas=3), field_manager="promoflow")
    healthy = eventually(lambda: status("web").get("availableReplicas") == 3 and status("web"))
    assert healthy["observedGeneration"] == 1 and healthy["updatedReplicas"] == healthy["readyReplicas"] == 3
    assert {c["type"]: c["reason"] for c in healthy["conditions"]} == {
        "Available": "MinimumReplicasAvailable",
        "Progressing": "NewReplicaSetAvailable",
    }

    deployments.server_side_apply(body=deployment("slow-api", "shop/api:1.0"), field_manager="promoflow")
    assert eventually(lambda: status("slow-api").get("observedGeneration") == 1)
    assert status("slow-api").get("updatedReplicas", 0) < 2  # still rolling out
    assert eventually(lambda: status("slow-api").get("availableReplicas") == 2, timeout=3)

    deployments.server_side_apply(body=deployment("web", "shop/web:broken", replicas=3), field_manager="promoflow")
    stuck = eventually(
        lambda: (
            status("web").get("observedGeneration") == 2
            and status("web")["conditions"][1]["status"] == "False"
            and status("web")
        )
    )
    assert stuck["conditions"][1]["reason"] == "ProgressDeadlineExceeded"
    assert stuck["availableReplicas"] == 3 and stuck["updatedReplicas"] == 3  # old pods still serve

    namespaces = dyn.resources.get(api_version="v1", kind="Namespace")
    for name in ("argocd", "flux-system"):
        namespaces.create(body=namespace(name))
    applications = dyn.resources.get(api_version="argoproj.io/v1alpha1", kind="Application")
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "shop", "namespace": "argocd"},
    }
    applications.server_side_apply(
        body={**app, "spec": {"source": {"targetRevision": "env/prod"}}}, field_manager="promoflow"
    )
    kube.cluster.argocd.report("shop", revision="abc123", health="Progressing", phase="Running")
    reported = applications.get(name="shop", namespace="argocd")
    assert reported.status.sync.revision == "abc123" and reported.status.health.status == "Progressing"
    assert reported.status.operationState.phase == "Running"
    assert reported.metadata.generation == 2  # no status subresource: status counts

    kustomizations = dyn.resources.get(api_version="kustomize.toolkit.fluxcd.io/v1", kind="Kustomization")
    body = {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "shop", "namespace": "flux-system"},
    }
    kustomizations.server_side_apply(body={**body, "spec": {"path": "./prod"}}, field_manager="promoflow")
    kube.cluster.flux.report("shop", revision="main@sha1:abc123")
    kube.cluster.flux.report("shop", revision="main@sha1:def456", ready=False)
    flux = kustomizations.get(name="shop", namespace="flux-system").status
    assert flux.lastAppliedRevision == "main@sha1:abc123" and flux.lastAttemptedRevision == "main@sha1:def456"
    assert (flux.conditions[0].type, flux.conditions[0].status, flux.observedGeneration) == ("Ready", "False", 1)


# --- with kubectl ---------------------------------------------------------------------------------------

MANIFESTS = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  greeting: hello
"""


def manifest(name: str, image: str) -> str:
    return f"""\
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: app
        image: {image}
        ports:
        - containerPort: 8080
"""


@pytest.fixture
def kubectl(kube: KubeStandIn, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not on the PATH (promoflow installs it into its environment's bin directory)")
    config = kube.write_kubeconfig(tmp_path / "kubeconfig")

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--cache-dir", str(tmp_path / "kube-cache"), *args],
            env={**os.environ, "KUBECONFIG": str(config)},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def test_kubectl_server_side_apply_get_and_rollout_status(
    kube: KubeStandIn, kubectl: Callable[..., Any], tmp_path: Path
) -> None:
    kube.cluster.rollouts.behave("*:broken*", "never_ready", seconds=0.5)
    kube.cluster.rollouts.behave("slow", "slow", seconds=1.0)
    files = tmp_path / "manifests.yaml"
    files.write_text(
        MANIFESTS
        + manifest("web", "shop/web:1.0")
        + manifest("api", "shop/api:broken")
        + manifest("slow", "shop/slow:1")
    )

    applied = kubectl("apply", "--server-side", "-f", str(files))
    assert applied.returncode == 0, applied.stderr
    assert "deployment.apps/web serverside-applied" in applied.stdout

    got = kubectl("get", "-n", "shop", "deployment", "web", "-o", "json", "--show-managed-fields")
    assert got.returncode == 0, got.stderr
    web = json.loads(got.stdout)
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/web:1.0"
    assert ("kubectl", "Apply") in [(e["manager"], e["operation"]) for e in web["metadata"]["managedFields"]]
    listed = json.loads(kubectl("get", "-n", "shop", "configmaps", "-o", "json").stdout)
    assert [item["data"] for item in listed["items"]] == [{"greeting": "hello"}]

    healthy = kubectl("rollout", "status", "-n", "shop", "deployment/web", "--timeout=20s")
    assert healthy.returncode == 0, healthy.stderr
    assert 'deployment "web" successfully rolled out' in healthy.stdout
    slow = kubectl("rollout", "status", "-n", "shop", "deployment/slow", "--timeout=20s")
    assert slow.returncode == 0 and "Waiting for deployment" in slow.stdout, slow.stderr
    never = kubectl("rollout", "status", "-n", "shop", "deployment/api", "--timeout=20s")
    assert never.returncode != 0
    assert 'deployment "api" exceeded its progress deadline' in never.stderr

    table = kubectl("get", "-n", "shop", "deployments")
    assert table.returncode == 0 and table.stdout.split("\n")[0].split() == [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
    ]

    changed = MANIFESTS + manifest("web", "shop/web:2.0")
    conflict = kubectl("apply", "--server-side", "--field-manager=promoflow", "-f", "-", stdin=changed)
    assert conflict.returncode != 0 and 'conflict with "kubectl"' in conflict.stderr
    preview = kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=changed)
    assert preview.returncode == 0 and "(server dry run)" in preview.stdout, preview.stderr
    assert (
        kube.cluster.find("deployments.apps", "shop", "web")["spec"]["template"]["spec"]["containers"][0]["image"]
        == "shop/web:1.0"
    )
    forced = kubectl(
        "apply", "--server-side", "--field-manager=promoflow", "--force-conflicts", "-f", "-", stdin=changed
    )
    assert forced.returncode == 0, forced.stderr
    assert kubectl("rollout", "status", "-n", "shop", "deployment/web", "--timeout=20s").returncode == 0

    strict = kubectl("apply", "--server-side", "-f", "-", stdin=MANIFESTS.replace("\ndata:", "\ndta:"))
    assert strict.returncode != 0 and 'unknown field "dta"' in strict.stderr
