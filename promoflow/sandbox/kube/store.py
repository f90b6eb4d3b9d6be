"""The simulated cluster's state: objects, resourceVersions, writes as the API server makes them, watches.

Every write goes the API server's way: the body decoded against the kind's schema, defaulted, the registry's
create/update strategy (status reset, generation), managed fields, validation, then stored with the next
resourceVersion. Deletion honours finalizers: an object with finalizers (or deleted in the foreground or with
orphaned dependents) only gets a deletionTimestamp, and goes when the last finalizer is removed. The event
history lets watches resume, and lets a paged list continue from its first page's snapshot.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from promoflow.sandbox.kube import strategy
from promoflow.sandbox.kube.codec import Validation, apply_unknown, check_unknown, decode, encode, encode_object
from promoflow.sandbox.kube.conversion import convert
from promoflow.sandbox.kube.defaults import default
from promoflow.sandbox.kube.errors import (
    ApiError,
    Expired,
    already_exists,
    bad_request,
    details,
    forbidden,
    invalid,
    modified_conflict,
    not_found,
    required,
)
from promoflow.sandbox.kube.fields import (
    ManagedEntry,
    applied_fields,
    compare,
    copy,
    decode_managed,
    dotted,
    entry_for,
    is_leaf,
)
from promoflow.sandbox.kube.fields import (
    delete as delete_path,
)
from promoflow.sandbox.kube.fields import (
    get as get_path,
)
from promoflow.sandbox.kube.fields import (
    schema_at as _schema_at,
)
from promoflow.sandbox.kube.patches import merge_apply
from promoflow.sandbox.kube.resources import ORPHAN_BY_DEFAULT, Catalogue, ResourceType
from promoflow.sandbox.kube.schema import Schema
from promoflow.sandbox.kube.selectors import Selector
from promoflow.sandbox.kube.validation import validate
from promoflow.sandbox.kube_controllers import ArgoCD, Event, Faults, Flux, Rollouts, now

Obj = dict[str, Any]
Subresource = Literal["status"] | None
Propagation = Literal["Foreground", "Background", "Orphan"]
HISTORY_LIMIT = 10_000  # events kept for watches and paged lists; older resourceVersions get 410 Expired
USER_METADATA = ("labels", "annotations", "ownerReferences", "finalizers")  # what managedFields track
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SERVER_METADATA: tuple[str, ...] = (
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
)
SERVER_METADATA += ("deletionTimestamp", "deletionGracePeriodSeconds")


@dataclass
class WriteOptions:
    manager: str
    dry_run: bool = False
    validation: Validation = "Warn"
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Watch:
    rt: ResourceType
    deliver: Callable[[Event | str], None]


# --- views: the part of an object a write (main resource or /status) may change ----------------------------


def _in_view(rt: ResourceType, key: str, sub: Subresource) -> bool:
    if sub == "status":
        return key == "status"
    return key not in ("apiVersion", "kind", "metadata") and not (key == "status" and rt.status)


def _metadata_in_view(rt: ResourceType, sub: Subresource) -> tuple[str, ...]:
    return USER_METADATA if sub is None else strategy.status_metadata(rt)


def view(rt: ResourceType, obj: Obj, sub: Subresource) -> Obj:
    """The part of `obj` a write to the main resource or its /status may change."""
    out = {k: v for k, v in obj.items() if _in_view(rt, k, sub)}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k in _metadata_in_view(rt, sub)}
    if meta:
        out["metadata"] = meta
    return out


def _compared(rt: ResourceType, obj: Obj, sub: Subresource) -> Obj:
    """The view an Update's ownership is computed on: metadata is always there (a struct in Go)."""
    part = view(rt, obj, sub)
    part.setdefault("metadata", {})
    return part


def rebuild(rt: ResourceType, base: Obj, part: Obj, sub: Subresource) -> Obj:
    """`base` with its view replaced by `part`."""
    mutable = _metadata_in_view(rt, sub)
    meta = {k: v for k, v in (base.get("metadata") or {}).items() if k not in mutable}
    meta.update({k: v for k, v in (part.get("metadata") or {}).items() if k in mutable})
    out: Obj = {"apiVersion": base.get("apiVersion"), "kind": base.get("kind"), "metadata": meta}
    out.update({k: v for k, v in base.items() if k not in out and not _in_view(rt, k, sub)})
    out.update({k: v for k, v in part.items() if k != "metadata"})
    return out


