"""The `argocd` and `flux` cluster targets: after the merge, ask the controller to sync, then wait for it.

promoflow applies nothing itself here: the controller pulls the environment branch. A promotion is
applied when the controller reports the merged commit synced and healthy, and failed as soon as the
controller reports that commit failed (waiting longer cannot help); its own message is passed on.
An older commit reported healthy never counts: that is the release being replaced.

The requests are what `argocd app sync` and `flux reconcile` send through the API: a merge patch of the
Application's `operation`, and the `reconcile.fluxcd.io/requestedAt` annotation.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from promoflow.clusters.health import ObjectReader
from promoflow.clusters.kubernetes import KubernetesTarget, ObjectRef

APPLICATION = "argoproj.io/v1alpha1", "Application"
KUSTOMIZATION = "kustomize.toolkit.fluxcd.io/v1", "Kustomization"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
# Ready=False reasons for which the kustomize-controller has finished with a revision; others (e.g.
# DependencyNotReady, ArtifactFailed, Progressing) may still turn Ready.
FLUX_FAILED_REASONS = frozenset({"ReconciliationFailed", "BuildFailed", "HealthCheckFailed", "PruneFailed"})
ARGOCD_FAILED_PHASES = ("Failed", "Error")
_REVISION_SEPARATORS = re.compile(r"[@:/]")
State = Literal["healthy", "progressing", "failed"]


@dataclass(frozen=True)
class SyncResult:
    healthy: bool
    message: str  # what the controller last reported, with its own message on failure
    observed: dict[str, Any] = field(default_factory=dict)  # the status fields judged, for records and artifacts

    def as_dict(self) -> dict[str, object]:
        return {"healthy": self.healthy, "message": self.message, "observed": self.observed}


# --- Argo CD -------------------------------------------------------------------------------------------------


def request_argocd_sync(target: KubernetesTarget, name: str, namespace: str = "argocd", *, revision: str) -> None:
    """Ask Argo CD to sync Application `namespace/name` to `revision` now, instead of at its next poll."""
    operation = {"initiatedBy": {"username": "promoflow"}, "sync": {"revision": revision}}
    target.merge_patch(ObjectRef(*APPLICATION, namespace, name), {"operation": operation})


def wait_argocd(
    target: ObjectReader,
    name: str,
    namespace: str,
    revision: str,
    timeout_seconds: float,
    poll_seconds: float = 0.2,
) -> SyncResult:
    """Wait until Argo CD reports `revision` (a commit sha, or its prefix) Synced and Healthy."""
    ref = ObjectRef(*APPLICATION, namespace, name)
    return _wait(target, ref, lambda app: argocd_state(app, ref, revision), timeout_seconds, poll_seconds)


def argocd_state(app: dict[str, Any] | None, ref: ObjectRef, revision: str) -> tuple[State, str, dict[str, Any]]:
    """Where Argo CD is with `revision` of this Application, a message saying so, and what that was judged on."""
    if app is None:
        return "progressing", f"{ref} does not exist (yet)", {}
    status = app.get("status") or {}
    sync, health = status.get("sync") or {}, status.get("health") or {}
    operation = status.get("operationState") or {}
    synced = _revisions(sync)
    operated = _revisions(operation.get("syncResult") or {}) or _revisions(
        (operation.get("operation") or {}).get("sync") or {}
    )
    observed = {
        "revision": synced[0] if len(synced) == 1 else synced,
        "sync": sync.get("status"),
        "health": health.get("status"),
        "phase": operation.get("phase"),
        "message": operation.get("message"),
    }
    at_revision = _matches(synced, revision)
    if operation.get("phase") in ARGOCD_FAILED_PHASES and _matches(operated, revision):
        return "failed", f"{ref}: sync of {revision} {operation['phase'].lower()}: {operation.get('message')}", observed
    if health.get("status") == "Degraded" and at_revision:
        return "failed", f"{ref} is Degraded at {revision}: {_degraded_message(status)}", observed
    seen = f"{ref}: sync {sync.get('status') or 'Unknown'} at {', '.join(synced) or 'no revision'}"
    seen += f", health {health.get('status') or 'Unknown'}"
    if operation.get("phase"):
        seen += f", last operation {operation['phase']}"
    if at_revision and sync.get("status") == "Synced" and health.get("status") == "Healthy":
        return "healthy", f"{ref} synced and healthy at {revision}", observed
    return "progressing", seen, observed


def _revisions(section: dict[str, Any]) -> list[str]:
    """`revision`, or `revisions` for a multi-source Application."""
    many = section.get("revisions")
    if many:
        return [str(r) for r in many if r]
    return [str(section["revision"])] if section.get("revision") else []


def _degraded_message(status: dict[str, Any]) -> str:
    """Argo CD's app-level health has at most a short message; the degraded resources say why."""
    messages = [str((status.get("health") or {}).get("message") or "")]
    for resource in status.get("resources") or []:
        health = resource.get("health") or {}
        if health.get("status") == "Degraded":
            where = f"{resource.get('namespace')}/" if resource.get("namespace") else ""
            messages.append(f"{resource.get('kind')} {where}{resource.get('name')}: {health.get('message') or ''}")
    messages.append(str((status.get("operationState") or {}).get("message") or ""))
    return "; ".join(m.rstrip(": ") for m in messages if m) or "no message from Argo CD"


