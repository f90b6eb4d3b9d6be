"""One behavioural suite, two servers: every test runs against the stand-in and a real kube-apiserver.

The tests talk through real clients only (the official `kubernetes` client, kubectl, plain HTTP) and
assert what the real server does; a test that fails on the stand-in only is a stand-in bug. A few compare
the two servers directly (discovery, the objects they make of the same manifests). Each test works in
namespaces of its own (`kube_server.namespace()`); cluster-scoped objects carry unique names.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promoflow.sandbox.control_plane import ControlPlane
from tests.kube_servers import KubeServer, StandIn

Obj = dict[str, Any]
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


# --- fixtures and helpers -----------------------------------------------------------------------------------


@pytest.fixture
def ns(kube_server: KubeServer) -> str:
    return kube_server.namespace()


@pytest.fixture
def api(kube_server: KubeServer) -> Iterator[Any]:
    client = kube_server.api_client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def dyn(api: Any, tmp_path: Path) -> Any:
    from kubernetes import dynamic

    return dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))  # never another server's


def raw_client(api: Any) -> httpx.Client:
    """Plain HTTP with the official client's credentials: for exact bodies, headers and codes."""
    settings = api.configuration
    headers = {}
    token = (settings.api_key or {}).get("authorization")
    if token:
        headers["Authorization"] = f"{(settings.api_key_prefix or {}).get('authorization', 'Bearer')} {token}"
    return httpx.Client(base_url=settings.host, headers=headers, verify=settings.ssl_ca_cert or True, timeout=30)


@pytest.fixture
def http(api: Any) -> Iterator[httpx.Client]:
    with raw_client(api) as client:
        yield client


@pytest.fixture
def kubectl(kube_server: KubeServer, ns: str, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not on the PATH (promoflow installs it into its environment's bin directory)")
    config = kube_server.write_kubeconfig(tmp_path / "kubeconfig", namespace=ns)

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


def eventually(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def unique(prefix: str) -> str:
    """A name for a cluster-scoped object: tests on the shared real server must not meet."""
    return f"{prefix}-{secrets.token_hex(4)}"


def deployment(name: str, image: str, replicas: int | None = 2, namespace: str = "", **labels: str) -> Obj:
    spec: Obj = {
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": image}]}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    metadata: Obj = {"name": name, **({"namespace": namespace} if namespace else {})}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def configmap(name: str, **fields: Any) -> Obj:
    labels = fields.pop("labels", None)
    metadata: Obj = {"name": name, **({"labels": labels} if labels else {})}
    for key in ("finalizers", "ownerReferences"):
        if key in fields:
            metadata[key] = fields.pop(key)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, **fields}


def managers(obj: Any) -> dict[str, Obj]:
    found = obj if isinstance(obj, dict) else obj.to_dict()
    return {e["manager"]: e["fieldsV1"] for e in found["metadata"].get("managedFields", [])}


def patch(http: httpx.Client, path: str, body: Any, content_type: str = MERGE, **params: str) -> httpx.Response:
    return http.patch(path, content=json.dumps(body), headers={"Content-Type": content_type}, params=params)


def kustomization(namespace: str, path: str, **extra: Any) -> Obj:
    """A Flux Kustomization valid for Flux's own CRD schema (the real server installs it)."""
    spec = {"interval": "1m", "prune": True, "sourceRef": {"kind": "GitRepository", "name": "shop"}, "path": path}
    metadata = {"name": "shop", "namespace": namespace}
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": metadata,
        "spec": spec,
        **extra,
    }


def widget_crd(group: str, *, status: bool = True, scope: str = "Namespaced") -> Obj:
    """A CRD with a structural schema: a default, typed fields, and (optionally) a status subresource."""
    spec_schema = {
        "type": "object",
        "properties": {
            "size": {"type": "integer"},
            "color": {"type": "string", "default": "blue"},
            "parts": {"type": "array", "items": {"type": "string"}},
        },
    }
    version: Obj = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": spec_schema,
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            }
        },
    }
    if status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wdg"]},
            "versions": [version],
        },
    }


def established(http: httpx.Client, name: str) -> bool:
    found = http.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}").json()
    conditions = (found.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


@pytest.fixture
def widgets(http: httpx.Client) -> Iterator[str]:
    """A CRD of its own (group unique to the test), established; deleted after. Yields the group."""
    group = f"{secrets.token_hex(4)}.example.com"
    crd = widget_crd(group)
    assert http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd).status_code == 201
    eventually("the CRD is established", lambda: established(http, crd["metadata"]["name"]))
    eventually("its resources are served", lambda: http.get(f"/apis/{group}/v1").status_code == 200)
    try:
        yield group
    finally:
        http.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}")


# --- the two servers compared directly ----------------------------------------------------------------------


def _discovery(http: httpx.Client) -> dict[tuple[str, str], Obj]:
    """Every built-in resource's discovery entry (and its status, scale and finalize subresources)."""
    group_versions = ["v1"] + [
        v["groupVersion"]
        for g in http.get("/apis").json()["groups"]
        for v in g["versions"]
        if "." not in g["name"] or g["name"].endswith(".k8s.io")
    ]
    found = {}
    for gv in group_versions:
        path = f"/apis/{gv}" if "/" in gv else f"/api/{gv}"
        resources = http.get(path).json()["resources"]
        subresources = {r["name"] for r in resources if "/" in r["name"]}
        for entry in resources:
            if "/" in entry["name"]:
                continue
            kept = {k: v for k, v in entry.items() if k not in ("storageVersionHash",)}
            kept["verbs"] = sorted(kept["verbs"])
            kept["subresources"] = sorted(
                s.split("/")[1]
                for s in subresources
                if s.split("/")[0] == entry["name"] and s.split("/")[1] in ("status", "scale", "finalize")
            )
            found[(gv, entry["name"])] = kept
    return found


def test_discovery_lists_what_the_real_server_serves(real_kube: ControlPlane) -> None:
    with StandIn() as stand_in, raw_client(stand_in.api_client()) as mine, raw_client(real_kube.api_client()) as real:
        served, expected = _discovery(mine), _discovery(real)
        assert {k: v for k, v in served.items() if served.get(k) != expected.get(k)} == {
            k: v for k, v in expected.items() if served.get(k) != expected.get(k)
        }
        assert (
            mine.get("/apis/autoscaling").json()["preferredVersion"]
            == real.get("/apis/autoscaling").json()["preferredVersion"]
        )


SAMPLES = """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: sa}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: role}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: rb}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: role}
subjects: [{kind: ServiceAccount, name: sa}, {kind: User, name: jane}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ing}
spec:
  rules:
  - host: shop.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: hpa}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 3
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: pdb}
spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: cj}
spec:
  schedule: "*/5 * * * *"
  suspend: true
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: c, image: "busybox:1.36", ports: [{containerPort: 8080}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {}}], ports: [{port: 80}]}]
  egress: [{to: [{namespaceSelector: {}}]}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: pvc}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds}
spec:
  selector: {matchLabels: {app: ds}}
  template:
    metadata: {labels: {app: ds}}
    spec:
      containers:
      - name: c
        image: busybox
        livenessProbe: {httpGet: {port: 8080}}
        volumeMounts: [{name: config, mountPath: /etc/config}]
      volumes: [{name: config, configMap: {name: settings}}, {name: scratch}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: sts}
spec:
  replicas: 0
  serviceName: sts
  selector: {matchLabels: {app: sts}}
  template:
    metadata: {labels: {app: sts}}
    spec: {containers: [{name: c, image: "busybox:1.36"}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {tier: front}}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: sa
      containers:
      - name: app
        image: shop/web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
        env: [{name: MODE, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        resources: {limits: {cpu: 500m}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: hunter2}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, labels: {}}
data: {greeting: hello}
"""
# Values each server makes up: they differ between any two servers, real ones included.
VOLATILE = {"uid", "resourceVersion", "creationTimestamp", "time", "clusterIP", "nodePort"}


