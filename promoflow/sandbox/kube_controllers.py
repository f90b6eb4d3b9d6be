"""Simulated workload, Argo CD and Flux controllers, and fault injection, for the Kubernetes API stand-in.

Nothing runs a workload here. Each simulator writes only what a real controller would write (status and the
Deployment's revision annotation from kube-controller-manager, Argo CD's and Flux's status), so clients that
watch the API (`kubectl rollout status`, promoflow's health checks) see realistic progress. They are driven
from Python, never over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import json
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

Obj = dict[str, Any]
Behaviour = Literal["healthy", "slow", "never_ready"]
SyncStatus = Literal["Synced", "OutOfSync", "Unknown"]
HealthStatus = Literal["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"]
OperationPhase = Literal["Running", "Succeeded", "Failed", "Error", "Terminating"]


@dataclass(frozen=True)
class Event:
    """One committed change, as the store tells its watchers and simulators (objects are never mutated)."""

    type: Literal["ADDED", "MODIFIED", "DELETED"]
    resource: str  # plural.group, e.g. "deployments.apps"
    rv: int
    obj: Obj
    old: Obj | None = None


class Objects(Protocol):
    """What the Argo CD and Flux simulators need: the stand-in's store, or a real API server (`control_plane`)."""

    def find(self, resource: str, namespace: str, name: str) -> Obj | None: ...

    def write_status(self, resource: str, namespace: str, name: str, status: Obj, manager: str) -> Obj:
        """Replace the object's status as `manager`; KeyError if there is no such object."""
        ...


class Store(Objects, Protocol):
    """What the workload simulators need from the stand-in's object store."""

    def subscribe(self, listener: Callable[[Event], None]) -> None: ...

    def annotate(self, resource: str, namespace: str, name: str, annotations: dict[str, str], manager: str) -> None:
        """Set annotations on the object as `manager`; KeyError if there is no such object."""
        ...


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def template_hash(obj: Obj) -> str:
    """A pod-template-hash lookalike: stable for one pod template, in Kubernetes' safe alphabet."""
    template = json.dumps((obj.get("spec") or {}).get("template"), sort_keys=True)
    digest = hashlib.sha256(template.encode()).digest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[b % len(alphabet)] for b in digest[:10])


def _images(obj: Obj) -> list[str]:
    return pod_images(((obj.get("spec") or {}).get("template") or {}).get("spec") or {})


def pod_images(pod: Obj) -> list[str]:
    """The images of a pod spec, init containers first."""
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
    return [str(c.get("image", "")) for c in containers if isinstance(c, dict)]


@dataclass(frozen=True)
class Rule:
    pattern: str
    behaviour: Behaviour
    seconds: float


class Behaviours:
    """How simulated pods behave: `behave(pattern, behaviour)` rules, the latest matching one winning.

    `pattern` is matched (fnmatch) against a workload's name, its `namespace/name` and each container
    image; workloads that match no rule are healthy. Rules apply to pods (rollouts) started after they are set.
    """

    def __init__(self) -> None:
        self._rules: list[Rule] = []

    def behave(self, pattern: str, behaviour: Behaviour, *, seconds: float = 2.0) -> None:
        if behaviour not in ("healthy", "slow", "never_ready"):
            raise ValueError(f"unknown rollout behaviour {behaviour!r}: use healthy, slow or never_ready")
        self._rules.append(Rule(pattern, behaviour, seconds))

    def reset(self) -> None:
        self._rules.clear()

    def rule_for_workload(self, namespace: str, name: str, images: list[str]) -> Rule:
        subjects = [name, f"{namespace}/{name}", *images]
        for rule in reversed(self._rules):
            if any(fnmatch.fnmatchcase(subject, rule.pattern) for subject in subjects):
                return rule
        return Rule("*", "healthy", 0.0)


@dataclass(frozen=True)
class _Step:
    """What the simulated pods look like at one moment of a rollout."""

    updated: int  # pods of the new revision
    ready: int  # of which ready
    old: int  # pods of the previous revision still available
    phase: Literal["progressing", "complete", "deadline"]


@dataclass
class _Rollout:
    generation: int
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