def _zero(rt: ResourceType) -> Obj:
    """The object Go starts from on create: what an Update's managed fields are compared against."""
    zero: Obj = {"metadata": {}}
    if not rt.custom:
        encode(zero, rt.schema)
    return zero


class Cluster:
    """The simulated cluster's state and its Python controls (`rollouts`, `argocd`, `flux`, `faults`).

    Thread-safe: the HTTP server, the simulators and test code all call in.
    """

    def __init__(self) -> None:
        from promoflow.sandbox.kube.lifecycle import Lifecycle

        self._lock = threading.RLock()
        self.catalogue = Catalogue()
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._rv = 0
        self._history: deque[Event] = deque()
        self._compacted = 0  # events up to this resourceVersion are gone
        self._listeners: list[Callable[[Event], None]] = []
        self._watches: dict[int, _Watch] = {}
        self._next_watch = 0
        self.requests: Counter[str] = Counter()  # resource requests served, by verb (discovery excluded)
        self.rollouts = Rollouts(self)
        self.argocd = ArgoCD(self)
        self.flux = Flux(self)
        self.faults = Faults(self.drop_watches, self.expire_watches)
        self.lifecycle = Lifecycle(self)
        self.lifecycle.bootstrap()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the controllers on `loop` (the server's)."""
        self.rollouts.start(loop)
        self.lifecycle.start(loop)

    def stop(self) -> None:
        """Stop the controllers; call on the loop's thread."""
        self.rollouts.stop()
        self.lifecycle.stop()

    # --- the Python API ------------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def resource(self, qualified: str) -> ResourceType:
        """A served resource by `plural.group` ("deployments.apps"), in its preferred version."""
        return self.catalogue.named(qualified)

    def find(self, resource: str, namespace: str, name: str) -> Obj | None:
        """The stored object (`resource` as plural.group, e.g. "deployments.apps"), or None."""
        rt = self.resource(resource)
        with self._lock:
            obj = self._store(rt).get(self._key(rt, namespace, name))
            return convert(copy(obj), rt) if obj is not None else None

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Called (under the store lock, so keep it quick) with every committed change, in order."""
        with self._lock:
            self._listeners.append(listener)

    def write_status(self, resource: str, namespace: str, name: str, status: Obj, manager: str) -> Obj:
        """What a controller does: replace .status (through /status where the kind has it). KeyError if gone."""
        rt = self.resource(resource)
        sub: Subresource = "status" if rt.status else None
        with self._lock:
            current = self._store(rt).get(self._key(rt, namespace, name))
            if current is None:
                raise KeyError(f"no {rt.qualified} {namespace}/{name} in the sandbox cluster")
            current = convert(copy(current), rt)
            return self.replace(rt, namespace or None, name, {**current, "status": status}, WriteOptions(manager), sub)

    def annotate(self, resource: str, namespace: str, name: str, annotations: dict[str, str], manager: str) -> None:
        """What a controller does to record something on an object: set annotations. KeyError if gone."""
        rt = self.resource(resource)

        def change(current: Obj) -> Obj:
            current["metadata"].setdefault("annotations", {}).update(annotations)
            return current

        sub: Subresource = "status" if rt.status and strategy.status_metadata(rt) else None
        try:
            self.patch(rt, namespace or None, name, change, WriteOptions(manager), sub)
        except ApiError as error:
            raise KeyError(f"no {rt.qualified} {namespace}/{name} in the sandbox cluster") from error

    def finalize_namespace(
        self, rt: ResourceType, name: str, options: WriteOptions, finalizers: list[str] | None = None
    ) -> Obj:
        """PUT /namespaces/{name}/finalize: set spec.finalizers (none: drop "kubernetes"); gone if nothing holds it."""
        with self._lock:
            old = self.get(rt, None, name)
            new = copy(old)
            kept = [f for f in (new.get("spec") or {}).get("finalizers") or [] if f != "kubernetes"]
            new.setdefault("spec", {})["finalizers"] = kept if finalizers is None else finalizers
            if not new["spec"]["finalizers"]:
                del new["spec"]["finalizers"]
            return self._commit(rt, old, new, decode_managed(old["metadata"].get("managedFields")), options)

    def compact(self) -> None:
        """Forget the event history, as etcd compaction does: older watches and paged lists get 410."""
        with self._lock:
            self._history.clear()
            self._compacted = self._rv

    # --- reads ---------------------------------------------------------------------------------------------

    def _store(self, rt: ResourceType) -> dict[tuple[str, str], Obj]:
        return self._objects.setdefault(rt.key, {})

    def _key(self, rt: ResourceType, namespace: str | None, name: str) -> tuple[str, str]:
        return (namespace or "") if rt.namespaced else "", name

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        with self._lock:
            obj = self._store(rt).get(self._key(rt, namespace, name))
            if obj is None:
                raise not_found(rt, name)
            return convert(obj, rt)

    def select(
        self, rt: ResourceType, namespace: str | None, selector: Selector, at: int | None = None
    ) -> tuple[list[tuple[tuple[str, str], Obj]], int]:
        """(key, object) of what the selector picks, in key order, now or at resourceVersion `at`."""
        with self._lock:
            objects = self._store(rt) if at is None else self._snapshot(rt, at)
            items = [
                (key, convert(obj, rt))
                for key, obj in sorted(objects.items())
                if (namespace is None or key[0] == namespace) and selector.matches(obj)
            ]
            return items, self._rv if at is None else at

    def _snapshot(self, rt: ResourceType, rv: int) -> dict[tuple[str, str], Obj]:
        """The objects as they were at resourceVersion `rv`, rolled back from now through the history."""
        if rv < self._compacted:
            raise Expired(str(rv))
        objects = dict(self._store(rt))
        for event in reversed(self._history):
            if event.rv <= rv:
                break
            if event.resource != rt.qualified:
                continue
            meta = event.obj["metadata"]
            key = self._key(rt, meta.get("namespace"), meta["name"])
            if event.old is None:
                objects.pop(key, None)
            else:
                objects[key] = event.old
        return objects

    def namespaces(self) -> list[str]:
        with self._lock:
            return [name for _, name in self._store(self.resource("namespaces"))]

    def objects_in(self, namespace: str) -> list[tuple[ResourceType, Obj]]:
        """Every stored object of `namespace`, each as its kind's preferred version."""
        with self._lock:
            found = []
            for rt in self.stored_types():
                if rt.namespaced:
                    found += [(rt, convert(o, rt)) for (ns, _), o in self._store(rt).items() if ns == namespace]
            return found

    def owned_by(self, uid: str) -> list[tuple[ResourceType, Obj]]:
        with self._lock:
            found = []
            for rt in self.stored_types():
                for obj in self._store(rt).values():
                    if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or []):
                        found.append((rt, convert(obj, rt)))
            return found

    def exists(self, uid: str) -> bool:
        with self._lock:
            return any(o["metadata"].get("uid") == uid for rt in self.stored_types() for o in self._store(rt).values())

    def all_of(self, rt: ResourceType) -> list[Obj]:
        with self._lock:
            return [convert(o, rt) for _, o in sorted(self._store(rt).items())]

    def stored_types(self) -> list[ResourceType]:
        """One resource type per stored kind, in its preferred version."""
        seen: dict[str, ResourceType] = {}
        for rt in self.catalogue.types:
            preferred = rt.key not in seen or rt.version == self.catalogue.preferred(rt.group)
            if rt.stored and rt.key in self._objects and preferred:
                seen[rt.key] = rt
        return list(seen.values())

    # --- writes --------------------------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str | None, body: Any, options: WriteOptions) -> Obj:
        obj = self._decoded(rt, namespace, body, None, options)
        meta = obj["metadata"]
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(rt, "", [{**required("metadata.name"), "message": "name or generateName is required"}])
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        return self._create(rt, obj, options, None)

    def replace(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        options: WriteOptions,
        sub: Subresource = None,
    ) -> Obj:
        with self._lock:
            old = self.get(rt, namespace, name)
            new = self._decoded(rt, namespace, body, name, options)
            wanted_rv = new["metadata"].get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise modified_conflict(rt, name)
            entries = decode_managed(old["metadata"].get("managedFields"))
            sent = new["metadata"].get("managedFields")
            if sent is not None and sent != old["metadata"].get("managedFields"):
                entries = decode_managed(sent)  # clients may rewrite ownership (kubectl's CSA->SSA upgrade)
            merged = copy(rebuild(rt, old, view(rt, new, sub), sub))
            self._finish(rt, merged, old, sub)
            changed, removed = compare(_compared(rt, old, sub), _compared(rt, merged, sub), rt.schema)
            for entry in entries:
                entry.set_fields(entry.fields - changed - removed)
            mine = entry_for(entries, options.manager, "Update", rt.api_version, sub)
            mine.set_fields(mine.fields | changed)
            return self._commit(rt, old, merged, entries, options, sub)

    def apply(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        options: WriteOptions,
        force: bool,
        sub: Subresource = None,
    ) -> tuple[int, Obj]:
        """Server-side apply: (201, created) or (200, updated); 409 on conflicts unless `force`."""
        if not isinstance(body, dict) or not body.get("kind") or not body.get("apiVersion"):
            shown = body if isinstance(body, dict) else {}
            raise bad_request(f"invalid object type: {shown.get('apiVersion', '')}, Kind={shown.get('kind', '')}")
        with self._lock:
            applied = self._decoded(rt, namespace, body, name, options, apply=True)
            part = view(rt, applied, sub)
            schema = rt.schema
            applied_set = applied_fields(part, schema)
            try:
                old = self.get(rt, namespace, name)
            except ApiError:
                if sub:
                    raise
                return 201, self._create(rt, strategy.decoded(rt, applied), options, applied_set)
            wanted_rv = applied["metadata"].get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise modified_conflict(rt, name)
            entries = decode_managed(old["metadata"].get("managedFields"))
            mine = entry_for(entries, options.manager, "Apply", rt.api_version, sub)
            current = view(rt, old, sub)
            others = [e for e in entries if e is not mine]
            conflicts = [
                (path, entry)
                for entry in others
                if entry.manager != options.manager
                for path in sorted(applied_set & entry.fields)
                if _leaf_differs(current, part, path, schema)
            ]
            if conflicts and not force and not _upgrades_client_side_apply(rt, old, conflicts, options.manager):
                raise _apply_conflict(conflicts)
            for path, entry in conflicts:
                entry.set_fields(entry.fields - {path})
            merged = copy(merge_apply(current, part, schema))
            kept = set(applied_set).union(*(e.fields for e in others))
            for path in sorted(mine.fields - kept, key=len, reverse=True):
                if not any(len(k) > len(path) and k[: len(path)] == path for k in kept):
                    delete_path(merged, path)
                    _prune_empty(merged, path[:-1], kept)
            mine.set_fields(applied_set)
            new = strategy.decoded(rt, copy(rebuild(rt, old, merged, sub)))
            if options.manager == "kubectl" and LAST_APPLIED in (old["metadata"].get("annotations") or {}):
                new["metadata"].setdefault("annotations", {})[LAST_APPLIED] = _last_applied(body)
            self._finish(rt, new, old, sub)
            return 200, self._commit(rt, old, new, entries, options, sub)

    def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        change: Callable[[Obj], Obj],
        options: WriteOptions,
        sub: Subresource = None,
    ) -> Obj:
        """A JSON, merge or strategic-merge patch: `change` maps the current object to the wanted one."""
        with self._lock:  # read-modify-write without a window for others, as the API server retries
            current = self.get(rt, namespace, name)
            patched = change(copy(current))
            meta = patched.get("metadata") if isinstance(patched, dict) else None
            if isinstance(meta, dict) and "resourceVersion" not in meta:  # a patch only conflicts when it names one
                meta["resourceVersion"] = current["metadata"]["resourceVersion"]
            return self.replace(rt, namespace, name, patched, options, sub)

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        options: WriteOptions,
        preconditions: Obj | None = None,
        propagation: Propagation | None = None,
    ) -> tuple[Obj, bool]:
        """(object, gone): gone now, or only marked (deletionTimestamp) while finalizers remain."""
        with self._lock:
            old = self.get(rt, namespace, name)
            preconditions = preconditions or {}
            if preconditions.get("uid") and preconditions["uid"] != old["metadata"]["uid"]:
                raise _precondition(rt, name, "UID", preconditions["uid"], old["metadata"]["uid"])
            rv = preconditions.get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise _precondition(rt, name, "ResourceVersion", rv, old["metadata"]["resourceVersion"])
            if propagation is None:
                propagation = "Orphan" if (rt.group, rt.kind) in ORPHAN_BY_DEFAULT else "Background"
            marked = copy(old)
            meta = marked["metadata"]
            finalizers = list(meta.get("finalizers") or [])
            gc = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}.get(propagation)
            if gc and gc not in finalizers and not meta.get("deletionTimestamp"):
                finalizers.append(gc)
            held = strategy.held_on_delete(rt, marked) or bool(finalizers)
            if not held:
                if options.dry_run:
                    return old, True
                return self._remove(rt, old), True
            if meta.get("deletionTimestamp"):
                return old, False  # being deleted already
            meta["deletionTimestamp"] = now()
            meta["deletionGracePeriodSeconds"] = 0
            if finalizers:
                meta["finalizers"] = finalizers
            strategy.on_delete(rt, marked)
            return self._commit(rt, old, marked, decode_managed(meta.get("managedFields")), options), False

    # --- internals -----------------------------------------------------------------------------------------

    def _decoded(
        self,
        rt: ResourceType,
        namespace: str | None,
        body: Any,
        name: str | None,
        options: WriteOptions,
        apply: bool = False,
    ) -> Obj:
        """A request body as the API server reads it: identity checked, typed by the schema, unknown fields gone."""
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON or YAML object")
        body = dict(body)
        if rt.custom and not body.get("kind"):
            shown = json.dumps(body, separators=(",", ":"))
            raise bad_request(
                f"the object provided is unrecognized (must be of type {rt.kind}): "
                f"Object 'Kind' is missing in '{shown}' ({shown})"
            )
        body.setdefault("apiVersion", rt.api_version)
        body.setdefault("kind", rt.kind)
        if body["apiVersion"] != rt.api_version or body["kind"] != rt.kind:
            raise bad_request(
                f"the API version in the data ({body['apiVersion']}) and kind ({body['kind']}) do not match "
                f"the expected API version ({rt.api_version}) and kind ({rt.kind})"
            )
        meta = body.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: metadata must be an object'
            )
        decoded = decode(rt, body)
        if apply:
            apply_unknown(rt, name or "", decoded, options.validation)
        else:
            check_unknown(rt, decoded, options.validation, options.warnings)
        obj = decoded.obj
        meta = obj.setdefault("metadata", {})
        if name is not None and meta.get("name", name) != name:
            raise bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        if name is not None:
            meta["name"] = name
        if rt.namespaced:
            if meta.get("namespace", namespace) != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        ordered = {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": meta}
        merged = {**ordered, **obj}
        return merged if apply else strategy.decoded(rt, merged)

    def _finish(self, rt: ResourceType, obj: Obj, old: Obj | None, sub: Subresource) -> None:
        """Defaulting and the update strategy, on what a write leaves (main resource writes only default)."""
        if sub is None:
            default(obj, rt.schema)
            strategy.template_generation(rt, obj, old)
        if old is not None:
            strategy.prepare_update(rt, obj, old, sub)
        default(obj, rt.schema)
        encode_object(rt, obj)

    def _create(self, rt: ResourceType, obj: Obj, options: WriteOptions, applied: set[Any] | None) -> Obj:
        with self._lock:
            meta = obj["metadata"]
            if rt.namespaced:
                strategy.admit_namespace(self, rt, obj)
            if self._key(rt, meta.get("namespace"), meta["name"]) in self._store(rt):
                raise already_exists(rt, meta["name"])
            for key in SERVER_METADATA:
                meta.pop(key, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            if rt.tracks_generation:
                meta["generation"] = 1
            default(obj, rt.schema)
            strategy.template_generation(rt, obj, None)
            encode_object(rt, obj)
            if applied is not None:
                entry = ManagedEntry(options.manager, "Apply", rt.api_version, now(), applied)
            else:  # an Update owns what decoding and defaulting gave it; not what the registry adds next
                changed, _ = compare(_compared(rt, _zero(rt), None), _compared(rt, obj, None), rt.schema)
                entry = ManagedEntry(options.manager, "Update", rt.api_version, now(), changed)
            strategy.prepare_create(self, rt, obj)
            default(obj, rt.schema)  # what the API server's read back from storage defaults
            encode_object(rt, obj)
            return self._commit(rt, None, obj, [entry], options)

    def _commit(
        self,
        rt: ResourceType,
        old: Obj | None,
        new: Obj,
        entries: list[ManagedEntry],
        options: WriteOptions,
        sub: Subresource = None,
    ) -> Obj:
        meta = new["metadata"]
        if old is not None:
            for key in ("uid", "creationTimestamp", "resourceVersion", "generation", "deletionTimestamp"):
                if key in old["metadata"]:
                    meta[key] = old["metadata"][key]
            if "deletionGracePeriodSeconds" in old["metadata"]:
                meta.setdefault("deletionGracePeriodSeconds", old["metadata"]["deletionGracePeriodSeconds"])
            if rt.tracks_generation and sub is None and strategy.new_generation(rt, old, new):
                meta["generation"] = int(old["metadata"].get("generation", 0)) + 1
        kept = [e for e in entries if e.fields]
        meta["managedFields"] = [e.encode() for e in kept]
        if not meta["managedFields"]:
            del meta["managedFields"]
        validate(rt, new, old)
        if old is not None and new == old:
            return old  # nothing changed: no new resourceVersion, no event
        if options.dry_run:
            return new
        with self._lock:
            if old is not None and meta.get("deletionTimestamp") and strategy.finished(rt, new):
                return self._remove(rt, new)
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            stored = convert(copy(new), self._storage_type(rt))
            self._store(rt)[self._key(rt, meta.get("namespace"), meta["name"])] = stored
            self._emit(Event("MODIFIED" if old else "ADDED", rt.qualified, self._rv, stored, self._stored_old(rt, old)))
        return new

    def _storage_type(self, rt: ResourceType) -> ResourceType:
        return self.catalogue.named(rt.qualified) if not rt.custom else rt

    def _stored_old(self, rt: ResourceType, old: Obj | None) -> Obj | None:
        if old is None:
            return None
        return self._store(rt).get(self._key(rt, old["metadata"].get("namespace"), old["metadata"]["name"]))

    def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        meta = obj["metadata"]
        key = self._key(rt, meta.get("namespace"), meta["name"])
        stored = self._store(rt).pop(key, None)
        if stored is None:
            return obj
        gone = copy(stored)
        self._rv += 1
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._emit(Event("DELETED", rt.qualified, self._rv, gone, stored))
        return convert(copy(obj), rt)

    def _emit(self, event: Event) -> None:
        self._history.append(event)
        while len(self._history) > HISTORY_LIMIT:
            self._compacted = self._history.popleft().rv
        for listener in self._listeners:
            listener(event)
        for watch in self._watches.values():
            if watch.rt.qualified == event.resource:
                watch.deliver(event)

    # --- watches -------------------------------------------------------------------------------------------

    def open_watch(
        self, rt: ResourceType, since: int | None, deliver: Callable[[Event | str], None]
    ) -> tuple[int, list[Event], int]:
        """Register a watch; returns (id, events to send first, resourceVersion they bring the client to).

        From `since`: the kept events after it (Expired if it is older than the history). Without: the
        current objects as synthetic ADDED events, as the API server does.
        """
        with self._lock:
            if since is None:
                backlog = [
                    Event("ADDED", rt.qualified, int(o["metadata"]["resourceVersion"]), o)
                    for _, o in sorted(self._store(rt).items())
                ]
            elif since < self._compacted:
                raise Expired(f"too old resource version: {since} ({self._compacted + 1})")
            else:
                backlog = [e for e in self._history if e.rv > since and e.resource == rt.qualified]
            self._next_watch += 1
            self._watches[self._next_watch] = _Watch(rt, deliver)
            return self._next_watch, backlog, self._rv

    def close_watch(self, watch_id: int) -> None:
        with self._lock:
            self._watches.pop(watch_id, None)

    def end_watches(self, signal_: str = "close") -> int:
        with self._lock:
            watches = list(self._watches.values())
        for watch in watches:
            watch.deliver(signal_)
        return len(watches)

    def drop_watches(self) -> int:
        return self.end_watches("drop")

    def expire_watches(self) -> int:
        self.compact()
        return self.end_watches("expire")


def _leaf_differs(current: Obj, applied: Obj, path: tuple[str, ...], schema: Schema) -> bool:
    """A conflict is a value the apply would change: list items and maps merge, only their leaves conflict."""
    wanted = get_path(applied, path)
    return is_leaf(wanted, _schema_at(schema, path)) and get_path(current, path) != wanted


def _last_applied(body: Obj) -> str:
    """The applied configuration, as the API server writes it into kubectl's last-applied annotation."""
    config = copy(body)
    annotations = (config.get("metadata") or {}).get("annotations") or {}
    annotations.pop(LAST_APPLIED, None)
    if "annotations" in (config.get("metadata") or {}) and not annotations:
        config["metadata"]["annotations"] = annotations
    return json.dumps(config, separators=(",", ":"), sort_keys=True) + "\n"


def _upgrades_client_side_apply(
    rt: ResourceType, live: Obj, conflicts: list[tuple[tuple[str, ...], ManagedEntry]], manager: str
) -> bool:
    """The API server lets `kubectl apply --server-side` take over from client-side `kubectl apply`.

    Conflicts are forgiven for manager "kubectl" when they are all on fields of the last-applied annotation
    that still hold the last-applied value.
    """
    annotation = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if manager != "kubectl" or not annotation:
        return False
    try:
        last = view(rt, json.loads(annotation), None)
    except (ValueError, AttributeError):
        return False
    current = view(rt, live, None)
    allowed = {p for p in applied_fields(last, rt.schema) if get_path(last, p) == get_path(current, p)}
    return all(path in allowed for path, _ in conflicts)


def _prune_empty(obj: Obj, path: tuple[str, ...], kept: set[tuple[str, ...]]) -> None:
    while path:
        value = get_path(obj, path)
        if value in ({}, []) and path not in kept:
            delete_path(obj, path)
            path = path[:-1]
        else:
            return


def _apply_conflict(conflicts: list[tuple[tuple[str, ...], ManagedEntry]]) -> ApiError:
    causes = [
        {"reason": "FieldManagerConflict", "message": f"conflict with {e.describe()}", "field": dotted(p)}
        for p, e in conflicts
    ]
    if len(conflicts) == 1:
        path, entry = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {entry.describe()}: {dotted(path)}"
    else:
        by_manager: dict[str, list[str]] = {}
        for path, entry in conflicts:
            by_manager.setdefault(entry.describe(), []).append(dotted(path))
        lines = []
        for manager in sorted(by_manager):
            lines.append(f"conflicts with {manager}:")
            lines += [f"- {p}" for p in by_manager[manager]]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, {"causes": causes})


def _precondition(rt: ResourceType, name: str, what: str, wanted: str, actual: str) -> ApiError:
    """A delete's failed precondition, worded as the API server's BeforeDelete words it (by kind, not resource)."""
    why = "deleted and then recreated" if what == "UID" else "modified"
    message = (
        f'Operation cannot be fulfilled on {rt.qualified_kind} "{name}": the {what} in the precondition ({wanted}) '
        f"does not match the {what} in record ({actual}). The object might have been {why}"
    )
    return ApiError(409, "Conflict", message, details(rt, name, rt.kind))


# --- paged lists ------------------------------------------------------------------------------------------


def continue_token(rv: int, start: str) -> str:
    token = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


def read_continue(token: str) -> tuple[int, str]:
    """(resourceVersion, start key) of a continue token; 400 if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        parsed = json.loads(raw)
        if parsed.get("v") != "meta.k8s.io/v1":
            raise ValueError(f"unrecognized encoded version {parsed.get('v')!r}")
        rv, start = int(parsed["rv"]), str(parsed["start"])
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as error:
        raise bad_request(f"invalid continue token: continue key is not valid: {error}") from None
    if rv == 0:
        why = "incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        raise bad_request(f"invalid continue token: continue key is not valid: {why}")
    return rv, start


def list_key(rt: ResourceType, namespace: str | None, key: tuple[str, str]) -> str:
    """An object's key below the list's prefix, as etcd3's continue tokens carry it."""
    ns, name = key
    if not rt.namespaced:
        return name
    return f"/{name}" if namespace else f"{ns}/{name}"


def forbidden_terminating(rt: ResourceType, name: str, namespace: str) -> ApiError:
    cause = {
        "reason": "NamespaceTerminating",
        "message": f"namespace {namespace} is being terminated",
        "field": "metadata.namespace",
    }
    return forbidden(
        rt, name, f"unable to create new content in namespace {namespace} because it is being terminated", [cause]
    )