def _normalized(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("*" if k in VOLATILE else _normalized(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    if isinstance(value, str) and len(value) == 36 and value.count("-") == 4:
        return "<uid>"  # a Job's controller-uid labels
    if isinstance(value, str) and value.startswith("10.96."):
        return "<ip>"
    return value


@pytest.mark.parametrize("write", ["create", "apply"])
def test_the_same_manifests_make_the_same_objects(real_kube: ControlPlane, write: str) -> None:
    """Defaults, the registry's additions, managed fields and status as created: field by field, as the real server."""
    import yaml

    manifests = list(yaml.safe_load_all(SAMPLES))
    made = {}
    with StandIn() as stand_in:
        for name, server in (("stand-in", stand_in), ("real", None)):
            client = raw_client(stand_in.api_client() if server else real_kube.api_client())
            namespace = unique("same")
            client.post("/api/v1/namespaces", json={"metadata": {"name": namespace}}).raise_for_status()
            try:
                created = []
                for manifest in manifests:
                    collection = _collection(manifest, namespace)
                    if write == "create":
                        response = client.post(collection, json=manifest)
                    else:
                        target = f"{collection}/{manifest['metadata']['name']}"
                        response = patch(client, target, manifest, APPLY, fieldManager="promoflow")
                    assert response.status_code == 201, (name, response.text)
                    created.append(response.json())
                made[name] = [_normalized(obj) for obj in created]
            finally:
                client.delete(f"/api/v1/namespaces/{namespace}")
                client.close()
    differences = []
    for mine, real in zip(made["stand-in"], made["real"], strict=True):
        mine["metadata"]["namespace"] = real["metadata"]["namespace"] = "*"
        differences += [f"{real['kind']}{where}" for where in _differences(mine, real)]
    assert differences == [], "\n".join(differences)


def _differences(mine: Any, real: Any, path: str = "") -> list[str]:
    """Where two JSON values differ: `.spec.x: stand-in 1, real 2`."""
    if isinstance(mine, dict) and isinstance(real, dict):
        found = []
        for key in sorted(set(mine) | set(real), key=str):
            if key not in mine:
                found.append(f"{path}.{key}: stand-in lacks it, real {json.dumps(real[key])[:300]}")
            elif key not in real:
                found.append(f"{path}.{key}: real lacks it, stand-in {json.dumps(mine[key])[:300]}")
            else:
                found += _differences(mine[key], real[key], f"{path}.{key}")
        return found
    if isinstance(mine, list) and isinstance(real, list) and len(mine) == len(real):
        return [d for i, (m, r) in enumerate(zip(mine, real, strict=True)) for d in _differences(m, r, f"{path}[{i}]")]
    return [] if mine == real else [f"{path}: stand-in {json.dumps(mine)[:300]}, real {json.dumps(real)[:300]}"]


# --- discovery and OpenAPI, through their clients ----------------------------------------------------------


def test_discovery_and_version(kube_server: KubeServer, dyn: Any) -> None:
    version = dyn.version["kubernetes"]
    assert (version["major"], version["minor"]) == ("1", "37")
    if kube_server.kind == "stand-in":
        assert version["gitVersion"].endswith("-promoflow-sandbox")  # says it is simulated
    for api_version, kind in [
        ("v1", "ServiceAccount"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("networking.k8s.io/v1", "Ingress"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("autoscaling/v1", "HorizontalPodAutoscaler"),
        ("policy/v1", "PodDisruptionBudget"),
        ("batch/v1", "CronJob"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("argoproj.io/v1alpha1", "Application"),
        ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
    ]:
        assert dyn.resources.get(api_version=api_version, kind=kind).kind == kind
    assert "status" in dyn.resources.get(api_version="apps/v1", kind="Deployment").subresources
    assert "scale" in dyn.resources.get(api_version="apps/v1", kind="Deployment").subresources
    assert "status" not in dyn.resources.get(api_version="argoproj.io/v1alpha1", kind="Application").subresources
    assert not dyn.resources.get(api_version="rbac.authorization.k8s.io/v1", kind="ClusterRole").namespaced


def test_openapi_v3_explains_fields_and_declares_field_validation(
    http: httpx.Client, kubectl: Callable[..., Any]
) -> None:
    root = http.get("/openapi/v3").json()
    document = http.get(root["paths"]["apis/apps/v1"]["serverRelativeURL"]).json()
    schemas = document["components"]["schemas"]
    assert schemas["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]
    assert schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"]["type"] == "integer"
    patch_op = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "fieldValidation" in [p["name"] for p in patch_op["parameters"]]

    explained = kubectl("explain", "deployment.spec.replicas")
    assert explained.returncode == 0, explained.stderr
    assert "Number of desired pods" in explained.stdout and "<integer>" in explained.stdout
    explained = kubectl("explain", "cronjobs.spec.jobTemplate.spec.template.spec.containers.ports.protocol")
    assert explained.returncode == 0 and "Protocol for port" in explained.stdout, explained.stderr


def test_client_side_apply_and_prune(kubectl: Callable[..., Any], ns: str, tmp_path: Path) -> None:
    """`kubectl apply` (client-side) patches from the OpenAPI schemas, and `--prune` finds kinds in discovery."""
    manifests = tmp_path / "app"
    manifests.mkdir()
    (manifests / "a.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: {app: shop}}\ndata: {k: '1'}\n"
    )
    (manifests / "b.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, labels: {app: shop}}\ndata: {k: '1'}\n"
    )
    (manifests / "web.yaml").write_text(json.dumps(deployment("web", "shop/web:1", app="shop")))
    first = kubectl("apply", "-f", str(manifests))
    assert first.returncode == 0, first.stderr
    assert "openapi" not in first.stderr.lower() and "Warning: resource" not in first.stderr, first.stderr
    (manifests / "a.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: {app: shop}}\ndata: {k: '2'}\n"
    )
    (manifests / "b.yaml").unlink()
    web = json.loads((manifests / "web.yaml").read_text())
    web["spec"]["template"]["spec"]["containers"].append({"name": "proxy", "image": "envoy:1"})
    (manifests / "web.yaml").write_text(json.dumps(web))
    second = kubectl("apply", "--prune", "-l", "app=shop", "-f", str(manifests))
    assert second.returncode == 0, second.stderr
    assert "configmap/a configured" in second.stdout and "configmap/b pruned" in second.stdout, second.stdout
    assert "openapi" not in second.stderr.lower(), second.stderr
    assert "Warning: v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice" in second.stderr
    got = json.loads(kubectl("get", "deployment", "web", "-o", "json").stdout)
    assert [c["name"] for c in got["spec"]["template"]["spec"]["containers"]] == ["app", "proxy"]
    assert kubectl("get", "configmap", "b").returncode != 0


# --- decoding ------------------------------------------------------------------------------------------------


def test_create_and_replace_take_kind_and_api_version_from_the_url(
    http: httpx.Client, ns: str, api: Any, widgets: str
) -> None:
    from kubernetes import client

    created = http.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "a"}, "data": {"k": "v"}})
    assert created.status_code == 201 and (created.json()["apiVersion"], created.json()["kind"]) == ("v1", "ConfigMap")
    body = {"metadata": created.json()["metadata"], "data": {"k": "w"}}
    replaced = http.put(f"/api/v1/namespaces/{ns}/configmaps/a", json=body)
    assert replaced.status_code == 200 and replaced.json()["data"] == {"k": "w"}
    typed = client.AppsV1Api(api).create_namespaced_deployment(
        ns, deployment("web", "shop/web:1") | {"apiVersion": None, "kind": None}
    )
    assert typed.kind == "Deployment" and typed.api_version == "apps/v1"

    mismatched = http.post(
        f"/api/v1/namespaces/{ns}/configmaps", json={"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"}}
    )
    assert mismatched.status_code == 400
    custom = http.post(f"/apis/{widgets}/v1/namespaces/{ns}/widgets", json={"metadata": {"name": "w"}})
    assert custom.status_code == 400
    assert custom.json()["message"] == (
        "the object provided is unrecognized (must be of type Widget): Object 'Kind' is missing in "
        '\'{"metadata":{"name":"w"}}\' ({"metadata":{"name":"w"}})'
    )


def test_status_fields_go_always_writes(http: httpx.Client, ns: str, api: Any) -> None:
    """Zero-valued status fields without omitempty are sent, so the typed client can read the objects."""
    from kubernetes import client

    apps = client.AppsV1Api(api)
    daemon = {**deployment("agent", "shop/agent:1", replicas=None), "kind": "DaemonSet"}
    created = http.post(f"/apis/apps/v1/namespaces/{ns}/daemonsets", json=daemon).json()
    assert created["status"] == {
        "currentNumberScheduled": 0,
        "numberMisscheduled": 0,
        "desiredNumberScheduled": 0,
        "numberReady": 0,
    }
    stateful = {**deployment("db", "shop/db:1", replicas=0), "kind": "StatefulSet"}
    stateful["spec"]["serviceName"] = "db"
    created = http.post(f"/apis/apps/v1/namespaces/{ns}/statefulsets", json=stateful).json()
    assert created["status"] == {"replicas": 0, "availableReplicas": 0}
    assert apps.read_namespaced_stateful_set("db", ns).spec.replicas == 0
    assert apps.read_namespaced_daemon_set("agent", ns).spec.template.spec.containers[0].image == "shop/agent:1"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "nothing"}}
    assert http.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles", json=role).json()["rules"] is None


def test_strict_validation_refuses_unknown_nested_fields_and_wrong_types(
    http: httpx.Client, ns: str, kubectl: Callable[..., Any]
) -> None:
    deployments = f"/apis/apps/v1/namespaces/{ns}/deployments"
    typo = deployment("web", "shop/web:1")
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    typo["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "nope": 1}]
    refused = http.post(deployments, json=typo, params={"fieldValidation": "Strict"})
    assert refused.status_code == 400 and refused.json()["reason"] == "BadRequest"
    assert refused.json()["message"] == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.template.spec.containers[0].imagePullPolicyy", '
        'unknown field "spec.template.spec.containers[0].ports[0].nope"'
    )
    warned = http.post(deployments, json=typo, params={"fieldValidation": "Warn", "dryRun": "All"})
    assert warned.status_code == 201
    assert warned.headers.get_list("Warning") == [
        '299 - "unknown field \\"spec.template.spec.containers[0].imagePullPolicyy\\""',
        '299 - "unknown field \\"spec.template.spec.containers[0].ports[0].nope\\""',
    ]
    assert "imagePullPolicyy" not in json.dumps(warned.json())
    ignored = http.post(deployments, json=typo, params={"fieldValidation": "Ignore", "dryRun": "All"})
    assert ignored.status_code == 201 and "Warning" not in ignored.headers

    quoted = deployment("web", "shop/web:1", replicas=None)
    quoted["spec"]["replicas"] = "3"
    for validation in ("Strict", "Ignore"):
        wrong = http.post(deployments, json=quoted, params={"fieldValidation": validation})
        assert wrong.status_code == 400
        assert wrong.json()["message"] == (
            'Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string into Go '
            "struct field DeploymentSpec.spec.replicas of type int32"
        )
    labelled = http.post(f"/api/v1/namespaces/{ns}/configmaps", json=configmap("c", labels={"on": True}))
    assert labelled.json()["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal bool into Go struct '
        "field ObjectMeta.metadata.labels of type string"
    )

    del typo["spec"]["template"]["spec"]["containers"][0]["ports"]
    applied = kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(typo))
    assert applied.returncode != 0
    assert '.spec.template.spec.containers[name="app"].imagePullPolicyy: field not declared in schema' in applied.stderr


