"""What the API server's registry does per kind around a write (pkg/registry/*/strategy.go, v1.37), and admission.

On create the status is reset (and set where the kind starts with one), a Service gets its cluster IP, a Job
its selector and pod labels, a DaemonSet its template generation, a claim its protection finalizer. On
update a Service keeps what was allocated and a Namespace its finalizers. On delete a Namespace turns
Terminating and a CRD takes its cleanup finalizer, each then finished by a controller.
"""

from __future__ import annotations

import base64
import itertools
from typing import TYPE_CHECKING, Any

from promoflow.sandbox.kube.errors import not_found
from promoflow.sandbox.kube.resources import ResourceType

if TYPE_CHECKING:
    from promoflow.sandbox.kube.store import Cluster

Obj = dict[str, Any]
_ips = itertools.count(1)
_node_ports = itertools.count(30000)
PROTECTION = {
    "PersistentVolumeClaim": "kubernetes.io/pvc-protection",
    "PersistentVolume": "kubernetes.io/pv-protection",
}
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"
ALLOCATED = ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "healthCheckNodePort")


def decoded(rt: ResourceType, obj: Obj) -> Obj:
    """What conversion to the internal version does: a Secret's stringData joins its data."""
    if rt.kind == "Secret" and not rt.custom and isinstance(obj.get("stringData"), dict):
        data = dict(obj.get("data") or {})
        data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in obj.pop("stringData").items()})
        obj["data"] = data
    return obj