# --- Flux ----------------------------------------------------------------------------------------------------


def request_flux_reconcile(target: KubernetesTarget, name: str, namespace: str = "flux-system") -> None:
    """Ask Flux to reconcile Kustomization `namespace/name` now, instead of at its next interval."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # RFC 3339, as `flux reconcile` writes
    body = {"metadata": {"annotations": {REQUESTED_AT: stamp}}}
    target.merge_patch(ObjectRef(*KUSTOMIZATION, namespace, name), body)


def wait_flux(
    target: ObjectReader,
    name: str,
    namespace: str,
    revision: str,
    timeout_seconds: float,
    poll_seconds: float = 0.2,
) -> SyncResult:
    """Wait until Flux reports `revision` (a commit sha, or its prefix) applied and the Kustomization Ready."""
    ref = ObjectRef(*KUSTOMIZATION, namespace, name)
    return _wait(target, ref, lambda ks: flux_state(ks, ref, revision), timeout_seconds, poll_seconds)


def flux_state(ks: dict[str, Any] | None, ref: ObjectRef, revision: str) -> tuple[State, str, dict[str, Any]]:
    """Where Flux is with `revision` of this Kustomization, a message saying so, and what that was judged on."""
    if ks is None:
        return "progressing", f"{ref} does not exist (yet)", {}
    status = ks.get("status") or {}
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    applied, attempted = status.get("lastAppliedRevision"), status.get("lastAttemptedRevision")
    observed = {
        "ready": ready.get("status"),
        "reason": ready.get("reason"),
        "message": ready.get("message"),
        "lastAppliedRevision": applied,
        "lastAttemptedRevision": attempted,
    }
    if ready.get("status") == "True" and _matches([_flux_sha(applied)], revision):
        return "healthy", f"{ref} ready at {applied}", observed
    if (
        ready.get("status") == "False"
        and ready.get("reason") in FLUX_FAILED_REASONS
        and _matches([_flux_sha(attempted)], revision)
    ):
        return "failed", f"{ref} failed at {attempted} ({ready['reason']}): {ready.get('message')}", observed
    seen = f"{ref}: Ready {ready.get('status') or 'Unknown'}"
    if ready.get("reason"):
        seen += f" ({ready['reason']}: {ready.get('message')})"
    return "progressing", f"{seen}, last applied {applied or 'nothing'}", observed


def _flux_sha(revision: Any) -> str:
    """The commit of a Flux revision: `main@sha1:<sha>` (Flux 2.x), `main/<sha>` (older)."""
    return _REVISION_SEPARATORS.split(str(revision or ""))[-1]


# --- shared --------------------------------------------------------------------------------------------------


def _matches(reported: Iterable[str], revision: str) -> bool:
    """Controllers report full shas; promoflow may hold an abbreviated one."""
    wanted = revision.strip().lower()
    return bool(wanted) and any(r.lower().startswith(wanted) for r in reported if r)


def _wait(
    target: ObjectReader,
    ref: ObjectRef,
    judge: Callable[[dict[str, Any] | None], tuple[State, str, dict[str, Any]]],
    timeout_seconds: float,
    poll_seconds: float,
) -> SyncResult:
    deadline = time.monotonic() + timeout_seconds
    while True:
        state, message, observed = judge(target.get(ref))
        if state != "progressing":
            return SyncResult(state == "healthy", message, observed)
        if time.monotonic() >= deadline:
            return SyncResult(False, f"not synced and healthy within {timeout_seconds:g} s: {message}", observed)
        time.sleep(poll_seconds)