def test_custom_resources_are_pruned_defaulted_and_validated(http: httpx.Client, ns: str, widgets: str) -> None:
    collection = f"/apis/{widgets}/v1/namespaces/{ns}/widgets"
    widget = {
        "apiVersion": f"{widgets}/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 3, "extra": 1},
    }
    created = http.post(collection, json=widget)
    assert created.status_code == 201 and created.headers["Warning"] == '299 - "unknown field \\"spec.extra\\""'
    assert created.json()["spec"] == {"color": "blue", "size": 3}
    assert created.json()["metadata"]["generation"] == 1
    strict = http.post(collection, json={**widget, "metadata": {"name": "w2"}}, params={"fieldValidation": "Strict"})
    assert strict.json()["message"] == (
        'Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field "spec.extra"'
    )
    typed = http.post(collection, json={**widget, "metadata": {"name": "w3"}, "spec": {"size": "3"}})
    assert typed.status_code == 422
    assert typed.json()["details"]["causes"] == [
        {
            "reason": "FieldValueTypeInvalid",
            "message": 'Invalid value: "string": spec.size in body must be of type integer: "string"',
            "field": "spec.size",
        }
    ]
    listed = http.get(collection).json()
    assert listed["kind"] == "WidgetList" and [i["kind"] for i in listed["items"]] == ["Widget"]
    status = patch(http, f"{collection}/w1/status", {"spec": {"size": 9}, "status": {"phase": "Ready"}})
    assert status.json()["status"] == {"phase": "Ready"} and status.json()["spec"]["size"] == 3
    assert patch(http, f"{collection}/w1", {"spec": {"size": 4}}, STRATEGIC).status_code == 415
    deleted = http.delete(f"{collection}/w1")
    assert deleted.status_code == 200
    assert deleted.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": "w1", "group": widgets, "kind": "widgets", "uid": created.json()["metadata"]["uid"]},
    }


def test_deleting_a_crd_removes_its_resources(http: httpx.Client, ns: str) -> None:
    group = f"{secrets.token_hex(4)}.example.com"
    crd = widget_crd(group, status=False)
    name = crd["metadata"]["name"]
    http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd).raise_for_status()
    eventually("the CRD is established", lambda: established(http, name))
    found = http.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}").json()
    assert found["status"]["acceptedNames"]["listKind"] == "WidgetList"
    assert [c["reason"] for c in found["status"]["conditions"]] == ["NoConflicts", "InitialNamesAccepted"]
    collection = f"/apis/{group}/v1/namespaces/{ns}/widgets"
    eventually(
        "served",
        lambda: (
            http.post(
                collection, json={"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}}
            ).status_code
            == 201
        ),
    )
    deleting = http.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
    assert deleting.status_code == 200 and deleting.json()["kind"] == "CustomResourceDefinition"
    assert "customresourcecleanup.apiextensions.k8s.io" in deleting.json()["metadata"]["finalizers"]
    eventually(
        "the CRD is gone",
        lambda: http.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}").status_code == 404,
    )
    eventually("its group is no longer served", lambda: http.get(f"/apis/{group}/v1").status_code == 404)


# --- answers -------------------------------------------------------------------------------------------------


def test_delete_answers_and_bodies_end_with_a_newline(http: httpx.Client, ns: str) -> None:
    service = {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    assert http.post(f"/api/v1/namespaces/{ns}/services", json=service).status_code == 201
    gone = http.delete(f"/api/v1/namespaces/{ns}/services/web")
    assert gone.status_code == 200 and gone.json()["kind"] == "Service"  # ReturnDeletedObject
    assert gone.content.endswith(b"}\n")
    created = http.post(f"/api/v1/namespaces/{ns}/configmaps", json=configmap("c")).json()
    status = http.delete(f"/api/v1/namespaces/{ns}/configmaps/c")
    assert status.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": "c", "kind": "configmaps", "uid": created["metadata"]["uid"]},
    }
    missing = http.get(f"/api/v1/namespaces/{ns}/configmaps/c")
    assert missing.status_code == 404 and missing.content.endswith(b"}\n")
    assert missing.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'configmaps "c" not found',
        "reason": "NotFound",
        "details": {"name": "c", "kind": "configmaps"},
        "code": 404,
    }
    assert http.get("/api/v1").content.endswith(b"}\n") and http.get(
        f"/api/v1/namespaces/{ns}/configmaps"
    ).content.endswith(b"}\n")
    account = {"metadata": {"name": "robot"}}
    assert http.post(f"/api/v1/namespaces/{ns}/serviceaccounts", json=account).status_code == 201
    assert http.delete(f"/api/v1/namespaces/{ns}/serviceaccounts/robot").json()["kind"] == "ServiceAccount"


# --- deletion ------------------------------------------------------------------------------------------------


def test_finalizers_hold_an_object_being_deleted(http: httpx.Client, ns: str) -> None:
    path = f"/api/v1/namespaces/{ns}/configmaps/held"
    http.post(
        f"/api/v1/namespaces/{ns}/configmaps", json=configmap("held", finalizers=["example.com/a"])
    ).raise_for_status()
    merged = patch(http, path, {"metadata": {"finalizers": ["example.com/b"]}}, STRATEGIC)
    assert merged.json()["metadata"]["finalizers"] == ["example.com/b", "example.com/a"]  # merged, not replaced
    assert managers(merged.json())["python-httpx"]["f:metadata"]["f:finalizers"] == {
        ".": {},
        'v:"example.com/a"': {},
        'v:"example.com/b"': {},
    }

    deleting = http.delete(path)
    assert deleting.status_code == 200
    marked = deleting.json()
    assert marked["metadata"]["deletionTimestamp"] and marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert http.get(path).json()["metadata"]["resourceVersion"] == marked["metadata"]["resourceVersion"]
    again = http.delete(path)
    assert (
        again.status_code == 200
        and again.json()["metadata"]["resourceVersion"] == marked["metadata"]["resourceVersion"]
    )

    added = patch(http, path, {"metadata": {"finalizers": ["example.com/a", "example.com/b", "example.com/c"]}})
    assert added.status_code == 422
    assert added.json()["message"] == (
        'ConfigMap "held" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object '
        'is being deleted, found new finalizers []string{"example.com/c"}'
    )
    patch(
        http, path, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"]}}, STRATEGIC
    ).raise_for_status()
    assert http.get(path).json()["metadata"]["finalizers"] == ["example.com/b"]
    last = patch(http, path, {"metadata": {"finalizers": None}})
    assert last.status_code == 200 and "finalizers" not in last.json()["metadata"]
    assert http.get(path).status_code == 404  # gone with its last finalizer


def _owned(http: httpx.Client, ns: str, owner: str, dependent: str) -> Obj:
    made = http.post(f"/api/v1/namespaces/{ns}/configmaps", json=configmap(owner)).json()
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": owner,
        "uid": made["metadata"]["uid"],
        "blockOwnerDeletion": True,
    }
    http.post(
        f"/api/v1/namespaces/{ns}/configmaps", json=configmap(dependent, ownerReferences=[reference])
    ).raise_for_status()
    return made


def test_foreground_background_and_orphan_deletion(http: httpx.Client, ns: str) -> None:
    cms = f"/api/v1/namespaces/{ns}/configmaps"
    _owned(http, ns, "fg-owner", "fg-dependent")
    deleting = http.delete(f"{cms}/fg-owner", params={"propagationPolicy": "Foreground"})
    assert deleting.status_code == 200 and deleting.json()["metadata"]["finalizers"] == ["foregroundDeletion"]
    eventually("the dependent goes first", lambda: http.get(f"{cms}/fg-dependent").status_code == 404)
    eventually("then the owner", lambda: http.get(f"{cms}/fg-owner").status_code == 404)

    _owned(http, ns, "or-owner", "or-dependent")
    orphaning = http.request("DELETE", f"{cms}/or-owner", json={"propagationPolicy": "Orphan"})
    assert orphaning.json()["metadata"]["finalizers"] == ["orphan"]
    eventually("the owner goes", lambda: http.get(f"{cms}/or-owner").status_code == 404)
    orphan = http.get(f"{cms}/or-dependent").json()
    assert "ownerReferences" not in orphan["metadata"]

    _owned(http, ns, "bg-owner", "bg-dependent")
    assert http.delete(f"{cms}/bg-owner").json()["status"] == "Success"
    eventually("the dependent is collected", lambda: http.get(f"{cms}/bg-dependent").status_code == 404)