def admit_namespace(cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
    """NamespaceLifecycle admission: no content in a namespace that does not exist or is being deleted."""
    from promoflow.sandbox.kube.store import forbidden_terminating

    meta = obj["metadata"]
    namespaces = cluster.resource("namespaces")
    found = cluster.find("namespaces", "", meta.get("namespace") or "")
    if found is None:
        raise not_found(namespaces, meta.get("namespace") or "")
    if found["metadata"].get("deletionTimestamp"):
        raise forbidden_terminating(rt, meta.get("name", ""), meta["namespace"])


def allocate_ip() -> str:
    n = next(_ips)
    return f"10.96.{n // 250}.{n % 250 + 1}"


def prepare_create(cluster: Cluster, rt: ResourceType, obj: Obj) -> None:
    if rt.status:
        obj.pop("status", None)
    if rt.custom:
        return
    meta = obj["metadata"]
    if rt.kind == "Namespace":
        obj["spec"] = {"finalizers": ["kubernetes"]}
    elif rt.kind == "Service":
        spec = obj.setdefault("spec", {})
        if spec.get("type") != "ExternalName":
            if not spec.get("clusterIP"):
                spec["clusterIP"] = allocate_ip()
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
            if spec["clusterIP"] != "None" or spec.get("selector"):
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            for port in spec.get("ports") or []:
                port.setdefault("nodePort", next(_node_ports))
        obj["status"] = {"loadBalancer": {}}
    elif rt.kind == "Job" and not (obj.get("spec") or {}).get("manualSelector"):
        spec = obj.setdefault("spec", {})
        template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
        labels = template_meta.setdefault("labels", {})
        for key in ("job-name", "batch.kubernetes.io/job-name"):
            labels.setdefault(key, meta["name"])
        for key in ("controller-uid", "batch.kubernetes.io/controller-uid"):
            labels.setdefault(key, meta["uid"])
        selector = spec.get("selector") or {}
        selector.setdefault("matchLabels", {}).setdefault("batch.kubernetes.io/controller-uid", meta["uid"])
        spec["selector"] = selector
    elif rt.kind in PROTECTION:
        finalizers = meta.setdefault("finalizers", [])
        if PROTECTION[rt.kind] not in finalizers:
            finalizers.append(PROTECTION[rt.kind])
    elif rt.kind == "CustomResourceDefinition":
        spec = obj.get("spec") or {}
        storage = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
        obj["status"] = {"conditions": None, "acceptedNames": {"plural": "", "kind": ""}, "storedVersions": storage}


def prepare_update(rt: ResourceType, obj: Obj, old: Obj, sub: str | None) -> None:
    if rt.custom or sub is not None:
        return
    if rt.kind == "Service":
        spec, before = obj.setdefault("spec", {}), old.get("spec") or {}
        for key in ALLOCATED:
            if key in before and not spec.get(key):
                spec[key] = before[key]
        for port in spec.get("ports") or []:
            match: Obj = next((p for p in before.get("ports") or [] if p.get("port") == port.get("port")), {})
            if "nodePort" in match and spec.get("type") in ("NodePort", "LoadBalancer"):
                port.setdefault("nodePort", match["nodePort"])
    elif rt.kind == "Namespace":
        obj["spec"] = old.get("spec") or {}


def new_generation(rt: ResourceType, old: Obj, new: Obj) -> bool:
    """Whether a write to the main resource is a new generation: anything but metadata (and a status its
    subresource isolates) changed, or for a Deployment its annotations (it copies them to its ReplicaSets)."""

    def desired(obj: Obj) -> Obj:
        return {
            k: v
            for k, v in obj.items()
            if k not in ("metadata", "apiVersion", "kind") and not (k == "status" and rt.status)
        }

    if desired(old) != desired(new):
        return True
    annotations = [(o["metadata"].get("annotations") or {}) for o in (old, new)]
    return rt.kind == "Deployment" and not rt.custom and annotations[0] != annotations[1]


def template_generation(rt: ResourceType, obj: Obj, old: Obj | None) -> None:
    """A DaemonSet's template generation, which apps/v1 carries as an annotation (owned by the writer)."""
    if rt.kind != "DaemonSet" or rt.custom:
        return
    key = "deprecated.daemonset.template.generation"
    generation = 1
    if old is not None:
        generation = int((old["metadata"].get("annotations") or {}).get(key, "1"))
        if (obj.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
            generation += 1
    obj["metadata"].setdefault("annotations", {})[key] = str(generation)


STATUS_KEEPS_METADATA = {  # status writes reset all metadata (ResetObjectMetaForStatus)
    "ValidatingAdmissionPolicy",
    "FlowSchema",
    "PriorityLevelConfiguration",
    "ServiceCIDR",
    "PodCertificateRequest",
    "ResourceClaim",
    "DeviceTaintRule",
    "VolumeAttachment",
    "CSINode",
}


def status_metadata(rt: ResourceType) -> tuple[str, ...]:
    """What of metadata a /status write may change: nothing for custom resources and some kinds, no labels
    for Deployments (their status strategy keeps the old ones), the rest for the other built-in kinds."""
    if rt.custom or rt.kind in STATUS_KEEPS_METADATA:
        return ()
    if rt.kind == "Deployment":
        return ("annotations", "ownerReferences", "finalizers")
    return ("labels", "annotations", "ownerReferences", "finalizers")


def held_on_delete(rt: ResourceType, obj: Obj) -> bool:
    """Whether deleting this kind only marks it, for a controller to finish (besides metadata.finalizers)."""
    if rt.kind == "Namespace" and not rt.custom:
        return bool((obj.get("spec") or {}).get("finalizers"))
    return rt.kind == "CustomResourceDefinition" and not rt.custom


def on_delete(rt: ResourceType, obj: Obj) -> None:
    """What marking an object deleted changes beyond its deletionTimestamp."""
    if rt.custom:
        return
    if rt.kind == "Namespace":
        obj.setdefault("status", {})["phase"] = "Terminating"
    elif rt.kind == "CustomResourceDefinition":
        finalizers = obj["metadata"].setdefault("finalizers", [])
        if CRD_CLEANUP not in finalizers:
            finalizers.append(CRD_CLEANUP)
        condition = {
            "type": "Terminating",
            "status": "True",
            "lastTransitionTime": obj["metadata"]["deletionTimestamp"],
            "reason": "InstanceDeletionPending",
            "message": "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        }
        status = obj.setdefault("status", {})
        status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "Terminating"] + [
            condition
        ]


def finished(rt: ResourceType, obj: Obj) -> bool:
    """Whether an object marked for deletion has nothing left holding it."""
    if obj["metadata"].get("finalizers"):
        return False
    return not (rt.kind == "Namespace" and not rt.custom and (obj.get("spec") or {}).get("finalizers"))