class Rollouts(Behaviours):
    """Workload controllers (Deployment, StatefulSet, DaemonSet): each new generation rolls out per the rules.

    - healthy: status reaches replicas == updated == ready == available at once.
    - slow: pods become ready one after another over `seconds`.
    - never_ready: new pods never get ready; after `seconds` a Deployment reports Progressing=False with
      reason ProgressDeadlineExceeded (what `kubectl rollout status` fails on).
    """

    RESOURCES = ("deployments.apps", "statefulsets.apps", "daemonsets.apps")
    MANAGER = "kube-controller-manager"
    REVISION = "deployment.kubernetes.io/revision"

    def __init__(self, store: Store) -> None:
        super().__init__()
        self._store = store
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rollouts: dict[tuple[str, str, str], _Rollout] = {}
        self._available: dict[tuple[str, str, str], int] = {}  # pods of the last finished revision
        self._revisions: dict[tuple[str, str, str], dict[str, int]] = {}  # a Deployment's revision by template
        store.subscribe(self._listen)

    def rule_for(self, obj: Obj) -> Rule:
        meta = obj["metadata"]
        return self.rule_for_workload(meta.get("namespace", ""), meta["name"], _images(obj))

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def stop(self) -> None:
        """Cancel pending steps; call on the event loop's thread."""
        for rollout in self._rollouts.values():
            for timer in rollout.timers:
                timer.cancel()
        self._rollouts.clear()
        self._loop = None

    def _listen(self, event: Event) -> None:
        loop = self._loop
        if event.resource in self.RESOURCES and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_event, event)

    def _on_event(self, event: Event) -> None:
        meta = event.obj["metadata"]
        key = (event.resource, meta.get("namespace", ""), meta["name"])
        current = self._rollouts.get(key)
        if event.type == "DELETED":
            if current:
                for timer in current.timers:
                    timer.cancel()
            self._rollouts.pop(key, None)
            self._available.pop(key, None)
            self._revisions.pop(key, None)
            return
        generation = int(meta.get("generation", 1))
        if current and current.generation >= generation:
            return  # our own status writes, or an event we already planned for
        if current:
            for timer in current.timers:
                timer.cancel()
        if event.resource == "deployments.apps":
            self._revise(key, event.obj)
        rollout = _Rollout(generation)
        self._rollouts[key] = rollout
        assert self._loop is not None
        for delay, step in self._plan(key, event.obj):
            rollout.timers.append(self._loop.call_later(delay, self._write, key, generation, step))

    def _revise(self, key: tuple[str, str, str], obj: Obj) -> None:
        """The deployment controller numbers pod templates: a new (or reinstated) one is the next revision."""
        revisions = self._revisions.setdefault(key, {})
        template = template_hash(obj)
        current = max(revisions.items(), key=lambda item: item[1])[0] if revisions else None
        if template != current:
            revisions[template] = max(revisions.values(), default=0) + 1
        revision = str(revisions[template])
        if ((obj["metadata"].get("annotations") or {}).get(self.REVISION)) != revision:
            with contextlib.suppress(KeyError):
                self._store.annotate(key[0], key[1], key[2], {self.REVISION: revision}, self.MANAGER)

    def _plan(self, key: tuple[str, str, str], obj: Obj) -> list[tuple[float, _Step]]:
        wanted = 1 if key[0] == "daemonsets.apps" else int((obj.get("spec") or {}).get("replicas", 1))
        previous = min(self._available.get(key, 0), wanted)
        rule = self.rule_for(obj)
        if rule.behaviour == "never_ready":
            stuck = _Step(wanted, 0, previous, "progressing")
            return [(0.0, stuck), (rule.seconds, _Step(wanted, 0, previous, "deadline"))]
        if rule.behaviour == "slow" and wanted > 0:
            return [
                (
                    rule.seconds * k / wanted,
                    _Step(k, k, min(previous, wanted - k), "complete" if k == wanted else "progressing"),
                )
                for k in range(wanted + 1)
            ]
        return [(0.0, _Step(wanted, wanted, 0, "complete"))]

    def _write(self, key: tuple[str, str, str], generation: int, step: _Step) -> None:
        resource, namespace, name = key
        obj = self._store.find(resource, namespace, name)
        if obj is None or int(obj["metadata"].get("generation", 1)) != generation:
            return
        builders = {"deployments.apps": _deployment_status, "statefulsets.apps": _statefulset_status}
        status = builders.get(resource, _daemonset_status)(obj, step)
        if step.phase == "complete":
            self._available[key] = step.ready
        with contextlib.suppress(KeyError):  # deleted meanwhile
            self._store.write_status(resource, namespace, name, status, self.MANAGER)