def test_a_terminating_namespace_refuses_content_and_waits_for_finalizers(
    kube_server: KubeServer, http: httpx.Client
) -> None:
    ns = kube_server.namespace("term")
    cms = f"/api/v1/namespaces/{ns}/configmaps"
    http.post(cms, json=configmap("held", finalizers=["example.com/hold"])).raise_for_status()
    http.post(cms, json=configmap("free")).raise_for_status()
    deleting = http.delete(f"/api/v1/namespaces/{ns}")
    assert deleting.status_code == 200
    assert deleting.json()["status"] == {"phase": "Terminating"} and deleting.json()["metadata"]["deletionTimestamp"]
    refused = http.post(cms, json=configmap("late"))
    assert refused.status_code == 403
    assert refused.json()["message"] == (
        f'configmaps "late" is forbidden: unable to create new content in namespace {ns} because it is being terminated'
    )
    assert refused.json()["details"]["causes"] == [
        {
            "reason": "NamespaceTerminating",
            "message": f"namespace {ns} is being terminated",
            "field": "metadata.namespace",
        }
    ]

    def waiting() -> Obj | None:
        conditions = {
            c["type"]: c
            for c in (http.get(f"/api/v1/namespaces/{ns}").json().get("status") or {}).get("conditions") or []
        }
        remaining = conditions.get("NamespaceFinalizersRemaining", {})
        return conditions if remaining.get("status") == "True" else None

    conditions = eventually("the namespace reports the finalizer it waits for", waiting)
    assert conditions["NamespaceFinalizersRemaining"]["message"] == (
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    )
    assert (
        conditions["NamespaceContentRemaining"]["message"]
        == "Some resources are remaining: configmaps. has 1 resource instances"
    )
    assert http.get(f"{cms}/free").status_code == 404
    patch(http, f"{cms}/held", {"metadata": {"finalizers": None}}).raise_for_status()
    eventually("the namespace goes", lambda: http.get(f"/api/v1/namespaces/{ns}").status_code == 404)


# --- lists and watches -------------------------------------------------------------------------------------


def test_continue_pages_through_one_snapshot(http: httpx.Client, ns: str) -> None:
    cms = f"/api/v1/namespaces/{ns}/configmaps"
    for i in range(5):
        http.post(cms, json=configmap(f"c{i}", labels={"page": "yes"})).raise_for_status()
    first = http.get(cms, params={"limit": 2, "labelSelector": "page=yes"}).json()
    assert [i["metadata"]["name"] for i in first["items"]] == ["c0", "c1"]
    assert "remainingItemCount" not in first["metadata"]  # unknown under a selector
    http.delete(f"{cms}/c3").raise_for_status()
    http.post(cms, json=configmap("c5", labels={"page": "yes"})).raise_for_status()
    token = first["metadata"]["continue"]
    rest = http.get(cms, params={"limit": 10, "labelSelector": "page=yes", "continue": token}).json()
    assert [i["metadata"]["name"] for i in rest["items"]] == ["c2", "c3", "c4"]  # as of the first page
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]

    everything = http.get(cms).json()["items"]
    page = http.get(cms, params={"limit": 1}).json()
    assert page["metadata"]["remainingItemCount"] == len(everything) - 1

    malformed = http.get(cms, params={"limit": 1, "continue": "garbage"})
    assert malformed.status_code == 400 and malformed.json()["reason"] == "BadRequest"
    assert malformed.json()["message"].startswith("invalid continue token: continue key is not valid: ")


def test_watch_resumes_filters_and_times_out(dyn: Any, ns: str) -> None:
    configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")
    configmaps.create(body=configmap("a", labels={"team": "x"}), namespace=ns)
    since = configmaps.get(namespace=ns).metadata.resourceVersion
    configmaps.create(body=configmap("b", labels={"team": "y"}), namespace=ns)
    configmaps.patch(body={"data": {"k": "v"}}, name="a", namespace=ns, content_type=MERGE)
    configmaps.delete(name="b", namespace=ns)

    def events(**options: Any) -> list[tuple[str, str]]:
        return [(e["type"], e["object"].metadata.name) for e in dyn.watch(configmaps, namespace=ns, **options)]

    assert events(resource_version=since, timeout=1, label_selector="team") == [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
    ]
    assert events(resource_version=since, timeout=1, label_selector="team=x") == [("MODIFIED", "a")]
    assert events(timeout=1, label_selector="team") == [("ADDED", "a")]  # no resourceVersion: the current state

    received: list[tuple[str, str]] = []

    def follow() -> None:
        for event in dyn.watch(
            configmaps, namespace=ns, resource_version=since, timeout=10, field_selector="metadata.name=c"
        ):
            received.append((event["type"], event["object"].metadata.name))
            return

    follower = threading.Thread(target=follow)
    follower.start()
    time.sleep(0.2)
    configmaps.create(body=configmap("c"), namespace=ns)
    follower.join(timeout=10)
    assert received == [("ADDED", "c")]

    started = time.monotonic()
    latest = configmaps.get(namespace=ns).metadata.resourceVersion
    assert events(resource_version=latest, timeout=1, label_selector="team") == []
    assert 0.9 < time.monotonic() - started < 5  # timeoutSeconds honoured


# --- writes ----------------------------------------------------------------------------------------------


def test_server_side_apply_create_update_and_noop(dyn: Any, ns: str) -> None:
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    created = deployments.server_side_apply(
        body=deployment("web", "shop/web:1.0", namespace=ns), field_manager="promoflow"
    )
    assert created.metadata.generation == 1
    assert created.spec.replicas == 2 and created.spec.strategy.type == "RollingUpdate"  # defaulted
    assert list(managers(created)) == ["promoflow"]
    assert created.metadata.managedFields[0].operation == "Apply"

    def settled() -> Any:
        live = deployments.get(name="web", namespace=ns)
        return live if (live.status.observedGeneration == 1 and live.status.availableReplicas == 2) else None

    current = eventually("the rollout settles", settled).metadata.resourceVersion
    again = deployments.server_side_apply(
        body=deployment("web", "shop/web:1.0", namespace=ns), field_manager="promoflow"
    )
    assert again.metadata.resourceVersion == current  # a no-op write bumps nothing

    labelled = deployments.server_side_apply(
        body=deployment("web", "shop/web:1.0", namespace=ns, tier="a"), field_manager="promoflow"
    )
    assert int(labelled.metadata.resourceVersion) > int(current)
    assert labelled.metadata.generation == 1  # metadata is not part of generation

    updated = deployments.server_side_apply(
        body=deployment("web", "shop/web:2.0", namespace=ns, tier="a"), field_manager="promoflow"
    )
    assert updated.metadata.generation == 2
    assert updated.spec.template.spec.containers[0].image == "shop/web:2.0"


def test_apply_conflicts_force_ownership_and_field_removal(dyn: Any, ns: str) -> None:
    from kubernetes.dynamic.exceptions import ConflictError

    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    deployments.server_side_apply(
        body=deployment("web", "shop/web:1.0", namespace=ns, team="a", tier="b"), field_manager="promoflow"
    )

    scaler = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 5},
    }
    with pytest.raises(ConflictError) as conflict:
        deployments.server_side_apply(body=scaler, field_manager="autoscaler")
    status = json.loads(conflict.value.body)
    assert status["kind"] == "Status" and status["reason"] == "Conflict" and status["code"] == 409
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "promoflow": .spec.replicas'
    assert status["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "promoflow"', "field": ".spec.replicas"}
    ]

    forced = deployments.server_side_apply(body=scaler, field_manager="autoscaler", force_conflicts=True)
    assert forced.spec.replicas == 5
    owners = managers(forced)
    assert "f:replicas" in owners["autoscaler"]["f:spec"] and "f:replicas" not in owners["promoflow"]["f:spec"]

    # A sidecar added by another manager is merged into `containers` by name, and survives promoflow's applies.
    sidecar = {**scaler, "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy:1"}]}}}}
    deployments.server_side_apply(body=sidecar, field_manager="injector")

    # promoflow stops applying replicas (owned by the autoscaler: kept) and the tier label (its own: removed).
    result = deployments.server_side_apply(
        body=deployment("web", "shop/web:2.0", replicas=None, namespace=ns, team="a"), field_manager="promoflow"
    )
    assert result.spec.replicas == 5
    assert result.metadata.labels.to_dict() == {"team": "a"}
    assert [(c.name, c.image) for c in result.spec.template.spec.containers] == [
        ("app", "shop/web:2.0"),
        ("proxy", "envoy:1"),
    ]
    assert 'k:{"name":"proxy"}' in managers(result)["injector"]["f:spec"]["f:template"]["f:spec"]["f:containers"]


