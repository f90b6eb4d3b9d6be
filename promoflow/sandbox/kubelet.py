"""A simulated node for a real API server, in the manner of kwok: pods are bound and given a status, none runs.

No scheduler or kubelet can run here. This registers one Ready Node, watches every pod through the API
(the official client) and does what the scheduler and that node's kubelet would write: binds unscheduled
pods to it, reports them Running with per-container status, ready or not per the `behave` rules (the
same as the API stand-in's, `kube_controllers.Behaviours`), finishes run-to-completion pods (Jobs), and
removes pods being deleted once their grace period would start (containers stop at once here).
The real controllers then compute everything else (ReplicaSets, rollout status, ProgressDeadlineExceeded).

- healthy: Running and Ready at once (a Job's pod: Succeeded at once).
- slow: Running, Ready (or Succeeded) `seconds` after it started.
- never_ready: Running, its containers never ready (a Job's pod never finishes).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import threading
from datetime import UTC, datetime
from typing import Any

from promoflow.sandbox.kube_controllers import Behaviours, Rule, pod_images

logger = logging.getLogger(__name__)
NODE = "promoflow-node"
NODE_IP = "10.0.0.1"
POD_NETWORK = ipaddress.ip_network("10.244.0.0/16")
WATCH_SECONDS = 30


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SimulatedKubelet(Behaviours):
    """Binds and runs (on paper) every pod of the cluster on one simulated node; `behave` as the stand-in's."""

    def __init__(self, api_client: Any) -> None:
        """`api_client`: a callable returning an official-client ApiClient with rights over nodes and pods."""
        super().__init__()
        from kubernetes import client

        self._api = api_client()
        self._core: Any = client.CoreV1Api(self._api)  # untyped: plain dict bodies, raw JSON answers
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="simulated-kubelet", daemon=True)
        self._lock = threading.Lock()
        self._started: dict[str, list[threading.Timer]] = {}  # pod uid -> pending status changes
        self._addresses = POD_NETWORK.hosts()
        self._synced = threading.Event()

    def start(self) -> SimulatedKubelet:
        self._register_node()
        self._thread.start()
        if not self._synced.wait(30):
            raise RuntimeError("the simulated kubelet could not list pods within 30 s")
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            for timers in self._started.values():
                for timer in timers:
                    timer.cancel()
            self._started.clear()
        self._thread.join(timeout=0.5)  # an open watch ends with the API server or at its timeout: a daemon
        self._api.close()

    # --- the node ------------------------------------------------------------------------------------------

    def _register_node(self) -> None:
        from kubernetes.client.exceptions import ApiException

        capacity = {"cpu": "16", "memory": "64Gi", "pods": "1000", "ephemeral-storage": "100Gi"}
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE,
                "labels": {
                    "kubernetes.io/hostname": NODE,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "simulated",
                },
            },
        }
        with contextlib.suppress(ApiException):  # already registered (a restart)
            self._core.create_node(node)
        stamp = _stamp()
        status = {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE}],
            "conditions": [
                {
                    "type": kind,
                    "status": value,
                    "reason": reason,
                    "message": "simulated by promoflow",
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                }
                for kind, value, reason in (
                    ("Ready", "True", "KubeletReady"),
                    ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                    ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                    ("PIDPressure", "False", "KubeletHasSufficientPID"),
                )
            ],
            "nodeInfo": {
                "kubeletVersion": "simulated",
                "containerRuntimeVersion": "simulated://0",
                "operatingSystem": "linux",
                "architecture": "amd64",
                **dict.fromkeys(
                    ("machineID", "systemUUID", "bootID", "kernelVersion", "osImage", "kubeProxyVersion"), ""
                ),
            },
        }
        self._core.patch_node_status(NODE, {"status": status}, _content_type="application/merge-patch+json")
        # the not-ready taint admission put on the new node: the node lifecycle controller (not run) lifts it
        self._core.patch_node(NODE, {"spec": {"taints": None}}, _content_type="application/merge-patch+json")

    # --- watching pods -------------------------------------------------------------------------------------

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        version = ""
        while not self._stopping.is_set():
            try:
                if not version:
                    listed = json.loads(self._core.list_pod_for_all_namespaces(_preload_content=False).data)
                    for pod in listed.get("items") or []:
                        self._handle("ADDED", pod)
                    version = listed["metadata"]["resourceVersion"]
                    self._synced.set()
                stream = watch.Watch().stream(
                    self._core.list_pod_for_all_namespaces,
                    resource_version=version,
                    timeout_seconds=WATCH_SECONDS,
                    allow_watch_bookmarks=True,
                    deserialize=False,
                )
                for event in stream:
                    if self._stopping.is_set():
                        return
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._handle(event["type"], event["object"])
            except ApiException as error:
                if error.status == 410:  # too old to resume from: list again
                    version = ""
                elif not self._stopping.wait(0.5):
                    logger.warning("simulated kubelet: watching pods failed: %s", error)
            except Exception as error:  # a dropped connection: watch again from where it was
                if not self._stopping.wait(0.5):
                    logger.warning("simulated kubelet: watching pods failed: %s", error)

    def _handle(self, kind: str, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        uid = meta["uid"]
        if kind == "DELETED":
            self._forget(uid)
            return
        if spec.get("nodeName") not in (None, NODE):
            return
        try:
            if meta.get("deletionTimestamp"):
                self._remove(pod)
            elif not spec.get("nodeName"):
                self._bind(pod)
            elif (pod.get("status") or {}).get("phase", "Pending") == "Pending" and uid not in self._started:
                self._run_pod(pod)
        except Exception as error:  # one pod's failure must not stop the node
            if getattr(error, "status", None) not in (404, 409):  # gone or changed meanwhile: a later event says
                logger.warning("simulated kubelet: %s/%s: %s", meta.get("namespace"), meta["name"], error)

    def _forget(self, uid: str) -> None:
        with self._lock:
            for timer in self._started.pop(uid, []):
                timer.cancel()

    # --- what the scheduler and the kubelet write -------------------------------------------------------------

    def _bind(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
        }
        # the typed client cannot read the Status a binding answers: send it raw
        self._core.create_namespaced_pod_binding(meta["name"], meta["namespace"], binding, _preload_content=False)

    def _remove(self, pod: dict[str, Any]) -> None:
        """The containers are stopped: delete the pod for good, as the kubelet does after the grace period."""
        meta = pod["metadata"]
        self._forget(meta["uid"])
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        self._core.delete_namespaced_pod(meta["name"], meta["namespace"], body=body, _preload_content=False)

    def _run_pod(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        rule = self.rule_for_workload(meta["namespace"], _workload(pod), pod_images(spec))
        completes = spec.get("restartPolicy", "Always") != "Always"
        ip = str(next(self._addresses))
        timers: list[threading.Timer] = []
        with self._lock:
            self._started[meta["uid"]] = timers
        started = _stamp()
        settled = "Succeeded" if completes else "Ready"
        if rule.behaviour == "healthy":
            self._write(pod, ip, started, settled)
            return
        self._write(pod, ip, started, "Running")
        if rule.behaviour == "slow":
            timer = threading.Timer(rule.seconds, self._later, (pod, ip, started, settled, rule))
            timer.daemon = True
            timers.append(timer)
            timer.start()

    def _later(self, pod: dict[str, Any], ip: str, started: str, state: str, rule: Rule) -> None:
        with self._lock:
            if pod["metadata"]["uid"] not in self._started:
                return  # deleted meanwhile
        with contextlib.suppress(Exception):  # gone meanwhile: nothing to report
            self._write(pod, ip, started, state)

    def _write(self, pod: dict[str, Any], ip: str, started: str, state: str) -> None:
        """Report the pod Running (not ready), Ready, or Succeeded."""
        meta, spec = pod["metadata"], pod["spec"]
        ready = state == "Ready"
        finished = state == "Succeeded"
        now = _stamp()
        containers = []
        for container in spec.get("containers") or []:
            if finished:
                current = {
                    "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": now}
                }
            else:
                current = {"running": {"startedAt": started}}
            containers.append(
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": "",
                    "containerID": f"simulated://{meta['uid']}/{container['name']}",
                    "ready": ready,
                    "started": not finished,
                    "restartCount": 0,
                    "state": current,
                }
            )
        not_ready = "PodCompleted" if finished else "ContainersNotReady"
        conditions = [
            ("PodReadyToStartContainers", not finished, ""),
            ("Initialized", True, "PodCompleted" if finished else ""),
            ("Ready", ready, "" if ready else not_ready),
            ("ContainersReady", ready, "" if ready else not_ready),
            ("PodScheduled", True, ""),
        ]
        status = {
            "phase": "Succeeded" if finished else "Running",
            "conditions": [
                {
                    "type": kind,
                    "status": "True" if value else "False",
                    "lastProbeTime": None,
                    "lastTransitionTime": now,
                    **({"reason": reason} if reason else {}),
                }
                for kind, value, reason in conditions
            ],
            "hostIP": NODE_IP,
            "hostIPs": [{"ip": NODE_IP}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": started,
            "containerStatuses": containers,
        }
        self._core.patch_namespaced_pod_status(
            meta["name"],
            meta["namespace"],
            {"status": status},
            _content_type="application/merge-patch+json",
            _preload_content=False,
        )


def _workload(pod: dict[str, Any]) -> str:
    """The name of the workload a pod belongs to: its Deployment, StatefulSet, DaemonSet or Job (or itself)."""
    meta = pod["metadata"]
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    if owner is None:
        return str(meta["name"])
    template_hash = (meta.get("labels") or {}).get("pod-template-hash")
    if owner["kind"] == "ReplicaSet" and template_hash:
        return str(owner["name"]).removesuffix(f"-{template_hash}")  # a Deployment's ReplicaSet: <deployment>-<hash>
    return str(owner["name"])