def _condition(previous: Obj, kind: str, status: bool, reason: str, message: str) -> Obj:
    """A condition that keeps lastTransitionTime while its status does not change, as controllers do."""
    value = "True" if status else "False"
    old: Obj = next((c for c in previous.get("conditions") or [] if c.get("type") == kind), {})
    stamp = now()
    transition = old.get("lastTransitionTime", stamp) if old.get("status") == value else stamp
    return {
        "type": kind,
        "status": value,
        "lastUpdateTime": stamp,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    }


def _nonzero(status: Obj) -> Obj:
    return {k: v for k, v in status.items() if v or k == "observedGeneration"}  # Go's omitempty


def _deployment_status(obj: Obj, step: _Step) -> Obj:
    spec = obj.get("spec") or {}
    wanted = int(spec.get("replicas", 1))
    available = step.ready + step.old
    max_unavailable = ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(max_unavailable, str) and max_unavailable.endswith("%"):
        max_unavailable = math.floor(wanted * int(max_unavailable[:-1]) / 100)
    replica_set = f'ReplicaSet "{obj["metadata"]["name"]}-{template_hash(obj)}"'
    previous = obj.get("status") or {}
    progressing = {
        "progressing": (True, "ReplicaSetUpdated", f"{replica_set} is progressing."),
        "complete": (True, "NewReplicaSetAvailable", f"{replica_set} has successfully progressed."),
        "deadline": (False, "ProgressDeadlineExceeded", f"{replica_set} has timed out progressing."),
    }[step.phase]
    minimum = available >= wanted - int(max_unavailable)
    status = _nonzero(
        {
            "observedGeneration": obj["metadata"].get("generation", 1),
            "replicas": step.updated + step.old,
            "updatedReplicas": step.updated,
            "readyReplicas": available,
            "availableReplicas": available,
            "unavailableReplicas": max(0, wanted - available),
        }
    )
    status["conditions"] = [
        _condition(
            previous,
            "Available",
            minimum,
            "MinimumReplicasAvailable" if minimum else "MinimumReplicasUnavailable",
            "Deployment has minimum availability." if minimum else "Deployment does not have minimum availability.",
        ),
        _condition(previous, "Progressing", *progressing),
    ]
    return status


def _statefulset_status(obj: Obj, step: _Step) -> Obj:
    wanted = int((obj.get("spec") or {}).get("replicas", 1))
    revision = f"{obj['metadata']['name']}-{template_hash(obj)}"
    current = revision if step.phase == "complete" else (obj.get("status") or {}).get("currentRevision", revision)
    # pods are replaced one at a time: a new pod that never gets ready stops the rollout, the rest stay old
    updated = step.updated if step.ready >= step.updated else min(step.updated, step.ready + 1)
    ready = step.ready + min(step.old, wanted - updated)
    return {
        **_nonzero(
            {
                "observedGeneration": obj["metadata"].get("generation", 1),
                "replicas": wanted,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "currentReplicas": wanted if step.phase == "complete" else wanted - updated,
                "updatedReplicas": updated,
            }
        ),
        "currentRevision": current,
        "updateRevision": revision,
        "collisionCount": 0,
    }


def _daemonset_status(obj: Obj, step: _Step) -> Obj:
    # one simulated node; the rolling update (maxUnavailable 1, maxSurge 0) removes the old pod first
    available = min(1, step.ready) if step.updated else min(1, step.old)
    return _nonzero(
        {
            "observedGeneration": obj["metadata"].get("generation", 1),
            "currentNumberScheduled": 1,
            "desiredNumberScheduled": 1,
            "numberMisscheduled": 0,
            "numberReady": available,
            "numberAvailable": available,
            "numberUnavailable": 1 - available,
            "updatedNumberScheduled": step.updated,
        }
    )