def test_conflict_messages_name_the_managers(http: httpx.Client, ns: str) -> None:
    cms = f"/api/v1/namespaces/{ns}/configmaps"
    patch(http, f"{cms}/k1", configmap("k1", data={"key": "a"}), APPLY, fieldManager="a").raise_for_status()
    one = patch(http, f"{cms}/k1", configmap("k1", data={"key": "b"}), APPLY, fieldManager="b")
    assert one.json()["message"] == 'Apply failed with 1 conflict: conflict with "a": .data.key'

    http.post(
        cms, json=configmap("k2", data={"key": "a", "other": "x"}), params={"fieldManager": "upd"}
    ).raise_for_status()
    patch(http, f"{cms}/k2", {"data": {"third": "z"}}, fieldManager="editor").raise_for_status()
    many = patch(
        http, f"{cms}/k2", configmap("k2", data={"key": "b", "other": "y", "third": "w"}), APPLY, fieldManager="b"
    )
    assert many.status_code == 409
    assert many.json()["message"] == (
        'Apply failed with 3 conflicts: conflicts with "editor" using v1:\n- .data.third\n'
        'conflicts with "upd" using v1:\n- .data.key\n- .data.other'
    )
    causes = sorted((c["field"], c["message"]) for c in many.json()["details"]["causes"])  # in no set order
    assert causes == [
        (".data.key", 'conflict with "upd" using v1'),
        (".data.other", 'conflict with "upd" using v1'),
        (".data.third", 'conflict with "editor" using v1'),
    ]


def test_kubectl_server_side_apply_keeps_the_last_applied_annotation(
    kubectl: Callable[..., Any], http: httpx.Client, ns: str
) -> None:
    first = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {greeting: hello}\n"
    assert kubectl("apply", "-f", "-", stdin=first).returncode == 0  # client-side: writes the annotation
    second = first.replace("hello", "bonjour")
    upgraded = kubectl("apply", "--server-side", "-f", "-", stdin=second)
    assert upgraded.returncode == 0, upgraded.stderr  # takes over from client-side apply without a conflict
    live = http.get(f"/api/v1/namespaces/{ns}/configmaps/settings").json()
    last = json.loads(live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["data"] == {"greeting": "bonjour"} and last["metadata"]["name"] == "settings"
    other = kubectl("apply", "--server-side", "--field-manager=someone", "--force-conflicts", "-f", "-", stdin=first)
    assert other.returncode == 0, other.stderr
    live = http.get(f"/api/v1/namespaces/{ns}/configmaps/settings").json()
    last = json.loads(live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["data"] == {"greeting": "bonjour"}  # only kubectl's own manager keeps it in step


def test_immutable_configmaps_and_secrets(http: httpx.Client, ns: str) -> None:
    cms = f"/api/v1/namespaces/{ns}/configmaps"
    http.post(cms, json=configmap("imm", data={"k": "v"}, immutable=True)).raise_for_status()
    changed = patch(http, f"{cms}/imm", {"data": {"k": "w"}})
    assert changed.status_code == 422
    assert (
        changed.json()["message"]
        == 'ConfigMap "imm" is invalid: data: Forbidden: field is immutable when `immutable` is set'
    )
    unset = patch(http, f"{cms}/imm", {"immutable": False})
    assert (
        unset.json()["message"]
        == 'ConfigMap "imm" is invalid: immutable: Forbidden: field is immutable when `immutable` is set'
    )
    assert patch(http, f"{cms}/imm", {"metadata": {"labels": {"a": "b"}}}).status_code == 200  # metadata may change
    secrets_path = f"/api/v1/namespaces/{ns}/secrets"
    secret = {"metadata": {"name": "s"}, "immutable": True, "stringData": {"k": "v"}}
    assert http.post(secrets_path, json=secret).json()["data"] == {"k": "dg=="}
    refused = patch(http, f"{secrets_path}/s", {"stringData": {"k": "w"}})
    assert refused.status_code == 422 and refused.json()["details"]["causes"] == [
        {
            "reason": "FieldValueForbidden",
            "message": "Forbidden: field is immutable when `immutable` is set",
            "field": "data",
        }
    ]


def test_deployments_carry_their_revision(dyn: Any, ns: str) -> None:
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")

    def revision(expected: str) -> Any:
        def check() -> bool:
            live = deployments.get(name="web", namespace=ns)
            return (live.metadata.annotations or {}).get("deployment.kubernetes.io/revision") == expected

        return eventually(f"revision {expected}", check)

    deployments.server_side_apply(body=deployment("web", "shop/web:1", namespace=ns), field_manager="promoflow")
    revision("1")
    deployments.server_side_apply(body=deployment("web", "shop/web:2", namespace=ns), field_manager="promoflow")
    revision("2")
    deployments.server_side_apply(
        body=deployment("web", "shop/web:2", replicas=3, namespace=ns), field_manager="promoflow"
    )
    time.sleep(0.5)
    revision("2")  # scaling is not a new revision
    deployments.server_side_apply(
        body=deployment("web", "shop/web:1", replicas=3, namespace=ns), field_manager="promoflow"
    )
    revision("3")  # going back to an old template makes it the newest revision
    entries = deployments.get(name="web", namespace=ns).to_dict()["metadata"]["managedFields"]
    owner = next(e for e in entries if e["manager"] == "kube-controller-manager")  # through /status, with the status
    assert owner.get("subresource") == "status"
    assert "f:deployment.kubernetes.io/revision" in owner["fieldsV1"]["f:metadata"]["f:annotations"]


def test_stale_resource_version_is_a_conflict(dyn: Any, ns: str) -> None:
    from kubernetes.dynamic.exceptions import ConflictError

    configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")
    first = configmaps.create(body=configmap("settings", data={"a": "1"}), namespace=ns)
    assert first.metadata.get("generation") is None  # core kinds have none
    body = first.to_dict()
    body["data"] = {"a": "2"}
    second = configmaps.replace(body=body, namespace=ns)
    assert int(second.metadata.resourceVersion) > int(first.metadata.resourceVersion)
    unchanged = configmaps.replace(body=second.to_dict(), namespace=ns)
    assert unchanged.metadata.resourceVersion == second.metadata.resourceVersion

    body["data"] = {"a": "3"}  # still carries the first resourceVersion
    with pytest.raises(ConflictError) as conflict:
        configmaps.replace(body=body, namespace=ns)
    assert json.loads(conflict.value.body)["message"] == (
        'Operation cannot be fulfilled on configmaps "settings": the object has been modified; please apply your '
        "changes to the latest version and try again"
    )


def test_dry_run_persists_nothing(dyn: Any, ns: str) -> None:
    from kubernetes.dynamic.exceptions import NotFoundError

    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    preview = deployments.server_side_apply(
        body=deployment("web", "shop/web:1.0", namespace=ns), field_manager="promoflow", dry_run="All"
    )
    assert preview.metadata.name == "web" and preview.spec.replicas == 2
    with pytest.raises(NotFoundError):
        deployments.get(name="web", namespace=ns)

    real = deployments.server_side_apply(
        body=deployment("web", "shop/web:1.0", namespace=ns), field_manager="promoflow"
    )
    changed = deployments.server_side_apply(
        body=deployment("web", "shop/web:9.9", namespace=ns), field_manager="promoflow", dry_run="All"
    )
    assert changed.spec.template.spec.containers[0].image == "shop/web:9.9"
    stored = deployments.get(name="web", namespace=ns)
    assert stored.spec.template.spec.containers[0].image == "shop/web:1.0"
    assert stored.metadata.generation == real.metadata.generation == 1


def test_status_subresource_isolation_and_generation(dyn: Any, ns: str) -> None:
    kustomizations = dyn.resources.get(api_version="kustomize.toolkit.fluxcd.io/v1", kind="Kustomization")
    body = kustomization(ns, "./dev", status={"lastAppliedRevision": "forged"})
    created = kustomizations.server_side_apply(body=body, field_manager="promoflow")
    assert created.status.to_dict() == {"observedGeneration": -1}  # main-resource writes ignore .status
    assert created.spec.force is False  # the CRD's defaults

    status_write = {"spec": {"path": "./elsewhere"}, "status": {"lastAppliedRevision": "main@sha1:abc"}}
    after_status = dyn.patch(kustomizations.status, body=status_write, name="shop", namespace=ns, content_type=MERGE)
    assert after_status.status.lastAppliedRevision == "main@sha1:abc"
    assert after_status.spec.path == "./dev"  # /status writes change only .status
    assert after_status.metadata.generation == 1

    spec_write = {"spec": {"path": "./prod"}, "status": {"lastAppliedRevision": "forged"}}
    after_spec = kustomizations.patch(body=spec_write, name="shop", namespace=ns, content_type=MERGE)
    assert after_spec.spec.path == "./prod" and after_spec.status.lastAppliedRevision == "main@sha1:abc"
    assert after_spec.metadata.generation == 2

    # Argo CD Applications have no /status: their status is written through the main resource.
    applications = dyn.resources.get(api_version="argoproj.io/v1alpha1", kind="Application")
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "shop", "namespace": ns},
        "spec": {"project": "default", "destination": {"server": "https://kubernetes.default.svc", "namespace": ns}},
    }
    applications.server_side_apply(body=app, field_manager="promoflow")
    written = applications.patch(
        body={"status": {"health": {"status": "Healthy"}}}, name="shop", namespace=ns, content_type=MERGE
    )
    assert written.status.health.status == "Healthy" and written.metadata.generation == 2


