"""The real control plane the tests use: kube-apiserver with RBAC and tokens, the real controllers, and
promoflow's simulated kubelet (pods bound and reported per the `behave` rules), Argo CD's and Flux's real CRDs."""

from __future__ import annotations

import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from promoflow.errors import TerminalError
from promoflow.sandbox.control_plane import ControlPlane
from tests.kube_servers import KubeServer

real = pytest.mark.parametrize("kube_server", ["real"], indirect=True)


def kubectl(kubeconfig: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True, check=check, timeout=60
    )


def eventually(what: str, probe: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), {})


def workloads(namespace: str) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {namespace}}}
spec:
  replicas: 2
  progressDeadlineSeconds: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: web, image: "shop/web:1"}}]}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: agent, namespace: {namespace}}}
spec:
  selector: {{matchLabels: {{app: agent}}}}
  template:
    metadata: {{labels: {{app: agent}}}}
    spec: {{containers: [{{name: agent, image: "shop/agent:1"}}]}}
---
apiVersion: batch/v1
kind: Job
metadata: {{name: migrate, namespace: {namespace}}}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: migrate, image: "shop/migrate:1"}}]
"""


@real
def test_real_controllers_roll_out_what_the_simulated_kubelet_reports(kube_server: KubeServer, tmp_path: Path) -> None:
    namespace = kube_server.namespace()
    kubeconfig = kube_server.write_kubeconfig(tmp_path / "kubeconfig", namespace=namespace)
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600  # it holds the admin token
    (tmp_path / "workloads.yaml").write_text(workloads(namespace))
    kubectl(kubeconfig, "apply", "--server-side", "-f", str(tmp_path / "workloads.yaml"))
    kubectl(kubeconfig, "rollout", "status", "deployment/web", "daemonset/agent", "--timeout=60s")
    kubectl(kubeconfig, "wait", "--for=condition=Complete", "job/migrate", "--timeout=60s")
    pods = kubectl(kubeconfig, "get", "pods", "-o", "jsonpath={.items[*].spec.nodeName}").stdout.split()
    assert pods == ["promoflow-node"] * 4, pods  # 2 of web, 1 of agent (one node), the Job's

    # slow pods: ready a while after they start
    kube_server.behave("web", "slow", seconds=0.5)
    kubectl(kubeconfig, "set", "image", "deployment/web", "web=shop/web:2")
    started = time.monotonic()
    kubectl(kubeconfig, "rollout", "status", "deployment/web", "--timeout=60s")
    assert time.monotonic() - started >= 0.5

    # pods of a new image that never get ready: the deployment controller gives up after its deadline
    kube_server.behave("shop/web:broken", "never_ready")
    kubectl(kubeconfig, "set", "image", "deployment/web", "web=shop/web:broken")
    failed = kubectl(kubeconfig, "rollout", "status", "deployment/web", "--timeout=60s", check=False)
    assert 'deployment "web" exceeded its progress deadline' in failed.stderr, failed.stderr
    web = kube_server.find("deployments.apps", namespace, "web")
    assert web is not None and web["status"]["availableReplicas"] == 2  # the old pods keep serving
    assert condition(web, "Progressing")["reason"] == "ProgressDeadlineExceeded"


@real
def test_argo_cd_and_flux_resources_are_their_real_crds_and_report_status(
    kube_server: KubeServer, tmp_path: Path
) -> None:
    namespace = kube_server.namespace()
    kubeconfig = kube_server.write_kubeconfig(tmp_path / "kubeconfig", namespace=namespace)
    app = tmp_path / "app.yaml"
    app.write_text("apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: web}\nspec: {}\n")
    refused = kubectl(kubeconfig, "apply", "--server-side", "-f", str(app), check=False)
    assert refused.returncode != 0 and "spec.destination: Required value" in refused.stderr, refused.stderr
    app.write_text(
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: web}\n"
        "spec: {project: default, destination: {namespace: web, server: https://kubernetes.default.svc},\n"
        "  source: {repoURL: https://git.example.com/env.git, path: apps/web, targetRevision: env/dev}}\n---\n"
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: web}\n"
        "spec: {interval: 1m, prune: true, sourceRef: {kind: GitRepository, name: env}, path: ./apps/web}\n"
    )
    kubectl(kubeconfig, "apply", "--server-side", "-f", str(app))

    kube_server.argocd.report("web", namespace=namespace, revision="abc123", health="Degraded", message="crash")
    kube_server.flux.report("web", namespace=namespace, revision="env/dev@sha1:abc123", ready=False)
    application = kube_server.find("applications.argoproj.io", namespace, "web")
    assert application is not None
    assert application["status"]["sync"]["revision"] == "abc123"
    assert application["status"]["health"]["status"] == "Degraded"
    assert application["status"]["operationState"]["message"] == "crash"
    kustomization = kube_server.find("kustomizations.kustomize.toolkit.fluxcd.io", namespace, "web")
    assert kustomization is not None
    assert condition(kustomization, "Ready")["reason"] == "ReconciliationFailed"
    assert "lastAppliedRevision" not in kustomization["status"]
    kube_server.flux.report("web", namespace=namespace, revision="env/dev@sha1:abc123")
    kustomization = kube_server.find("kustomizations.kustomize.toolkit.fluxcd.io", namespace, "web")
    assert kustomization is not None and kustomization["status"]["lastAppliedRevision"] == "env/dev@sha1:abc123"
    with pytest.raises(KeyError):
        kube_server.argocd.report("nope", namespace=namespace, revision="abc123")


def test_a_control_plane_without_its_binaries_says_how_to_build_them(tmp_path: Path) -> None:
    with pytest.raises(TerminalError) as missing:
        ControlPlane(tmp_path, tmp_path / "state").start()
    assert "has no etcd, kube-apiserver, kube-controller-manager: run scripts/kube-build" in str(missing.value)
