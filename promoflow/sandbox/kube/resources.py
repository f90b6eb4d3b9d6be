"""What the stand-in serves: every built-in kind of its Kubernetes version, and the custom resources CRDs define.

The built-in kinds come from the bundled OpenAPI definitions: each definition with a group-version-kind in a
GA version (v1, v2: what a kube-apiserver serves without feature gates) and a `<Kind>List` beside it is a
stored resource, with a /status subresource if it has a `status` field. The facts no schema carries (scope,
short names, categories, which kinds count generations, delete answers, ...) are the tables below, as
kube-apiserver v1.37's registry declares them; the behavioural suite checks discovery against a real server.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from promoflow.clusters.schemas import kubernetes_version
from promoflow.sandbox.kube.schema import Schema, all_definitions, custom_resource, definition

Obj = dict[str, Any]

CLUSTER_SCOPED = {
    ("", "ComponentStatus"),
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("admissionregistration.k8s.io", "*"),
    ("apiextensions.k8s.io", "*"),
    ("apiregistration.k8s.io", "*"),
    ("authentication.k8s.io", "*"),
    ("authorization.k8s.io", "SelfSubjectAccessReview"),
    ("authorization.k8s.io", "SelfSubjectRulesReview"),
    ("authorization.k8s.io", "SubjectAccessReview"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("certificates.k8s.io", "ClusterTrustBundle"),
    ("flowcontrol.apiserver.k8s.io", "*"),
    ("networking.k8s.io", "IPAddress"),
    ("networking.k8s.io", "IngressClass"),
    ("networking.k8s.io", "ServiceCIDR"),
    ("node.k8s.io", "*"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("resource.k8s.io", "DeviceClass"),
    ("resource.k8s.io", "DeviceTaintRule"),
    ("resource.k8s.io", "ResourceSlice"),
    ("scheduling.k8s.io", "*"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("storage.k8s.io", "VolumeAttributesClass"),
    ("storagemigration.k8s.io", "*"),
}
SHORT_NAMES = {
    "ComponentStatus": ("cs",),
    "ConfigMap": ("cm",),
    "Endpoints": ("ep",),
    "Event": ("ev",),
    "LimitRange": ("limits",),
    "Namespace": ("ns",),
    "Node": ("no",),
    "PersistentVolumeClaim": ("pvc",),
    "PersistentVolume": ("pv",),
    "Pod": ("po",),
    "ReplicationController": ("rc",),
    "ResourceQuota": ("quota",),
    "ServiceAccount": ("sa",),
    "Service": ("svc",),
    "CustomResourceDefinition": ("crd", "crds"),
    "DaemonSet": ("ds",),
    "Deployment": ("deploy",),
    "ReplicaSet": ("rs",),
    "StatefulSet": ("sts",),
    "HorizontalPodAutoscaler": ("hpa",),
    "CronJob": ("cj",),
    "CertificateSigningRequest": ("csr",),
    "IPAddress": ("ip",),
    "Ingress": ("ing",),
    "NetworkPolicy": ("netpol",),
    "PodDisruptionBudget": ("pdb",),
    "PriorityClass": ("pc",),
    "StorageClass": ("sc",),
    "VolumeAttributesClass": ("vac",),
}
IN_ALL = {
    "Pod",
    "ReplicationController",
    "Service",
    "DaemonSet",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "HorizontalPodAutoscaler",
    "CronJob",
    "Job",
}
API_EXTENSIONS = {"admissionregistration.k8s.io", "apiextensions.k8s.io", "apiregistration.k8s.io"}
# Kinds whose strategy sets metadata.generation (pkg/registry/*/strategy.go); custom resources all do.
GENERATION = {
    "Pod",
    "PodTemplate",
    "ReplicationController",
    "DaemonSet",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "HorizontalPodAutoscaler",
    "CronJob",
    "Job",
    "EndpointSlice",
    "FlowSchema",
    "PriorityLevelConfiguration",
    "Ingress",
    "IngressClass",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "DeviceClass",
    "DeviceTaintRule",
    "ResourceSlice",
    "PriorityClass",
    "CustomResourceDefinition",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
}
# Stores with ReturnDeletedObject: DELETE answers the object, not a Status.
RETURNS_DELETED = {
    "Namespace",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Pod",
    "PodTemplate",
    "ResourceQuota",
    "Service",
    "ServiceAccount",
    "DeviceClass",
    "ResourceClaim",
    "ResourceClaimTemplate",
    "ResourceSlice",
    "CSIDriver",
    "CSINode",
    "StorageClass",
    "VolumeAttachment",
    "VolumeAttributesClass",
}
# Kinds whose delete orphans dependents unless told otherwise (kept for backwards compatibility).
ORPHAN_BY_DEFAULT = {("batch", "Job"), ("", "ReplicationController")}
# Not stored: a request is answered and forgotten.
CREATE_ONLY = {
    "Binding",
    "TokenReview",
    "SelfSubjectReview",
    "LocalSubjectAccessReview",
    "SelfSubjectAccessReview",
    "SelfSubjectRulesReview",
    "SubjectAccessReview",
}
READ_ONLY = {"ComponentStatus"}
DEPRECATED = {  # the Warning every request on these gets (their types' APILifecycleDeprecated)
    "Endpoints": "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice",
    "ComponentStatus": "v1 ComponentStatus is deprecated in v1.19+",
}  # computed by the server from its own health
SCALABLE = {"Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"}
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
GA_VERSION = re.compile(r"^v\d+$")


@dataclass(frozen=True, eq=False)
class ResourceType:
    """One resource in one served version: /apis/{group}/{version}/[namespaces/{ns}/]{plural}."""

    group: str
    version: str
    plural: str
    kind: str
    schema: Schema = field(repr=False)
    namespaced: bool = True
    status: bool = False  # has a /status subresource
    scale: bool = False  # has a /scale subresource
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    custom: bool = False  # a custom resource, defined by a CRD
    singular: str = ""
    tracks_generation: bool = False
    returns_deleted: bool = False
    storage: str = ""  # what versions of one kind share: "group/Kind"; empty for the kind's own
    scale_paths: tuple[str, str, str | None] | None = None  # a custom resource's spec/status replicas, selector
    deprecation: str = ""  # the warning a deprecated kind's requests get
    printer_columns: tuple[Obj, ...] = ()  # a custom resource's additionalPrinterColumns

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def key(self) -> str:
        """Where its objects are stored: versions of one kind share them."""
        return self.storage or f"{self.group}/{self.kind}"

    @property
    def stored(self) -> bool:
        return not (set(self.verbs) <= {"create"} or self.kind in READ_ONLY)


def plural_of(kind: str) -> str:
    lower = kind.lower()
    if lower == "endpoints":
        return lower
    if re.search(r"[^aeiou]y$", lower):
        return lower[:-1] + "ies"
    if re.search(r"(s|x|ch|sh)$", lower):
        return lower + "es"
    return lower + "s"


def _builtin() -> list[ResourceType]:
    defs = all_definitions()
    found: list[ResourceType] = []
    for name, node in defs.items():
        for gvk in node.get("x-kubernetes-group-version-kind") or []:
            group, version, kind = gvk["group"], gvk["version"], gvk["kind"]
            if not GA_VERSION.match(version) or name.endswith("List") or name.startswith("io.k8s.apimachinery."):
                continue
            listed = any(
                g == {"group": group, "version": version, "kind": kind + "List"}
                for n in (name + "List",)
                for g in (defs.get(n) or {}).get("x-kubernetes-group-version-kind") or []
            )
            if not listed and kind not in CREATE_ONLY:
                continue  # a subresource's or an option's type (Scale, Eviction, DeleteOptions, ...)
            if group == "authentication.k8s.io" and kind == "TokenRequest":
                continue
            schema = definition(name)
            scope = (group, kind) not in CLUSTER_SCOPED and (group, "*") not in CLUSTER_SCOPED
            verbs: tuple[str, ...] = ALL_VERBS
            if kind in CREATE_ONLY:
                verbs = ("create",)
            elif kind in READ_ONLY:
                verbs = ("get", "list")
            elif kind == "Namespace":
                verbs = tuple(v for v in ALL_VERBS if v != "deletecollection")
            categories = ("all",) if kind in IN_ALL else ("api-extensions",) if group in API_EXTENSIONS else ()
            found.append(
                ResourceType(
                    group,
                    version,
                    plural_of(kind),
                    kind,
                    schema,
                    namespaced=scope,
                    status=("status" in schema.fields and verbs == ALL_VERBS) or kind == "Namespace",
                    scale=kind in SCALABLE,
                    short_names=SHORT_NAMES.get(kind, ()),
                    categories=categories,
                    verbs=verbs,
                    singular=kind.lower(),
                    tracks_generation=kind in GENERATION,
                    returns_deleted=kind in RETURNS_DELETED,
                    deprecation=DEPRECATED.get(kind, "") if group == "" else "",
                )
            )
    # One storage per kind: autoscaling/v1 and /v2 HorizontalPodAutoscalers are the same objects.
    return sorted(found, key=lambda rt: (rt.group, rt.version, rt.plural))


BUILTIN = _builtin()
VERSION = kubernetes_version()
GIT_VERSION = f"v{VERSION}.0-promoflow-sandbox"


def preferred_versions() -> dict[str, str]:
    """Each built-in group's preferred version: the highest GA version it has (autoscaling/v2)."""
    preferred: dict[str, str] = {}
    for rt in BUILTIN:
        if rt.group not in preferred or int(rt.version[1:]) > int(preferred[rt.group][1:]):
            preferred[rt.group] = rt.version
    return preferred