def test_status_bodies_patch_types_and_selectors(http: httpx.Client, ns: str) -> None:
    cms = f"/api/v1/namespaces/{ns}/configmaps"

    def named(name: str) -> Obj:
        return {"name": name, "labels": {"app": "shop"}}

    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": named("c"), "data": {"a": "1"}}
    assert http.post(cms, json=body).status_code == 201
    exists = http.post(cms, json=body).json()
    assert (exists["reason"], exists["message"], exists["code"]) == (
        "AlreadyExists",
        'configmaps "c" already exists',
        409,
    )
    elsewhere = http.post("/api/v1/namespaces/nowhere-at-all/configmaps", json=body)
    assert elsewhere.status_code == 404 and elsewhere.json()["message"] == 'namespaces "nowhere-at-all" not found'

    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    bad["spec"] = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": [{"name": "app"}]}},
    }
    refused = http.post(f"/apis/apps/v1/namespaces/{ns}/deployments", json=bad)
    assert refused.status_code == 422 and refused.json()["reason"] == "Invalid"
    assert refused.json()["message"] == (
        'Deployment.apps "web" is invalid: [spec.template.metadata.labels: Invalid value: {"app":"other"}: '
        "`selector` does not match template `labels`, spec.template.spec.containers[0].image: Required value]"
    )
    assert refused.json()["details"]["kind"] == "Deployment" and refused.json()["details"]["group"] == "apps"

    merged = patch(http, f"{cms}/c", {"data": {"b": "2", "a": None}})
    assert merged.json()["data"] == {"b": "2"}
    patched = patch(http, f"{cms}/c", [{"op": "add", "path": "/data/c", "value": "3"}], "application/json-patch+json")
    assert patched.json()["data"] == {"b": "2", "c": "3"}
    failed_test = patch(
        http, f"{cms}/c", [{"op": "test", "path": "/data/c", "value": "x"}], "application/json-patch+json"
    )
    assert failed_test.status_code == 422
    assert patch(http, f"{cms}/c", {"data": {"d": "4"}}, STRATEGIC).json()["data"]["d"] == "4"
    assert patch(http, f"{cms}/c", {}, "text/plain").status_code == 415
    applied = patch(http, f"{cms}/f", {**body, "metadata": named("f")}, APPLY, fieldManager="me")
    assert applied.status_code == 201
    assert patch(http, f"{cms}/f", {**body, "metadata": named("f")}, APPLY, fieldManager="me").status_code == 200
    unmanaged = patch(http, f"{cms}/f", body, APPLY)
    assert unmanaged.status_code == 422 and unmanaged.json()["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
    )
    missing = patch(http, f"{cms}/nope", {"data": {"a": "1"}})
    assert missing.status_code == 404 and missing.json()["message"] == 'configmaps "nope" not found'
    http.post(cms, json={**body, "metadata": named("e")}).raise_for_status()

    def names(response: httpx.Response) -> list[str]:
        return [i["metadata"]["name"] for i in response.json()["items"]]

    assert names(http.get(cms, params={"labelSelector": "app=shop"})) == ["c", "e", "f"]
    assert names(
        http.get(cms, params={"labelSelector": "app in (shop),app!=web", "fieldSelector": "metadata.name!=c"})
    ) == ["e", "f"]
    assert names(
        http.get("/api/v1/configmaps", params={"fieldSelector": f"metadata.name=f,metadata.namespace={ns}"})
    ) == ["f"]
    deleted = http.delete(f"{cms}/c")
    assert deleted.json()["status"] == "Success" and http.get(f"{cms}/c").status_code == 404


def test_scale_subresource(http: httpx.Client, ns: str, kubectl: Callable[..., Any]) -> None:
    http.post(f"/apis/apps/v1/namespaces/{ns}/deployments", json=deployment("web", "shop/web:1")).raise_for_status()
    scale = http.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web/scale").json()
    assert (scale["kind"], scale["apiVersion"], scale["spec"], scale["status"]["selector"]) == (
        "Scale",
        "autoscaling/v1",
        {"replicas": 2},
        "app=web",
    )
    scaled = kubectl("scale", "deployment/web", "--replicas=4")
    assert scaled.returncode == 0, scaled.stderr
    assert http.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web").json()["spec"]["replicas"] == 4


def test_autoscalers_in_both_versions(http: httpx.Client, ns: str) -> None:
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 5,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}},
                }
            ],
        },
    }
    http.post(f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers", json=hpa).raise_for_status()
    v1 = http.get(f"/apis/autoscaling/v1/namespaces/{ns}/horizontalpodautoscalers/web").json()
    assert v1["apiVersion"] == "autoscaling/v1"
    assert v1["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 2,
        "maxReplicas": 5,
        "targetCPUUtilizationPercentage": 60,
    }
    v1["spec"]["targetCPUUtilizationPercentage"] = 70
    http.put(f"/apis/autoscaling/v1/namespaces/{ns}/horizontalpodautoscalers/web", json=v1).raise_for_status()
    v2 = http.get(f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/web").json()
    assert v2["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
    ]


# --- controllers -----------------------------------------------------------------------------------------


def test_workload_rollouts_healthy_slow_and_never_ready(kube_server: KubeServer, dyn: Any, ns: str) -> None:
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    kube_server.behave("slow-*", "slow", seconds=1)
    kube_server.behave("*:broken", "never_ready", seconds=1)

    def status(name: str) -> Obj:
        return deployments.get(name=name, namespace=ns).to_dict().get("status", {})

    deployments.server_side_apply(
        body=deployment("web", "shop/web:1.0", replicas=3, namespace=ns), field_manager="promoflow"
    )
    healthy = eventually("web is available", lambda: status("web").get("availableReplicas") == 3 and status("web"))
    assert healthy["observedGeneration"] == 1 and healthy["updatedReplicas"] == healthy["readyReplicas"] == 3
    eventually(
        "web has progressed",
        lambda: (
            {c["type"]: c["reason"] for c in status("web").get("conditions", [])}
            == {"Available": "MinimumReplicasAvailable", "Progressing": "NewReplicaSetAvailable"}
        ),
    )

    deployments.server_side_apply(body=deployment("slow-api", "shop/api:1.0", namespace=ns), field_manager="promoflow")
    assert eventually("slow-api is available in the end", lambda: status("slow-api").get("availableReplicas") == 2)

    broken = deployment("web", "shop/web:broken", replicas=3, namespace=ns)
    broken["spec"]["progressDeadlineSeconds"] = 2
    deployments.server_side_apply(body=broken, field_manager="promoflow")

    def stuck() -> Obj | None:
        found = status("web")
        progressing = next((c for c in found.get("conditions", []) if c["type"] == "Progressing"), {})
        return found if found.get("observedGeneration") == 2 and progressing.get("status") == "False" else None

    found = eventually("web's rollout gives up", stuck)
    assert next(c for c in found["conditions"] if c["type"] == "Progressing")["reason"] == "ProgressDeadlineExceeded"
    assert found["availableReplicas"] >= 2  # the old pods still serve


def test_argocd_and_flux_report_through_their_resources(kube_server: KubeServer, dyn: Any, ns: str) -> None:
    applications = dyn.resources.get(api_version="argoproj.io/v1alpha1", kind="Application")
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "shop", "namespace": ns},
        "spec": {
            "project": "default",
            "destination": {"server": "https://kubernetes.default.svc", "namespace": ns},
            "source": {"repoURL": "https://git.example.com/shop.git", "targetRevision": "env/prod", "path": "."},
        },
    }
    applications.server_side_apply(body=app, field_manager="promoflow")
    kube_server.argocd.report("shop", revision="abc123", namespace=ns, health="Progressing", phase="Running")
    reported = applications.get(name="shop", namespace=ns)
    assert reported.status.sync.revision == "abc123" and reported.status.health.status == "Progressing"
    assert reported.status.operationState.phase == "Running"
    assert reported.metadata.generation == 2  # no status subresource: status counts

    kustomizations = dyn.resources.get(api_version="kustomize.toolkit.fluxcd.io/v1", kind="Kustomization")
    kustomizations.server_side_apply(body=kustomization(ns, "./prod"), field_manager="promoflow")
    kube_server.flux.report("shop", revision="main@sha1:abc123", namespace=ns)
    kube_server.flux.report("shop", revision="main@sha1:def456", namespace=ns, ready=False)
    flux = kustomizations.get(name="shop", namespace=ns).status
    assert flux.lastAppliedRevision == "main@sha1:abc123" and flux.lastAttemptedRevision == "main@sha1:def456"
    assert (flux.conditions[0].type, flux.conditions[0].status, flux.observedGeneration) == ("Ready", "False", 1)


