"""The `argocd` and `flux` targets end to end: promoflow merges, the (simulated) controller syncs, promoflow
waits for the merged commit to be reported healthy, and rolls back when the controller reports it degraded.

The Application and the Kustomization live in a real kube-apiserver (installed from Argo CD's and Flux's own
CRDs) or in promoflow's stand-in; their status is written as the controllers would (`kube_controllers`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.conftest import Sandbox
from tests.kube_servers import KubeServer

pytestmark = pytest.mark.prefect
REQUESTER = {"PROMOFLOW_USER": "rita"}
APPLICATION = {
    "apiVersion": "argoproj.io/v1alpha1",
    "kind": "Application",
    "spec": {
        "project": "default",
        "destination": {"server": "https://kubernetes.default.svc", "namespace": "web"},
        "source": {
            "repoURL": "https://git.example.com/environments.git",
            "path": "apps/web",
            "targetRevision": "env/dev",
        },
    },
}
KUSTOMIZATION = {
    "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
    "kind": "Kustomization",
    "spec": {
        "interval": "1m",
        "prune": True,
        "path": "./apps/web",
        "sourceRef": {"kind": "GitRepository", "name": "env"},
    },
}


class Controller:
    """Plays Argo CD or Flux: reports each merged promotion's commit, degraded for the releases it is told to."""

    def __init__(self, sandbox: Sandbox, kube: KubeServer, target: str, namespace: str) -> None:
        self.sandbox, self.kube, self.target, self.namespace = sandbox, kube, target, namespace
        self.broken: set[str] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        reported: set[int] = set()
        db = self.sandbox.db()
        while not self.stop.wait(0.1):
            for promotion in db.promotions("web", "dev"):
                if promotion.merge_commit and promotion.id not in reported:
                    reported.add(promotion.id)  # type: ignore[arg-type]
                    label = db.get_release(promotion.release_id).label
                    self.report(promotion.merge_commit, healthy=label not in self.broken)

    def report(self, sha: str, healthy: bool) -> None:
        if self.target == "argocd":
            self.kube.argocd.report(
                "web-dev", namespace=self.namespace, revision=sha, health="Healthy" if healthy else "Degraded",
                message=None if healthy else "Deployment web: pods crash-looping",
            )  # fmt: skip
        else:
            self.kube.flux.report(
                "web-dev", namespace=self.namespace, revision=f"env/dev@sha1:{sha}", ready=healthy,
                reason="ReconciliationSucceeded" if healthy else "HealthCheckFailed",
                message="Applied revision" if healthy else "Deployment/default/web status: 'Failed'",
            )  # fmt: skip


@pytest.fixture(params=["argocd", "flux"])
def controller(
    request: pytest.FixtureRequest, sandbox: Sandbox, prefect_api: str, kube_server: KubeServer
) -> Iterator[Controller]:
    target = request.param
    namespace = kube_server.namespace(target)
    kubeconfig = kube_server.write_kubeconfig(sandbox.base / "sandbox.kubeconfig", context="sandbox")
    from promoflow.clusters.kubernetes import KubernetesTarget

    kind = APPLICATION if target == "argocd" else KUSTOMIZATION
    with KubernetesTarget(str(kubeconfig), "sandbox") as cluster:
        cluster.apply("web", "dev", [{**kind, "metadata": {"name": "web-dev", "namespace": namespace}}])
    sandbox.edit_config(
        "    branch: env/dev\n",
        f"    branch: env/dev\n    cluster: {{target: {target}, name: web-dev, namespace: {namespace}, "
        "kubeconfig: sandbox.kubeconfig, context: sandbox, rollout_timeout_seconds: 60}\n",
    )
    played = Controller(sandbox, kube_server, target, namespace)
    played.thread.start()
    yield played
    played.stop.set()
    played.thread.join()


def test_waits_for_the_controller_and_rolls_back_what_it_reports_degraded(controller: Controller) -> None:
    sandbox = controller.sandbox
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0

    sandbox.publish("1.3.0")
    controller.broken.add("1.3.0")
    failed = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    expected = "pods crash-looping" if controller.target == "argocd" else "HealthCheckFailed"
    assert f"{controller.target} did not sync" in failed.stderr, failed.stderr
    assert expected in failed.stderr, failed.stderr

    entries = {(p["kind"], p["release"]["label"]): p for p in sandbox.cli_json("history", "web")}  # type: ignore[union-attr, index]
    good, bad = entries[("promotion", "1.2.0")], entries[("promotion", "1.3.0")]
    verify = next(s for s in good["steps"] if s["name"] == "verify")
    assert verify["detail"]["sync"]["healthy"] is True
    assert bad["state"] == "rolled_back"
    assert entries[("rollback", "1.2.0")]["state"] == "succeeded"
    if controller.target == "argocd":
        application = controller.kube.find("applications.argoproj.io", controller.namespace, "web-dev")
        assert application is not None and application["operation"]["initiatedBy"]["username"] == "promoflow"
    else:
        kustomization = controller.kube.find(
            "kustomizations.kustomize.toolkit.fluxcd.io", controller.namespace, "web-dev"
        )
        assert kustomization is not None
        assert "reconcile.fluxcd.io/requestedAt" in kustomization["metadata"]["annotations"]