class Catalogue:
    """The resource types a cluster serves: the built-in ones and those its established CRDs add."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._types: list[ResourceType] = list(BUILTIN)
        self._preferred = preferred_versions()
        self._index()

    def _index(self) -> None:
        self.revision = getattr(self, "revision", 0) + 1  # what is served changed: documents built from it are stale
        self.by_path = {(rt.api_version, rt.plural): rt for rt in self._types}
        self.by_kind = {(rt.api_version, rt.kind): rt for rt in self._types}
        self.group_versions = list(dict.fromkeys(rt.api_version for rt in self._types))

    @property
    def types(self) -> list[ResourceType]:
        return self._types

    def get(self, api_version: str, plural: str) -> ResourceType | None:
        return self.by_path.get((api_version, plural))

    def of_kind(self, api_version: str, kind: str) -> ResourceType | None:
        return self.by_kind.get((api_version, kind))

    def named(self, qualified: str) -> ResourceType:
        """By `plural.group` ("deployments.apps"), the preferred version."""
        plural, _, group = qualified.partition(".")
        candidates = [rt for rt in self._types if rt.plural == plural and rt.group == group]
        if not candidates:
            raise KeyError(f"the sandbox cluster serves no resource {qualified!r}")
        preferred = self._preferred.get(group)
        return next((rt for rt in candidates if rt.version == preferred), candidates[0])

    def versions_of(self, rt: ResourceType) -> list[ResourceType]:
        return [other for other in self._types if other.key == rt.key]

    def preferred(self, group: str) -> str:
        return self._preferred[group]

    def groups(self) -> list[str]:
        return list(dict.fromkeys(gv.split("/")[0] for gv in self.group_versions if "/" in gv))

    def define(self, crd: Obj) -> list[ResourceType]:
        """Serve the versions of an established CRD (replacing what it served before); returns them."""
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group = str(spec.get("group", ""))
        added = []
        for served in spec.get("versions") or []:
            if not served.get("served"):
                continue
            subresources = served.get("subresources") or {}
            scale = subresources.get("scale")
            added.append(
                ResourceType(
                    group,
                    str(served["name"]),
                    str(names.get("plural", "")),
                    str(names.get("kind", "")),
                    custom_resource((served.get("schema") or {}).get("openAPIV3Schema")),
                    namespaced=spec.get("scope") == "Namespaced",
                    status="status" in subresources,
                    scale=scale is not None,
                    short_names=tuple(names.get("shortNames") or ()),
                    categories=tuple(names.get("categories") or ()),
                    custom=True,
                    singular=str(names.get("singular") or str(names.get("kind", "")).lower()),
                    tracks_generation=True,
                    storage=f"{group}/{names.get('kind')}",
                    printer_columns=tuple(served.get("additionalPrinterColumns") or ()),
                    scale_paths=(
                        (scale["specReplicasPath"], scale["statusReplicasPath"], scale.get("labelSelectorPath"))
                        if isinstance(scale, dict)
                        else None
                    ),
                )
            )
        storage_version = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), None)
        with self._lock:
            kept = [
                rt for rt in self._types if not (rt.custom and rt.group == group and rt.plural == names.get("plural"))
            ]
            self._types = kept + added
            if added:
                served_names = [rt.version for rt in added]
                self._preferred[group] = storage_version if storage_version in served_names else served_names[0]
            self._index()
        return added

    def forget(self, group: str, plural: str) -> None:
        with self._lock:
            self._types = [rt for rt in self._types if not (rt.custom and rt.group == group and rt.plural == plural)]
            if not any(rt.group == group for rt in self._types):
                self._preferred.pop(group, None)
            self._index()
