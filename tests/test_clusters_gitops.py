"""The argocd and flux targets against the Kubernetes API stand-in, its simulated controllers driven from a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from promoflow.clusters.gitops import (
    REQUESTED_AT,
    request_argocd_sync,
    request_flux_reconcile,
    wait_argocd,
    wait_flux,
)
from promoflow.clusters.kubernetes import KubernetesTarget, ObjectRef
from promoflow.errors import TerminalError, TransientError
from promoflow.sandbox.kube import KubeStandIn

MERGED = "4f1c2a9e7b3d5f608a1b2c3d4e5f60718293a4b5"
OLD = "0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b"
APP = ObjectRef("argoproj.io/v1alpha1", "Application", "argocd", "web")
KS = ObjectRef("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "flux-system", "web")


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeStandIn]:
    with KubeStandIn() as server:
        yield server


@pytest.fixture
def target(kube: KubeStandIn, tmp_path: Path) -> Iterator[KubernetesTarget]:
    kube.cluster.faults.clear()
    with KubernetesTarget(str(kube.write_kubeconfig(tmp_path / "kubeconfig", "sandbox")), "sandbox") as cluster:
        namespaces = [namespace("argocd"), namespace("flux-system")]
        applied = cluster.apply("web", "prod", [*namespaces, application(), kustomization()]).applied
        yield cluster
        cluster.apply("web", "prod", namespaces, previous=applied)  # prune: the next test starts without status


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def application() -> dict[str, Any]:
    return {
        "apiVersion": APP.api_version,
        "kind": APP.kind,
        "metadata": {"name": APP.name, "namespace": APP.namespace},
        "spec": {
            "project": "default",
            "source": {"repoURL": "https://git.example/shop.git", "targetRevision": "env/prod", "path": "web"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "shop"},
        },
    }


def kustomization() -> dict[str, Any]:
    return {
        "apiVersion": KS.api_version,
        "kind": KS.kind,
        "metadata": {"name": KS.name, "namespace": KS.namespace},
        "spec": {
            "interval": "10m",
            "path": "./web",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "shop"},
        },
    }


@contextmanager
def controller(*steps: tuple[float, Callable[[], object]]) -> Iterator[None]:
    """Run each step `delay` seconds after the previous one, in a thread, as a controller would act meanwhile."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            for delay, step in steps:
                time.sleep(delay)
                step()
        except BaseException as error:  # re-raised in the test's thread
            failures.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(timeout=10)
    if failures:
        raise failures[0]


# --- Argo CD -------------------------------------------------------------------------------------------------


def test_argocd_sync_request_writes_the_operation(kube: KubeStandIn, target: KubernetesTarget) -> None:
    request_argocd_sync(target, "web", revision=MERGED)
    live = target.get(APP)
    assert live is not None
    assert live["operation"] == {"initiatedBy": {"username": "promoflow"}, "sync": {"revision": MERGED}}
    assert live["spec"]["source"]["targetRevision"] == "env/prod"  # a merge patch: the rest untouched


def test_argocd_healthy_at_the_merged_revision_after_progressing(kube: KubeStandIn, target: KubernetesTarget) -> None:
    argocd = kube.cluster.argocd
    argocd.report("web", revision=OLD)  # the release being replaced, healthy
    started = time.monotonic()
    with controller(
        (0.3, lambda: argocd.report("web", revision=MERGED, sync="Synced", health="Progressing", phase="Running")),
        (0.3, lambda: argocd.report("web", revision=MERGED)),
    ):
        result = wait_argocd(target, "web", "argocd", MERGED, timeout_seconds=10, poll_seconds=0.05)
    assert result.healthy, result.message
    assert time.monotonic() - started >= 0.6
    assert result.observed == {
        "revision": MERGED,
        "sync": "Synced",
        "health": "Healthy",
        "phase": "Succeeded",
        "message": "successfully synced (all tasks run)",
    }
    assert wait_argocd(target, "web", "argocd", MERGED[:7], timeout_seconds=0).healthy  # abbreviated sha


def test_argocd_multi_source_revisions(kube: KubeStandIn, target: KubernetesTarget) -> None:
    status = {"sync": {"status": "Synced", "revisions": [OLD, MERGED]}, "health": {"status": "Healthy"}}
    kube.cluster.write_status("applications.argoproj.io", "argocd", "web", status, "argocd-application-controller")
    assert wait_argocd(target, "web", "argocd", MERGED, timeout_seconds=0).healthy


def test_argocd_old_revision_healthy_is_not_accepted(kube: KubeStandIn, target: KubernetesTarget) -> None:
    kube.cluster.argocd.report("web", revision=OLD)
    result = wait_argocd(target, "web", "argocd", MERGED, timeout_seconds=0.5, poll_seconds=0.1)
    assert not result.healthy
    assert result.message.startswith("not synced and healthy within 0.5 s: Application argocd/web: sync Synced at")
    assert OLD in result.message
    assert result.observed["revision"] == OLD


def test_argocd_degraded_fails_fast_with_its_message(kube: KubeStandIn, target: KubernetesTarget) -> None:
    why = 'Deployment shop/web: ReplicaSet "web-7d9f" has timed out progressing.'
    with controller(
        (0.2, lambda: kube.cluster.argocd.report("web", revision=MERGED, health="Degraded", message=why)),
    ):
        started = time.monotonic()
        result = wait_argocd(target, "web", "argocd", MERGED, timeout_seconds=10, poll_seconds=0.05)
    assert time.monotonic() - started < 3
    assert not result.healthy
    assert result.message == f"Application argocd/web is Degraded at {MERGED}: {why}"