class ArgoCD:
    """Argo CD's application controller: report an Application's sync and health, as Argo CD would write it.

    Applications have no status subresource, so this writes through the main resource (which, as in a
    real cluster, bumps metadata.generation).
    """

    RESOURCE = "applications.argoproj.io"
    MANAGER = "argocd-application-controller"

    def __init__(self, store: Objects) -> None:
        self._store = store

    def report(
        self,
        name: str,
        *,
        revision: str,
        namespace: str = "argocd",
        sync: SyncStatus = "Synced",
        health: HealthStatus = "Healthy",
        phase: OperationPhase | None = "Succeeded",
        message: str | None = None,
    ) -> Obj:
        """Set `status.sync`, `status.health` and (unless `phase` is None) `status.operationState`."""
        app = self._store.find(self.RESOURCE, namespace, name)
        if app is None:
            raise KeyError(f"no Application {namespace}/{name} in the sandbox cluster")
        spec = app.get("spec") or {}
        stamp = now()
        status: Obj = dict(app.get("status") or {})
        status["sync"] = {
            "status": sync,
            "revision": revision,
            "comparedTo": {"source": spec.get("source", {}), "destination": spec.get("destination", {})},
        }
        status["health"] = {"status": health, "lastTransitionTime": stamp}
        status["reconciledAt"] = stamp
        if phase is not None:
            default_message = {
                "Succeeded": "successfully synced (all tasks run)",
                "Running": "waiting for completion of hook and 0 more resources",
            }.get(phase, "one or more objects failed to apply")
            state: Obj = {
                "operation": {"sync": {"revision": revision}, "initiatedBy": {"automated": True}},
                "phase": phase,
                "message": message or default_message,
                "startedAt": stamp,
                "syncResult": {"revision": revision, "source": spec.get("source", {})},
            }
            if phase != "Running":
                state["finishedAt"] = stamp
            status["operationState"] = state
        return self._store.write_status(self.RESOURCE, namespace, name, status, self.MANAGER)


class Flux:
    """Flux's kustomize-controller: report a Kustomization's Ready condition and applied revision."""

    RESOURCE = "kustomizations.kustomize.toolkit.fluxcd.io"
    MANAGER = "kustomize-controller"

    def __init__(self, store: Objects) -> None:
        self._store = store

    def report(
        self,
        name: str,
        *,
        revision: str,
        namespace: str = "flux-system",
        ready: bool = True,
        reason: str | None = None,
        message: str | None = None,
    ) -> Obj:
        """`revision` as Flux writes it, e.g. "main@sha1:0123abc..."; a failed one keeps lastAppliedRevision."""
        kustomization = self._store.find(self.RESOURCE, namespace, name)
        if kustomization is None:
            raise KeyError(f"no Kustomization {namespace}/{name} in the sandbox cluster")
        previous: Obj = kustomization.get("status") or {}
        status: Obj = {
            "observedGeneration": kustomization["metadata"].get("generation", 1),
            "lastAttemptedRevision": revision,
            "conditions": [
                _condition(
                    previous,
                    "Ready",
                    ready,
                    reason or ("ReconciliationSucceeded" if ready else "ReconciliationFailed"),
                    message or (f"Applied revision: {revision}" if ready else f"Reconciliation of {revision} failed"),
                )
            ],
        }
        applied = revision if ready else previous.get("lastAppliedRevision")
        if applied:
            status["lastAppliedRevision"] = applied
        for condition in status["conditions"]:
            condition.pop("lastUpdateTime")  # metav1.Condition has none
        return self._store.write_status(self.RESOURCE, namespace, name, status, self.MANAGER)


@dataclass
class _Fault:
    status: int
    verb: str | None
    path: str | None
    remaining: int
    retry_after: int | None


class Faults:
    """Injected API failures. Request faults apply to resource requests (not discovery), by verb and path.

    `verb` is a Kubernetes verb (get, list, watch, create, update, patch, delete, deletecollection);
    `path` a substring of the request path, e.g. "/deployments/web".
    """

    def __init__(self, drop_watches: Callable[[], int], expire_watches: Callable[[], int]) -> None:
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._drop = drop_watches
        self._expire = expire_watches

    def fail(
        self,
        status: int = 500,
        *,
        verb: str | None = None,
        path: str | None = None,
        times: int = 1,
        retry_after: int | None = None,
    ) -> None:
        """The next `times` matching requests get `status` with a Status body (and Retry-After if given)."""
        with self._lock:
            self._faults.append(_Fault(status, verb, path, times, retry_after))

    def throttle(
        self, *, retry_after: int = 1, verb: str | None = None, path: str | None = None, times: int = 1
    ) -> None:
        """429 Too Many Requests with a Retry-After header, as API priority and fairness answers."""
        self.fail(429, verb=verb, path=path, times=times, retry_after=retry_after)

    def drop_watches(self) -> int:
        """Cut every open watch connection mid-stream (no final chunk); returns how many were open."""
        return self._drop()

    def expire_watches(self) -> int:
        """Compact the event history and end open watches with a 410 Expired event.

        Resuming from any resourceVersion older than now then gets 410 too, as after an etcd compaction.
        """
        return self._expire()

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, verb: str, path: str) -> tuple[int, int | None] | None:
        """The (status, retry_after) to answer this request with, consuming one use of the first match."""
        with self._lock:
            for fault in self._faults:
                if (fault.verb in (None, verb)) and (fault.path is None or fault.path in path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault.status, fault.retry_after
        return None