# --- kubectl ---------------------------------------------------------------------------------------------

MANIFESTS = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello
"""


def manifest(name: str, image: str, deadline: int = 600) -> str:
    return f"""\
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 2
  progressDeadlineSeconds: {deadline}
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


def test_kubectl_server_side_apply_get_and_rollout_status(
    kube_server: KubeServer, kubectl: Callable[..., Any], dyn: Any, ns: str, tmp_path: Path
) -> None:
    kube_server.behave("*:broken*", "never_ready", seconds=1)
    kube_server.behave("slow", "slow", seconds=5)
    files = tmp_path / "manifests.yaml"
    files.write_text(
        MANIFESTS
        + manifest("web", "shop/web:1.0")
        + manifest("api", "shop/api:broken", deadline=2)
        + manifest("slow", "shop/slow:1")
    )

    applied = kubectl("apply", "--server-side", "-f", str(files))
    assert applied.returncode == 0, applied.stderr
    assert "deployment.apps/web serverside-applied" in applied.stdout

    got = kubectl("get", "deployment", "web", "-o", "json", "--show-managed-fields")
    assert got.returncode == 0, got.stderr
    web = json.loads(got.stdout)
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/web:1.0"
    assert ("kubectl", "Apply") in [(e["manager"], e["operation"]) for e in web["metadata"]["managedFields"]]
    listed = json.loads(kubectl("get", "configmaps", "-l", "!kube-root-ca", "-o", "json").stdout)
    assert [item["data"] for item in listed["items"] if item["metadata"]["name"] == "settings"] == [
        {"greeting": "hello"}
    ]

    healthy = kubectl("rollout", "status", "deployment/web", "--timeout=30s")
    assert healthy.returncode == 0, healthy.stderr
    assert 'deployment "web" successfully rolled out' in healthy.stdout
    slow = kubectl("rollout", "status", "deployment/slow", "--timeout=30s")
    assert slow.returncode == 0 and "Waiting for deployment" in slow.stdout, slow.stderr
    never = kubectl("rollout", "status", "deployment/api", "--timeout=30s")
    assert never.returncode != 0
    assert 'deployment "api" exceeded its progress deadline' in never.stderr

    table = kubectl("get", "deployments")
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
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deployments.get(name="web", namespace=ns).spec.template.spec.containers[0].image == "shop/web:1.0"
    forced = kubectl(
        "apply", "--server-side", "--field-manager=promoflow", "--force-conflicts", "-f", "-", stdin=changed
    )
    assert forced.returncode == 0, forced.stderr
    assert kubectl("rollout", "status", "deployment/web", "--timeout=30s").returncode == 0

    strict = kubectl("apply", "--server-side", "-f", "-", stdin=MANIFESTS.replace("\ndata:", "\ndta:"))
    assert strict.returncode != 0 and ".dta: field not declared in schema" in strict.stderr
    assert kubectl("apply", "-f", "-", stdin=MANIFESTS.replace("\ndata:", "\ndta:")).returncode != 0  # client-side too


# --- promoflow's apply, prune and verify of every kind an app brings -------------------------------------------


def test_promoflow_applies_prunes_and_verifies_an_app_of_many_kinds(
    kube_server: KubeServer, http: httpx.Client, ns: str, tmp_path: Path
) -> None:
    import yaml

    from promoflow.clusters.health import rollout_status
    from promoflow.clusters.kubernetes import KubernetesTarget, ObjectRef

    group = f"{secrets.token_hex(4)}.example.com"
    cluster_role = unique("shop-reader")
    crd = widget_crd(group)
    objects = [*yaml.safe_load_all(SAMPLES)]
    objects = [o for o in objects if o["kind"] not in ("DaemonSet", "StatefulSet")]  # verified elsewhere
    objects += [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": cluster_role},
            "rules": [],
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "migrate"},
            "spec": {
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "shop/migrate:1"}]}
                }
            },
        },
        crd,
    ]
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "gadget"}, "spec": {"size": 2}}
    kubeconfig = kube_server.write_kubeconfig(tmp_path / "kubeconfig", namespace=ns)
    with KubernetesTarget(str(kubeconfig), "sandbox") as target:
        try:
            first = target.apply("shop", "dev", objects)
            eventually("the CRD is established", lambda: established(http, crd["metadata"]["name"]))
            widgets_path = f"/apis/{group}/v1/namespaces/{ns}/widgets"  # a real server answers 429 a moment longer
            eventually("its resources are served", lambda: http.get(widgets_path).status_code == 200)
            everything = [*objects, widget]
            second = target.apply("shop", "dev", everything, previous=first.applied)
            assert [str(r) for r in second.changed] == [f"Widget {ns}/gadget"]
            live = target.get(ObjectRef("apps/v1", "Deployment", ns, "web"))
            assert live is not None and live["spec"]["template"]["spec"]["serviceAccountName"] == "sa"

            again = target.apply("shop", "dev", everything, previous=second.applied)
            assert again.changed == [] and again.pruned == []  # nothing written

            kept = [o for o in everything if o["kind"] not in ("Job", "PodDisruptionBudget", "Widget")]
            third = target.apply("shop", "dev", kept, previous=again.applied)
            assert sorted(str(r) for r in third.pruned) == [
                f"Job {ns}/migrate",
                f"PodDisruptionBudget {ns}/pdb",
                f"Widget {ns}/gadget",
            ]
            for ref in third.pruned:
                eventually(f"{ref} is gone", lambda ref=ref: target.get(ref) is None)
            results = rollout_status(target, third.applied, timeout_seconds=30)
            assert [(str(r.ref), r.healthy) for r in results] == [(f"Deployment {ns}/web", True)]
        finally:
            http.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{cluster_role}")
            http.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}")


def test_kubectl_get_prints_the_real_servers_columns(real_kube: ControlPlane) -> None:
    """The Table of every kind an app brings: the same columns, and the same cells where no controller writes."""
    import yaml

    controlled = {"Deployment", "StatefulSet", "DaemonSet", "PodDisruptionBudget"}  # cells that depend on controllers
    volatile = ("Age", "Created At", "Cluster-IP", "Port(s)")
    accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    tables: dict[str, list[Obj]] = {}
    with StandIn() as stand_in:
        for name, api in (("stand-in", stand_in.api_client()), ("real", real_kube.api_client())):
            client = raw_client(api)
            namespace = unique("tables")
            client.post("/api/v1/namespaces", json={"metadata": {"name": namespace}}).raise_for_status()
            try:
                found = []
                for manifest in yaml.safe_load_all(SAMPLES):
                    kind = manifest["kind"]
                    path = _collection(manifest, namespace)
                    client.post(path, json=manifest).raise_for_status()
                    printed = client.get(f"{path}/{manifest['metadata']['name']}", headers=accept).json()
                    columns = [(c["name"], c["type"], c["priority"]) for c in printed["columnDefinitions"]]
                    names = [c[0] for c in columns]
                    cells = printed["rows"][0]["cells"]
                    shown = {n: ("*" if n in volatile else c) for n, c in zip(names, cells, strict=True)}
                    found.append({"kind": kind, "columns": columns, "cells": None if kind in controlled else shown})
                crds = client.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", headers=accept).json()
                found.append(
                    {
                        "kind": "CRD",
                        "columns": [(c["name"], c["type"], c["priority"]) for c in crds["columnDefinitions"]],
                    }
                )
                tables[name] = found
            finally:
                client.delete(f"/api/v1/namespaces/{namespace}")
                client.close()
    assert tables["stand-in"] == tables["real"]


def _collection(manifest: Obj, namespace: str) -> str:
    group_version = manifest["apiVersion"]
    prefix = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
    plural = {"Ingress": "ingresses", "NetworkPolicy": "networkpolicies"}.get(
        manifest["kind"], manifest["kind"].lower() + "s"
    )
    if manifest["kind"] == "HorizontalPodAutoscaler":
        plural = "horizontalpodautoscalers"
    return f"{prefix}/namespaces/{namespace}/{plural}"


KUBECTL_IMPERATIVES = [
    ("create", "deployment", "web", "--image=shop/web:1", "--replicas=2", "--port=8080"),
    ("create", "configmap", "settings", "--from-literal=greeting=hello", "--from-literal=mode=fast"),
    ("create", "secret", "generic", "creds", "--from-literal=password=hunter2"),
    ("create", "service", "clusterip", "web", "--tcp=80:8080"),
    ("create", "serviceaccount", "robot"),
    ("create", "role", "reader", "--verb=get,list", "--resource=pods,configmaps"),
    ("create", "rolebinding", "reads", "--role=reader", "--serviceaccount=NS:robot"),
    ("create", "job", "migrate", "--image=shop/migrate:1"),
    ("create", "cronjob", "nightly", "--image=shop/nightly:1", "--schedule=0 3 * * *"),
    ("create", "poddisruptionbudget", "web", "--selector=app=web", "--min-available=1"),
    ("create", "ingress", "web", "--rule=shop.example.com/*=web:80"),
    ("label", "deployment", "web", "tier=front"),
    ("annotate", "deployment", "web", "owner=shop"),
    ("set", "image", "deployment/web", "web=shop/web:2"),
]