def test_argocd_failed_operation_fails_fast(kube: KubeStandIn, target: KubernetesTarget) -> None:
    why = 'one or more objects failed to apply, reason: Deployment.apps "web" is invalid'
    report = kube.cluster.argocd.report
    with controller((0.2, lambda: report("web", revision=MERGED, sync="OutOfSync", phase="Failed", message=why))):
        started = time.monotonic()
        result = wait_argocd(target, "web", "argocd", MERGED, timeout_seconds=10, poll_seconds=0.05)
    assert time.monotonic() - started < 3
    assert not result.healthy
    assert result.message == f"Application argocd/web: sync of {MERGED} failed: {why}"
    assert result.observed["phase"] == "Failed"


def test_argocd_failure_of_an_older_revision_is_not_this_promotions(
    kube: KubeStandIn, target: KubernetesTarget
) -> None:
    kube.cluster.argocd.report("web", revision=OLD, health="Degraded", phase="Failed")
    result = wait_argocd(target, "web", "argocd", MERGED, timeout_seconds=0.3, poll_seconds=0.1)
    assert not result.healthy
    assert result.message.startswith("not synced and healthy within 0.3 s")


def test_argocd_times_out_with_what_was_last_seen(kube: KubeStandIn, target: KubernetesTarget) -> None:
    kube.cluster.argocd.report("web", revision=MERGED, health="Progressing", phase="Running")
    started = time.monotonic()
    result = wait_argocd(target, "web", "argocd", MERGED, timeout_seconds=0.5, poll_seconds=0.1)
    assert 0.5 <= time.monotonic() - started < 2
    assert not result.healthy
    assert result.message == (
        f"not synced and healthy within 0.5 s: Application argocd/web: sync Synced at {MERGED}, "
        "health Progressing, last operation Running"
    )


def test_argocd_missing_application_and_api_errors(kube: KubeStandIn, target: KubernetesTarget) -> None:
    with pytest.raises(TerminalError, match=r"Application argocd/nope: .*\(404\)"):
        request_argocd_sync(target, "nope", revision=MERGED)
    kube.cluster.faults.fail(500, verb="patch", path="/applications/web")
    with pytest.raises(TransientError, match="Application argocd/web: the API server answered 500"):
        request_argocd_sync(target, "web", revision=MERGED)
    result = wait_argocd(target, "nope", "argocd", MERGED, timeout_seconds=0)
    assert not result.healthy
    assert result.message.endswith("Application argocd/nope does not exist (yet)")


# --- Flux ----------------------------------------------------------------------------------------------------


def test_flux_reconcile_request_writes_the_annotation(target: KubernetesTarget) -> None:
    before = datetime.now(UTC)
    request_flux_reconcile(target, "web")
    live = target.get(KS)
    assert live is not None
    requested = datetime.fromisoformat(live["metadata"]["annotations"][REQUESTED_AT])
    assert before - timedelta(seconds=1) <= requested <= datetime.now(UTC)
    assert live["spec"]["path"] == "./web"


def test_flux_ready_at_the_merged_sha(kube: KubeStandIn, target: KubernetesTarget) -> None:
    flux = kube.cluster.flux
    flux.report("web", revision=f"env/prod@sha1:{OLD}")
    with controller((0.4, lambda: flux.report("web", revision=f"env/prod@sha1:{MERGED}"))):
        started = time.monotonic()
        result = wait_flux(target, "web", "flux-system", MERGED, timeout_seconds=10, poll_seconds=0.05)
    assert result.healthy, result.message
    assert time.monotonic() - started >= 0.4
    assert result.message == f"Kustomization flux-system/web ready at env/prod@sha1:{MERGED}"
    assert result.observed["lastAppliedRevision"] == f"env/prod@sha1:{MERGED}"
    assert wait_flux(target, "web", "flux-system", MERGED[:10], timeout_seconds=0).healthy


def test_flux_reconciliation_failed_fails_fast_with_its_message(kube: KubeStandIn, target: KubernetesTarget) -> None:
    flux = kube.cluster.flux
    flux.report("web", revision=f"env/prod@sha1:{OLD}")
    why = 'Deployment/shop/web dry-run failed: spec.replicas: Invalid value: "two"'
    with controller((0.2, lambda: flux.report("web", revision=f"env/prod@sha1:{MERGED}", ready=False, message=why))):
        started = time.monotonic()
        result = wait_flux(target, "web", "flux-system", MERGED, timeout_seconds=10, poll_seconds=0.05)
    assert time.monotonic() - started < 3
    assert not result.healthy
    assert result.message == (
        f"Kustomization flux-system/web failed at env/prod@sha1:{MERGED} (ReconciliationFailed): {why}"
    )
    assert result.observed["lastAppliedRevision"] == f"env/prod@sha1:{OLD}"  # Flux keeps the last good one


def test_flux_stale_applied_revision_times_out(kube: KubeStandIn, target: KubernetesTarget) -> None:
    kube.cluster.flux.report("web", revision=f"env/prod@sha1:{OLD}")
    result = wait_flux(target, "web", "flux-system", MERGED, timeout_seconds=0.5, poll_seconds=0.1)
    assert not result.healthy
    assert result.message == (
        "not synced and healthy within 0.5 s: Kustomization flux-system/web: Ready True "
        f"(ReconciliationSucceeded: Applied revision: env/prod@sha1:{OLD}), last applied env/prod@sha1:{OLD}"
    )
