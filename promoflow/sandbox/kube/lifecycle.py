"""The cluster's own controllers: what kube-controller-manager and kube-apiserver do between requests.

- the garbage collector: foreground deletion (dependents first, then the `foregroundDeletion` finalizer),
  orphaning (owner references dropped, then the `orphan` finalizer), and dependents of a deleted owner;
- the namespace controller: a Terminating namespace's content deleted, its conditions reported, and the
  namespace finalized once nothing is left;
- CRDs: names accepted and the CRD Established (its resources served), and on deletion its custom
  resources removed before it goes;
- every namespace's `default` ServiceAccount and `kube-root-ca.crt` ConfigMap.

Each reacts to committed changes on the server's event loop, as soon as the change is made.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import TYPE_CHECKING, Any

from promoflow.sandbox.kube.errors import ApiError
from promoflow.sandbox.kube.fields import copy
from promoflow.sandbox.kube.resources import ResourceType
from promoflow.sandbox.kube.strategy import CRD_CLEANUP
from promoflow.sandbox.kube_controllers import Event, now

if TYPE_CHECKING:
    from promoflow.sandbox.kube.store import Cluster

Obj = dict[str, Any]
MANAGER = "kube-controller-manager"
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
ROOT_CA = "kube-root-ca.crt"
# A certificate shaped like the cluster CA's: the stand-in serves plain HTTP, so nothing verifies with it.
SIMULATED_CA = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAjMSEwHwYDVQQDDBhwcm9tb2Zsb3ctc2FuZGJveC1jYTAeFw0y\n"
    "-----END CERTIFICATE-----\n"
)
CONDITIONS = (
    ("NamespaceDeletionDiscoveryFailure", "ResourcesDiscovered", "All resources successfully discovered"),
    ("NamespaceDeletionGroupVersionParsingFailure", "ParsedGroupVersions", "All legacy kube types successfully parsed"),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    ("NamespaceContentRemaining", "ContentRemoved", "All content successfully removed"),
    ("NamespaceFinalizersRemaining", "ContentHasNoFinalizers", "All content-preserving finalizers finished"),
)


def _printer(name: str, path: str, priority: int = 0) -> Obj:
    column: Obj = {"jsonPath": path, "name": name, "type": "date" if name == "Age" else "string"}
    if priority:
        column["priority"] = priority
    return column


def _gitops_crd(group: str, kind: str, plural: str, names: Obj, version: Obj, metadata: Obj) -> Obj:
    served = {"served": True, "storage": True, **version}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", **metadata},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List", **names},
            "versions": [served],
        },
    }


# The kinds promoflow's argocd and flux targets read and patch: the names, printer columns and defaults of
# Argo CD's and Flux's own CRDs (Argo CD v3.5, kustomize-controller v1.9), their schemas kept open.
OPEN = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
GITOPS_CRDS = (
    _gitops_crd(
        "argoproj.io",
        "Application",
        "applications",
        {"shortNames": ["app", "apps"]},
        {
            "name": "v1alpha1",
            "schema": {"openAPIV3Schema": OPEN},
            "additionalPrinterColumns": [
                _printer("Sync Status", ".status.sync.status"),
                _printer("Health Status", ".status.health.status"),
                _printer("Revision", ".status.sync.revision", 10),
                _printer("Project", ".spec.project", 10),
            ],
        },
        {"labels": {"app.kubernetes.io/name": "applications.argoproj.io", "app.kubernetes.io/part-of": "argocd"}},
    ),
    _gitops_crd(
        "kustomize.toolkit.fluxcd.io",
        "Kustomization",
        "kustomizations",
        {"shortNames": ["ks"], "categories": ["all", "fluxcd", "fluxcd-appliers"]},
        {
            "name": "v1",
            "schema": {
                "openAPIV3Schema": {
                    **OPEN,
                    "properties": {
                        "spec": {**OPEN, "properties": {"force": {"type": "boolean", "default": False}}},
                        "status": {**OPEN, "default": {"observedGeneration": -1}},
                    },
                }
            },
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                _printer("Age", ".metadata.creationTimestamp"),
                _printer("Ready", '.status.conditions[?(@.type=="Ready")].status'),
                _printer("Status", '.status.conditions[?(@.type=="Ready")].message'),
            ],
        },
        {"annotations": {"kustomize.toolkit.fluxcd.io/substitute": "disabled"}},
    ),
)


class Lifecycle:
    def __init__(self, cluster: Cluster) -> None:
        from promoflow.sandbox.kube.store import WriteOptions

        self._cluster = cluster
        self._options = WriteOptions
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[Event] = []
        cluster.subscribe(self._listen)

    def bootstrap(self) -> None:
        """The namespaces a new cluster has, and the Argo CD and Flux CRDs, ready before anyone asks."""
        namespaces = self._cluster.resource("namespaces")
        for name in SYSTEM_NAMESPACES:
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            self._cluster.create(namespaces, None, body, self._options("kube-apiserver"))
        crds = self._cluster.resource("customresourcedefinitions.apiextensions.k8s.io")
        for definition in GITOPS_CRDS:
            self._cluster.create(crds, None, copy(definition), self._options("kube-apiserver"))
        for event in self._pending:
            self._handle(event)
        self._pending.clear()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def stop(self) -> None:
        self._loop = None

    def _listen(self, event: Event) -> None:
        loop = self._loop
        if loop is None:
            self._pending.append(event)  # handled at the end of bootstrap
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._handle, event)

    def _handle(self, event: Event) -> None:
        with contextlib.suppress(ApiError, KeyError):  # what changed meanwhile is handled by its own event
            meta = event.obj["metadata"]
            if event.resource == "customresourcedefinitions.apiextensions.k8s.io":
                self._crd(event)
            if event.resource == "namespaces" and event.type == "ADDED":
                self._populate(meta["name"])
            if event.type != "DELETED" and meta.get("deletionTimestamp"):
                self._collect(event)
            if event.type == "DELETED":
                self._orphaned(meta["uid"])
            namespace = meta["name"] if event.resource == "namespaces" else meta.get("namespace")
            if namespace:
                self._terminate(namespace)

    # writes, as kube-controller-manager makes them

    def _write(self, rt: ResourceType, obj: Obj, change: Any) -> None:
        meta = obj["metadata"]
        self._cluster.patch(rt, meta.get("namespace"), meta["name"], change, self._options(MANAGER))

    def _delete(self, rt: ResourceType, obj: Obj) -> None:
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp"):
            self._cluster.delete(rt, meta.get("namespace"), meta["name"], self._options(MANAGER), None, "Background")

    def _drop_finalizer(self, rt: ResourceType, obj: Obj, finalizer: str) -> None:
        def change(current: Obj) -> Obj:
            kept = [f for f in current["metadata"].get("finalizers") or [] if f != finalizer]
            current["metadata"]["finalizers"] = kept
            return current

        self._write(rt, obj, change)

    # the garbage collector

    def _collect(self, event: Event) -> None:
        rt = self._cluster.resource(event.resource)
        obj = self._cluster.get(rt, event.obj["metadata"].get("namespace"), event.obj["metadata"]["name"])
        finalizers = obj["metadata"].get("finalizers") or []
        uid = obj["metadata"]["uid"]
        dependents = self._cluster.owned_by(uid)
        if "orphan" in finalizers:
            for dep_rt, dependent in dependents:

                def unowned(current: Obj) -> Obj:
                    refs = [r for r in current["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                    current["metadata"]["ownerReferences"] = refs
                    return current

                self._write(dep_rt, dependent, unowned)
            self._drop_finalizer(rt, obj, "orphan")
        elif "foregroundDeletion" in finalizers:
            for dep_rt, dependent in dependents:
                self._delete(dep_rt, dependent)
            blocking = [
                d
                for _, d in self._cluster.owned_by(uid)
                if any(r.get("uid") == uid and r.get("blockOwnerDeletion") for r in d["metadata"]["ownerReferences"])
            ]
            if not blocking:
                self._drop_finalizer(rt, obj, "foregroundDeletion")

    def _orphaned(self, uid: str) -> None:
        """Dependents of a deleted owner go too, unless another of their owners is still there."""
        for rt, dependent in self._cluster.owned_by(uid):
            owners = [r.get("uid") for r in dependent["metadata"].get("ownerReferences") or []]
            if not any(self._cluster.exists(owner) for owner in owners if owner != uid):
                self._delete(rt, dependent)
        for rt, owner in self._owners_waiting_on(uid):
            self._collect(Event("MODIFIED", rt.qualified, 0, owner))

    def _owners_waiting_on(self, uid: str) -> list[tuple[ResourceType, Obj]]:
        """Owners in foreground deletion: a dependent gone may be the last one they were waiting for."""
        found = []
        for rt in self._cluster.stored_types():
            for obj in self._cluster.all_of(rt):
                if "foregroundDeletion" in (obj["metadata"].get("finalizers") or []):
                    found.append((rt, obj))
        return found

    # the namespace controller

    def _populate(self, namespace: str) -> None:
        service_accounts = self._cluster.resource("serviceaccounts")
        if self._cluster.find("serviceaccounts", namespace, "default") is None:
            account = {"metadata": {"name": "default", "namespace": namespace}}
            self._cluster.create(service_accounts, namespace, account, self._options(MANAGER))
        if self._cluster.find("configmaps", namespace, ROOT_CA) is None:
            description = (
                "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
                "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
                "distributions of Kubernetes clusters."
            )
            root_ca = {
                "metadata": {"name": ROOT_CA, "annotations": {"kubernetes.io/description": description}},
                "data": {"ca.crt": SIMULATED_CA},
            }
            self._cluster.create(self._cluster.resource("configmaps"), namespace, root_ca, self._options(MANAGER))

    def _terminate(self, namespace: str) -> None:
        found = self._cluster.find("namespaces", "", namespace)
        if found is None or not found["metadata"].get("deletionTimestamp"):
            return
        if "kubernetes" not in ((found.get("spec") or {}).get("finalizers") or []):
            return
        for rt, obj in self._cluster.objects_in(namespace):
            with contextlib.suppress(ApiError):
                self._delete(rt, obj)
        remaining = self._cluster.objects_in(namespace)
        self._report(found, remaining)
        if not remaining:
            namespaces = self._cluster.resource("namespaces")
            self._cluster.finalize_namespace(namespaces, namespace, self._options(MANAGER))

    def _report(self, namespace: Obj, remaining: list[tuple[ResourceType, Obj]]) -> None:
        by_resource = Counter(f"{rt.plural}.{rt.group}" for rt, _ in remaining)
        by_finalizer = Counter(f for _, obj in remaining for f in obj["metadata"].get("finalizers") or [])
        failing = {
            "NamespaceContentRemaining": (
                "SomeResourcesRemain",
                "Some resources are remaining: "
                + ", ".join(f"{r} has {n} resource instances" for r, n in sorted(by_resource.items())),
            )
            if by_resource
            else None,
            "NamespaceFinalizersRemaining": (
                "SomeFinalizersRemain",
                "Some content in the namespace has finalizers remaining: "
                + ", ".join(f"{f} in {n} resource instances" for f, n in sorted(by_finalizer.items())),
            )
            if by_finalizer
            else None,
        }
        previous = {c["type"]: c for c in (namespace.get("status") or {}).get("conditions") or []}
        conditions = []
        for kind, reason, message in CONDITIONS:
            state = "False"
            if failing.get(kind):
                state, (reason, message) = "True", failing[kind]  # type: ignore[misc]
            old = previous.get(kind, {})
            stamp = old.get("lastTransitionTime") if old.get("status") == state else now()
            conditions.append(
                {"type": kind, "status": state, "lastTransitionTime": stamp, "reason": reason, "message": message}
            )
        if [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in conditions] != [
            {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in previous.values()
        ]:
            status = {**(namespace.get("status") or {}), "conditions": conditions}
            self._cluster.write_status("namespaces", "", namespace["metadata"]["name"], status, MANAGER)

    # CRDs

    def _crd(self, event: Event) -> None:
        crds = self._cluster.resource("customresourcedefinitions.apiextensions.k8s.io")
        spec = event.obj.get("spec") or {}
        names = spec.get("names") or {}
        if event.type == "DELETED":
            self._cluster.catalogue.forget(str(spec.get("group")), str(names.get("plural")))
            return
        crd = self._cluster.get(crds, None, event.obj["metadata"]["name"])
        if crd["metadata"].get("deletionTimestamp"):
            if CRD_CLEANUP in (crd["metadata"].get("finalizers") or []):
                for rt in self._cluster.catalogue.types:
                    if rt.custom and rt.group == spec.get("group") and rt.plural == names.get("plural"):
                        for obj in self._cluster.all_of(rt):
                            self._delete(rt, obj)
                        if not self._cluster.all_of(rt):
                            self._drop_finalizer(crds, crd, CRD_CLEANUP)
                        return
                self._drop_finalizer(crds, crd, CRD_CLEANUP)
            return
        self.establish(crd)

    def establish(self, crd: Obj) -> None:
        """Accept a CRD's names, serve its versions, and report it Established (as kube-apiserver does at once)."""
        self._cluster.catalogue.define(crd)
        names = (crd.get("spec") or {}).get("names") or {}
        accepted = {
            k: names[k] for k in ("plural", "singular", "shortNames", "kind", "listKind", "categories") if k in names
        }
        status = copy(crd.get("status") or {})
        previous = {c["type"]: c for c in status.get("conditions") or []}
        conditions = [
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ]
        wanted = [
            {
                "type": kind,
                "status": "True",
                "lastTransitionTime": previous.get(kind, {}).get("lastTransitionTime", now()),
                "reason": reason,
                "message": message,
            }
            for kind, reason, message in conditions
        ]
        others = [c for c in status.get("conditions") or [] if c["type"] not in ("NamesAccepted", "Established")]
        if (
            status.get("acceptedNames") == accepted
            and [c for c in status.get("conditions") or [] if c not in others] == wanted
        ):
            return
        status.update(acceptedNames=accepted, conditions=wanted + others)
        self._cluster.write_status(
            "customresourcedefinitions.apiextensions.k8s.io", "", crd["metadata"]["name"], status, "kube-apiserver"
        )
