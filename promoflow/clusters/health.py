"""Rollout status of applied workloads: the verification of an environment whose cluster target is `kubernetes`.

The rules are `kubectl rollout status`'s: a workload is rolled out when its controller has observed the
latest generation and every desired replica is updated, ready and available. A Deployment the controller
gave up on (Progressing=False, ProgressDeadlineExceeded) fails at once: waiting longer cannot help. Except
when that condition is older than the change: rolled back to a ReplicaSet that is still available, a real
deployment controller keeps the failed rollout's condition until the newer pods are gone, and `kubectl rollout
status` would fail a rollback that is about to succeed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from promoflow.clusters.kubernetes import ObjectRef, progress_deadline_exceeded

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
State = Literal["rolled_out", "progressing", "failed"]


class ObjectReader(Protocol):
    def get(self, ref: ObjectRef) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class RolloutResult:
    ref: ObjectRef
    healthy: bool
    message: str  # what the controller last reported, in kubectl's words

    def as_dict(self) -> dict[str, object]:
        return {"object": str(self.ref), "healthy": self.healthy, "message": self.message}


def rollout_status(
    target: ObjectReader,
    refs: Sequence[ObjectRef],
    timeout_seconds: float,
    poll_seconds: float = 0.2,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    stale_deadlines: Mapping[ObjectRef, str] | None = None,
) -> list[RolloutResult]:
    """Wait until every workload in `refs` is rolled out; other kinds are not checked.

    `stale_deadlines`: the progress deadline conditions (by lastUpdateTime) the apply found already there.

    Stops at the first failure (a promotion fails as a whole), reporting the workloads still rolling out
    as unhealthy with what was last seen; on timeout, likewise for every workload not yet rolled out.
    """
    pending = {ref: "not checked yet" for ref in refs if ref.kind in WORKLOAD_KINDS}
    results: dict[ObjectRef, RolloutResult] = {}
    deadline = clock() + timeout_seconds
    while pending:
        for ref in list(pending):
            state, message = workload_state(target.get(ref), ref, (stale_deadlines or {}).get(ref))
            if state == "progressing":
                pending[ref] = message
                continue
            results[ref] = RolloutResult(ref, state == "rolled_out", message)
            del pending[ref]
            if state == "failed":
                return _ordered(refs, results, pending, f"stopped waiting after {ref} failed")
        if pending and clock() >= deadline:
            return _ordered(refs, results, pending, f"not rolled out within {timeout_seconds:g} s")
        if pending:
            sleep(poll_seconds)
    return _ordered(refs, results, pending, "")


def _ordered(
    refs: Sequence[ObjectRef], results: dict[ObjectRef, RolloutResult], pending: dict[ObjectRef, str], why: str
) -> list[RolloutResult]:
    for ref, last_seen in pending.items():
        results[ref] = RolloutResult(ref, False, f"{why}: {last_seen}")
    return [results[ref] for ref in refs if ref in results]


def workload_state(obj: dict[str, Any] | None, ref: ObjectRef, stale_deadline: str | None = None) -> tuple[State, str]:
    """Where one workload's rollout is, with a message saying so.

    A progress deadline condition last updated at `stale_deadline` was there before the change: not a failure.
    """
    if obj is None:
        return "progressing", f"{ref} does not exist (yet)"
    metadata, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    generation = metadata.get("generation") or 0
    if (status.get("observedGeneration") or 0) < generation:
        return "progressing", f"waiting for the {ref.kind} controller to observe generation {generation}"
    condition = progress_deadline_exceeded(obj) if ref.kind == "Deployment" else None
    if condition and (stale_deadline is None or str(condition.get("lastUpdateTime") or "") != stale_deadline):
        return "failed", f"{ref} exceeded its progress deadline: {condition.get('message', '')}".rstrip(": ")
    if ref.kind == "DaemonSet":
        desired = status.get("desiredNumberScheduled") or 0
        counts = {
            "updated": status.get("updatedNumberScheduled") or 0,
            "available": status.get("numberAvailable") or 0,
        }
    else:
        desired = spec.get("replicas", 1)
        counts = {
            "updated": status.get("updatedReplicas") or 0,
            "ready": status.get("readyReplicas") or 0,
            "available": status.get("availableReplicas") or 0,
        }
    for what, count in counts.items():
        if count != desired:
            return "progressing", f"{ref}: {count} of {desired} replicas {what}"
    if ref.kind == "Deployment" and (status.get("replicas") or 0) > desired:
        return "progressing", f"{ref}: {status['replicas'] - desired} old replicas pending termination"
    return "rolled_out", f"{ref} rolled out: {desired} of {desired} replicas available"