def test_kubectl_imperative_commands_make_what_they_make_on_the_real_server(
    real_kube: ControlPlane, tmp_path: Path
) -> None:
    """kubectl's typed requests (sent as protobuf) and patches: the objects they leave, field by field."""
    made: dict[str, list[Obj]] = {}
    with StandIn() as stand_in:
        for name, server in (("stand-in", stand_in), ("real", None)):
            config = tmp_path / f"{name}.kubeconfig"
            if server:
                server.write_kubeconfig(config)
            else:
                real_kube.write_kubeconfig(config)
            namespace = unique("imperative")

            def kubectl(
                *args: str, config: Path = config, cache: Path = tmp_path / name
            ) -> subprocess.CompletedProcess[str]:
                return subprocess.run(
                    ["kubectl", "--kubeconfig", str(config), "--cache-dir", str(cache), *args],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )

            created = kubectl("create", "namespace", namespace)
            assert created.returncode == 0, (name, created.stderr)
            try:
                for command in KUBECTL_IMPERATIVES:
                    run = kubectl("-n", namespace, *(part.replace("NS", namespace) for part in command))
                    assert run.returncode == 0, (name, command, run.stderr)
                can = kubectl("-n", namespace, "auth", "can-i", "create", "deployments")
                assert can.stdout.strip() == "yes", (name, can.stderr)
                kinds = "deployment,configmap,secret,service,serviceaccount,role,rolebinding,cronjob,pdb,ingress"
                listed = kubectl("-n", namespace, "get", kinds, "-o", "json")
                items = json.loads(listed.stdout)["items"]
                kept = [i for i in items if i["metadata"]["name"] not in ("kube-root-ca.crt", "default")]
                for item in kept:
                    item["metadata"].pop("managedFields", None)
                    item.pop("status", None)  # written by controllers, at their pace
                made[name] = sorted((_normalized(i) for i in kept), key=lambda i: (i["kind"], i["metadata"]["name"]))
            finally:
                kubectl("delete", "namespace", namespace, "--wait=false")
    differences = []
    for mine, real in zip(made["stand-in"], made["real"], strict=True):
        mine["metadata"]["namespace"] = real["metadata"]["namespace"] = "*"
        for item in (mine, real):
            for subject in item.get("subjects") or []:
                subject["namespace"] = "*"
        differences += [f"{real['kind']}{where}" for where in _differences(mine, real)]
    assert differences == [], "\n".join(differences)


# --- protobuf request bodies ----------------------------------------------------------------------------------

PROTOBUF = "application/vnd.kubernetes.protobuf"
SCHEMA_OR = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOr"


def _varint(number: int) -> bytes:
    number &= (1 << 64) - 1  # negative numbers as Go writes them: ten bytes of two's complement
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def _bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _field(number: int, kind: str, target: str, value: Any) -> bytes:
    if kind in ("int", "bool"):
        return _varint(number << 3) + _varint(int(value))
    if kind == "float":
        return _varint(number << 3 | 1) + struct.pack("<d", value)
    if kind == "items":  # a named slice as a map's value (ExtraValue): its items in field 1 of a message
        return _bytes(number, b"".join(_field(1, target, "", item) for item in value))
    return _bytes(number, value.encode() if kind == "string" else _message(value, target))


def _message(value: Any, target: str) -> bytes:
    """A value of the definition `target` in Kubernetes' protobuf encoding, by the stand-in's wire table
    (`gotypes.wire`): sent to the real server too, where a wrong field number in the table shows."""
    from promoflow.sandbox.kube import gotypes

    if target.endswith("resource.Quantity"):
        return _field(1, "string", "", value)
    if target.endswith("apiextensions.v1.JSON"):
        return _field(1, "string", "", json.dumps(value))
    if target.startswith(SCHEMA_OR):  # a boolean (OrBool), a list (OrArray) or a schema, by the JSON value
        schema = target[: target.rindex("Or")]
        if isinstance(value, bool):
            return _field(1, "bool", "", value)
        if isinstance(value, list):
            return b"".join(_field(2, "message", schema, item) for item in value)
        return _field(2 if target.endswith("OrBool") else 1, "message", schema, value)
    out = b""
    for number, name, kind, *rest in gotypes.wire(target):
        if kind == "inline":
            out += _field(number, "message", rest[0], value)
        elif kind == "map":
            for key, item in (value.get(name) or {}).items():
                out += _bytes(number, _field(1, "string", "", key) + _field(2, rest[0], rest[1], item))
        elif name in value:
            items = value[name] if rest[1] else [value[name]]
            out += b"".join(_field(number, kind, rest[0], item) for item in items)
    return out


def protobuf_body(obj: Obj, definition: str) -> bytes:
    """`obj` as kubectl sends it: the magic number, then a runtime.Unknown of its type and message."""
    type_meta = _field(1, "string", "", obj["apiVersion"]) + _field(2, "string", "", obj["kind"])
    return b"k8s\x00" + _bytes(1, type_meta) + _bytes(2, _message(obj, definition))


def test_protobuf_bodies_make_what_the_same_json_makes(http: httpx.Client, ns: str) -> None:
    """Typed clients (kubectl create, auth can-i, controllers) send built-in kinds as protobuf: what each server
    makes of it is what it makes of the same body as JSON. Quantity maps, floats, schemas or lists, extra."""
    resources = {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "250m"}}
    made, token = {}, secrets.token_hex(4)
    for sent_as in ("json", "protobuf"):
        web = deployment(f"web-{sent_as}", "shop/web:1", namespace=ns)
        web["spec"]["template"]["spec"]["containers"][0]["resources"] = resources
        web["metadata"]["annotations"] = {"a": "b"}
        group = f"{sent_as}-{token}.example.com"
        crd = widget_crd(group)
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"] |= {
            "ratio": {"type": "number", "minimum": 0.5, "maximum": 10, "multipleOf": 0.25},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "open": {"type": "object", "additionalProperties": True, "x-kubernetes-preserve-unknown-fields": True},
            "level": {"type": "string", "enum": ["low", "high"]},
            "window": {
                "type": "object",
                "properties": {"start": {"type": "integer"}, "end": {"type": "integer"}},
                "x-kubernetes-validations": [{"rule": "self.start <= self.end", "message": "start after end"}],
            },
        }
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": "alice",
                "groups": ["shop"],
                "extra": {"scopes": ["read", "write"]},
                "resourceAttributes": {"namespace": ns, "verb": "get", "resource": "pods"},
            },
        }
        sent = []
        for path, obj, definition in (
            (f"/apis/apps/v1/namespaces/{ns}/deployments", web, "io.k8s.api.apps.v1.Deployment"),
            (
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                crd,
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
            ),
            (
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                review,
                "io.k8s.api.authorization.v1.SubjectAccessReview",
            ),
        ):
            if sent_as == "json":
                answer = http.post(path, json=obj)
            else:
                answer = http.post(path, content=protobuf_body(obj, definition), headers={"Content-Type": PROTOBUF})
            assert answer.status_code == 201, (sent_as, obj["kind"], answer.text)
            sent.append(answer.json())
        http.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}")
        made[sent_as] = json.loads(json.dumps(sent).replace(sent_as, "*"))
    for json_made, protobuf_made in zip(made["json"], made["protobuf"], strict=True):
        for item in (json_made, protobuf_made):
            item["metadata"].pop("managedFields", None)
            item.pop("status", None)
        assert _differences(_normalized(protobuf_made), _normalized(json_made)) == []
        assert json.dumps(_normalized(protobuf_made), sort_keys=True) == json.dumps(
            _normalized(json_made), sort_keys=True
        )


def test_protobuf_delete_options_and_unreadable_bodies(http: httpx.Client, ns: str) -> None:
    """kubectl's typed deletes send DeleteOptions as protobuf; a body that is not protobuf is a bad request."""
    created = http.post(f"/api/v1/namespaces/{ns}/configmaps", json=configmap("c")).json()
    options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": "0" * 8}}
    body = protobuf_body(options, "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions")
    refused = http.request(
        "DELETE", f"/api/v1/namespaces/{ns}/configmaps/c", content=body, headers={"Content-Type": PROTOBUF}
    )
    assert refused.json()["message"] == (
        'Operation cannot be fulfilled on ConfigMap "c": the UID in the precondition (00000000) does not match '
        f"the UID in record ({created['metadata']['uid']}). The object might have been deleted and then recreated"
    )
    assert refused.json()["details"] == {"name": "c", "kind": "ConfigMap"}
    options["preconditions"] = {"uid": created["metadata"]["uid"]}
    body = protobuf_body(options, "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions")
    deleted = http.request(
        "DELETE", f"/api/v1/namespaces/{ns}/configmaps/c", content=body, headers={"Content-Type": PROTOBUF}
    )
    assert deleted.status_code == 200, deleted.text
    garbled = http.post(
        f"/api/v1/namespaces/{ns}/configmaps", content=b"k8s\x00\x0a\xff", headers={"Content-Type": PROTOBUF}
    )
    assert garbled.status_code == 400, garbled.text
