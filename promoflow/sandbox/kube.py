"""A Kubernetes API stand-in: a real HTTP server that the official clients (`kubernetes`, `kubectl`) use unchanged.

No real control plane can run on one machine without containers, so tests and the demo talk to this.
It keeps objects in memory and gets right what a promoter depends on: resourceVersion and conflicts,
generation, status subresources, server-side apply with managedFields, watches, dry runs, discovery and
Status error bodies. Everything it serves is simulated: the server calls itself v1.31.0-promoflow-sandbox,
no workload runs, and the controllers in `kube_controllers` only write status.

    with KubeStandIn() as kube:
        kube.write_kubeconfig(tmp / "kubeconfig")
        kube.cluster.rollouts.behave("*:broken*", "never_ready")
        kube.cluster.argocd.report("web-prod", revision="abc123")
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import json
import logging
import re
import signal
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import yaml
from aiohttp import web

from promoflow.sandbox.kube_controllers import ArgoCD, Event, Faults, Flux, Rollouts, now

logger = logging.getLogger(__name__)
Obj = dict[str, Any]
FieldPath = tuple[str, ...]  # managedFields path elements: "f:spec", 'k:{"name":"web"}'
Subresource = Literal["status"] | None

GIT_VERSION = "v1.31.0-promoflow-sandbox"
VERSION_INFO = {
    "major": "1",
    "minor": "31",
    "gitVersion": GIT_VERSION,
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}
HISTORY_LIMIT = 10_000  # watch events kept for resuming; older resourceVersions get 410 Expired
DEFAULT_WATCH_SECONDS = 1800.0


# --- resource types ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status: bool = False  # has a /status subresource
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

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
    def custom(self) -> bool:
        return self.group not in ("", "apps")

    @property
    def tracks_generation(self) -> bool:
        return self.group != ""  # apps and custom resources; core v1 kinds here have no generation


RESOURCE_TYPES = (
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False, status=True, short_names=("ns",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
    ResourceType("", "v1", "secrets", "Secret"),
    ResourceType("", "v1", "services", "Service", status=True, short_names=("svc",), categories=("all",)),
    ResourceType("apps", "v1", "deployments", "Deployment", status=True, short_names=("deploy",), categories=("all",)),
    ResourceType("apps", "v1", "statefulsets", "StatefulSet", status=True, short_names=("sts",), categories=("all",)),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", status=True, short_names=("ds",), categories=("all",)),
    ResourceType("argoproj.io", "v1alpha1", "applications", "Application", short_names=("app", "apps")),
    ResourceType(
        "kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "Kustomization", status=True, short_names=("ks",)
    ),
)
BY_PATH = {(rt.api_version, rt.plural): rt for rt in RESOURCE_TYPES}
BY_QUALIFIED = {rt.qualified: rt for rt in RESOURCE_TYPES}
NAMESPACES = BY_QUALIFIED["namespaces"]
GROUP_VERSIONS = list(dict.fromkeys(rt.api_version for rt in RESOURCE_TYPES))

# Top-level fields of the built-in kinds; anything else is an unknown field (pruned, warned or refused).
KNOWN_FIELDS = {
    "Namespace": {"spec", "status"},
    "ConfigMap": {"data", "binaryData", "immutable"},
    "Secret": {"data", "stringData", "type", "immutable"},
    "Service": {"spec", "status"},
    "Deployment": {"spec", "status"},
    "StatefulSet": {"spec", "status"},
    "DaemonSet": {"spec", "status"},
}
METADATA_FIELDS = {
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
}
USER_METADATA = ("labels", "annotations", "ownerReferences", "finalizers")  # what managedFields track


# --- errors ------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An API failure answered with a `kind: Status` body."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Obj | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = details
        self.headers = headers or {}

    def status(self) -> Obj:
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
        body.update(message=self.message, reason=self.reason)
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(rt: ResourceType, name: str, **extra: Any) -> Obj:
    details: Obj = {"name": name}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.plural
    return {**details, **extra}


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found', _details(rt, name))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def modified_conflict(rt: ResourceType, name: str) -> ApiError:
    message = (
        f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    return ApiError(409, "Conflict", message, _details(rt, name))


def invalid(rt: ResourceType, name: str, causes: list[Obj]) -> ApiError:
    texts = [f"{c['field']}: {c['message']}" for c in causes]
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return ApiError(
        422, "Invalid", f'{rt.qualified_kind} "{name}" is invalid: {summary}', _details(rt, name, causes=causes)
    )


def _required(path: str) -> Obj:
    return {"reason": "FieldValueRequired", "message": "Required value", "field": path}


def _invalid_value(path: str, value: Any, why: str) -> Obj:
    return {"reason": "FieldValueInvalid", "message": f"Invalid value: {json.dumps(value)}: {why}", "field": path}


class Expired(Exception):
    """A watch asked for a resourceVersion older than the kept history."""


# --- field paths and managedFields -------------------------------------------------------------------

_MISSING: Any = object()
LIST_KEYS = {  # lists merged by key (as the real API's schemas declare); every other list is atomic
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "imagePullSecrets": ("name",),
    "volumeMounts": ("mountPath",),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
}
KEY_DEFAULTS = {"protocol": "TCP"}


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _list_keys(name: str | None, items: Any) -> tuple[str, ...] | None:
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        return None
    keys: tuple[str, ...] | None = LIST_KEYS.get(name or "")
    if name == "ports":
        keys = ("containerPort", "protocol") if all("containerPort" in i for i in items) else ("port", "protocol")
    if keys and all(all(k in i or k in KEY_DEFAULTS for k in keys) for i in items):
        return keys
    return None


def _item_element(item: Obj, keys: tuple[str, ...]) -> str:
    key = {k: item.get(k, KEY_DEFAULTS.get(k)) for k in keys}
    return "k:" + json.dumps(key, sort_keys=True, separators=(",", ":"))


def _child(node: Any, element: str) -> Any:
    if element.startswith("f:"):
        return node.get(element[2:], _MISSING) if isinstance(node, dict) else _MISSING
    if isinstance(node, list):
        wanted = _key_of(element)
        for item in node:
            if isinstance(item, dict) and all(item.get(k, KEY_DEFAULTS.get(k)) == v for k, v in wanted):
                return item
    return _MISSING


@functools.lru_cache(maxsize=4096)
def _key_of(element: str) -> tuple[tuple[str, Any], ...]:
    return tuple(json.loads(element[2:]).items())


def _get(obj: Any, path: FieldPath) -> Any:
    for element in path:
        obj = _child(obj, element)
        if obj is _MISSING:
            break
    return obj


def _delete(obj: Obj, path: FieldPath) -> None:
    parent = _get(obj, path[:-1])
    target = _child(parent, path[-1])
    if target is _MISSING:
        return
    if isinstance(parent, dict):
        del parent[path[-1][2:]]
    else:
        parent.remove(target)


def fieldset(value: Any, path: FieldPath = ()) -> set[FieldPath]:
    """Leaf fields and keyed list items of an object, as managedFields record them."""
    out: set[FieldPath] = set()
    if not isinstance(value, dict):
        return out
    for key, child in value.items():
        here = (*path, "f:" + key)
        keys = _list_keys(key, child)
        if keys:
            for item in child:
                item_path = (*here, _item_element(item, keys))
                out.add(item_path)
                out |= fieldset(item, item_path)
        elif isinstance(child, dict) and child:
            out |= fieldset(child, here)
        else:
            out.add(here)
    return out


def _is_value(path: FieldPath) -> bool:
    return path[-1].startswith("f:")


def _dotted(path: FieldPath) -> str:
    text = ""
    for element in path:
        if element.startswith("f:"):
            text += "." + element[2:]
        else:
            key = json.loads(element[2:])
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in key.items()) + "]"
    return text


def fields_v1(paths: Iterable[FieldPath]) -> Obj:
    root: Obj = {}
    for path in paths:
        node = root
        for element in path:
            node = node.setdefault(element, {})
        node["."] = {}

    def finish(node: Obj) -> Obj:
        children = {k: finish(v) for k, v in sorted(node.items()) if k != "."}
        return {".": {}, **children} if "." in node and children else children

    return finish(root)


def parse_fields_v1(node: Obj, prefix: FieldPath = ()) -> set[FieldPath]:
    out: set[FieldPath] = set()
    for key, child in node.items():
        if key == ".":
            out.add(prefix)
        elif isinstance(child, dict) and child:
            out |= parse_fields_v1(child, (*prefix, key))
        else:
            out.add((*prefix, key))
    return out


@dataclass
class ManagedEntry:
    manager: str
    operation: str  # Apply | Update
    api_version: str
    time: str
    fields: set[FieldPath]
    subresource: str | None = None
    encoded: Obj | None = None  # fieldsV1 as read, while fields are unchanged

    def is_(self, manager: str, operation: str, subresource: str | None) -> bool:
        return (self.manager, self.operation, self.subresource) == (manager, operation, subresource)

    def encode(self) -> Obj:
        entry: Obj = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.encoded if self.encoded is not None else fields_v1(self.fields),
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


def decode_managed(managed: Any) -> list[ManagedEntry]:
    entries = []
    for raw in managed if isinstance(managed, list) else []:
        if isinstance(raw, dict) and raw.get("manager") and isinstance(raw.get("fieldsV1"), dict):
            entries.append(
                ManagedEntry(
                    str(raw["manager"]),
                    str(raw.get("operation", "Update")),
                    str(raw.get("apiVersion", "")),
                    str(raw.get("time", now())),
                    parse_fields_v1(raw["fieldsV1"]),
                    raw.get("subresource"),
                    raw["fieldsV1"],
                )
            )
    return entries


def _entry_for(
    entries: list[ManagedEntry], rt: ResourceType, manager: str, operation: str, sub: Subresource
) -> ManagedEntry:
    for entry in entries:
        if entry.is_(manager, operation, sub):
            return entry
    entry = ManagedEntry(manager, operation, rt.api_version, now(), set(), sub)
    entries.append(entry)
    return entry


def _set_fields(entry: ManagedEntry, fields: set[FieldPath]) -> None:
    if fields != entry.fields:  # unchanged ownership keeps its time, so a repeated write is a no-op
        entry.fields, entry.time, entry.encoded = fields, now(), None


# --- views: the part of an object a write (main resource or /status) may change ---------------------


def _in_view(rt: ResourceType, key: str, sub: Subresource) -> bool:
    if sub == "status":
        return key == "status"
    return key not in ("apiVersion", "kind", "metadata") and not (key == "status" and rt.status)


def view(rt: ResourceType, obj: Obj, sub: Subresource) -> Obj:
    out = {k: v for k, v in obj.items() if _in_view(rt, k, sub)}
    if sub is None:
        meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k in USER_METADATA}
        if meta:
            out["metadata"] = meta
    return out


def rebuild(rt: ResourceType, base: Obj, part: Obj, sub: Subresource) -> Obj:
    """`base` with its view replaced by `part`, keys in the usual order."""
    meta = {k: v for k, v in (base.get("metadata") or {}).items() if sub == "status" or k not in USER_METADATA}
    if sub is None:
        meta.update(part.get("metadata") or {})
    out: Obj = {"apiVersion": base.get("apiVersion"), "kind": base.get("kind"), "metadata": meta}
    out.update({k: v for k, v in base.items() if k not in out and not _in_view(rt, k, sub)})
    out.update({k: v for k, v in part.items() if k != "metadata"})
    return out


# --- patches -----------------------------------------------------------------------------------------


def merge_apply(current: Any, applied: Any, name: str | None = None) -> Any:
    """Server-side apply's merge: maps recursively, keyed lists item by item, anything else replaced."""
    if isinstance(current, dict) and isinstance(applied, dict):
        out = dict(current)
        for key, value in applied.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merge_apply(current[key], value, key) if key in current else value
        return out
    keys = _list_keys(name, applied)
    if keys and isinstance(current, list) and (not current or _list_keys(name, current) == keys):
        out_list = list(current)
        positions = {_item_element(item, keys): i for i, item in enumerate(out_list)}
        for item in applied:
            element = _item_element(item, keys)
            if element in positions:
                out_list[positions[element]] = merge_apply(out_list[positions[element]], item)
            else:
                positions[element] = len(out_list)
                out_list.append(item)
        return out_list
    return applied


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def strategic_merge(target: Any, patch: Any) -> Any:
    """Strategic merge patch: maps merge, keyed lists merge by key, $patch/$retainKeys/$deleteFromPrimitiveList."""
    if not isinstance(patch, dict):
        return _strip_directives(patch)
    if patch.get("$patch") == "replace":
        return _strip_directives(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(out.get(name), list) and isinstance(value, list):
                out[name] = [v for v in out[name] if v not in value]
        elif key.startswith("$"):
            continue
        elif value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            out.pop(key, None)
        elif isinstance(value, list):
            out[key] = _strategic_list(out.get(key), value, key)
        else:
            out[key] = strategic_merge(out.get(key), value)
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _strategic_list(current: Any, patch: list[Any], name: str) -> list[Any]:
    def directive(item: Any) -> Any:
        return item.get("$patch") if isinstance(item, dict) else None

    if any(directive(item) == "replace" for item in patch):
        return [_strip_directives(item) for item in patch if directive(item) != "replace"]
    keys = _list_keys(name, patch)
    if not keys or not isinstance(current, list) or (current and _list_keys(name, current) != keys):
        return [_strip_directives(item) for item in patch if directive(item) != "delete"]
    out = list(current)
    positions = {_item_element(item, keys): i for i, item in enumerate(out)}
    deleted = set()
    for item in patch:
        element = _item_element(item, keys)
        if directive(item) == "delete":
            deleted.add(element)
        elif element in positions:
            out[positions[element]] = strategic_merge(out[positions[element]], item)
        else:
            positions[element] = len(out)
            out.append(_strip_directives(item))
    return [item for item in out if _item_element(item, keys) not in deleted]


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]] if path else []


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch."""
    if not isinstance(operations, list):
        raise bad_request("a JSON patch must be a list of operations")
    doc = _copy(doc)

    def unprocessable(message: str) -> ApiError:
        return ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: {message}")

    def locate(parts: list[str]) -> tuple[Any, str]:
        if not parts:
            raise unprocessable("the root cannot be patched")
        node = doc
        for part in parts[:-1]:
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError, TypeError):
                raise unprocessable(f"path /{'/'.join(parts)} does not exist") from None
        return node, parts[-1]

    def read(parts: list[str]) -> Any:
        node, last = locate(parts)
        try:
            return node[int(last)] if isinstance(node, list) else node[last]
        except (KeyError, IndexError, ValueError, TypeError):
            raise unprocessable(f"path /{'/'.join(parts)} does not exist") from None

    def remove(parts: list[str]) -> Any:
        value = read(parts)
        node, last = locate(parts)
        del node[int(last) if isinstance(node, list) else last]
        return value

    def add(parts: list[str], value: Any) -> None:
        node, last = locate(parts)
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if not 0 <= index <= len(node):
                raise unprocessable(f"index {last} out of range")
            node.insert(index, value)
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise unprocessable(f"cannot add to /{'/'.join(parts)}")

    for op in operations:
        if not isinstance(op, dict) or op.get("op") not in ("add", "remove", "replace", "move", "copy", "test"):
            raise bad_request(f"invalid JSON patch operation {op!r}")
        path = _pointer(op.get("path"))
        kind = op["op"]
        if kind == "add":
            add(path, op.get("value"))
        elif kind == "remove":
            remove(path)
        elif kind == "replace":
            remove(path)
            add(path, op.get("value"))
        elif kind == "move":
            add(path, remove(_pointer(op.get("from"))))
        elif kind == "copy":
            add(path, _copy(read(_pointer(op.get("from")))))
        elif read(path) != op.get("value"):
            raise unprocessable(f"testing value /{'/'.join(path)} failed")
    return doc


# --- defaults, validation, selectors -----------------------------------------------------------------

SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _pod_defaults(template: Obj) -> None:
    spec = template.setdefault("spec", {})
    for key, value in (
        ("restartPolicy", "Always"),
        ("terminationGracePeriodSeconds", 30),
        ("dnsPolicy", "ClusterFirst"),
        ("schedulerName", "default-scheduler"),
        ("securityContext", {}),
    ):
        spec.setdefault(key, value)
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if not isinstance(container, dict):
            continue
        image = str(container.get("image", ""))
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest and "@" not in image else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def apply_defaults(rt: ResourceType, obj: Obj, allocate_ip: Callable[[], str]) -> None:
    """What the API server's defaulting fills in (owned by no field manager)."""
    spec = obj.get("spec")
    if rt.kind == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj["status"] = {"phase": "Active", **(obj.get("status") or {})}  # a copy: status may be shared
    elif rt.kind == "Secret":
        obj.setdefault("type", "Opaque")
    elif rt.kind == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if "clusterIP" not in spec:
            spec["clusterIP"] = allocate_ip()
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        obj.setdefault("status", {"loadBalancer": {}})
    elif rt.group == "apps" and isinstance(spec, dict):
        if isinstance(spec.get("template"), dict):
            _pod_defaults(spec["template"])
        spec.setdefault("revisionHistoryLimit", 10)
        if rt.kind == "Deployment":
            spec.setdefault("replicas", 1)
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault(
                "strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
            )
        elif rt.kind == "StatefulSet":
            spec.setdefault("replicas", 1)
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        else:
            spec.setdefault(
                "updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
            )


def validate(rt: ResourceType, obj: Obj, old: Obj | None) -> None:
    meta = obj["metadata"]
    name = meta["name"]
    causes: list[Obj] = []
    label = rt.kind in ("Namespace", "Service")  # these names become DNS labels
    if not (LABEL if label else SUBDOMAIN).match(name) or len(name) > (63 if label else 253):
        what = (
            "label must consist of lower case alphanumeric characters or '-'"
            if label
            else ("subdomain must consist of lower case alphanumeric characters, '-' or '.'")
        )
        why = f"a lowercase RFC 1123 {what}, and must start and end with an alphanumeric character"
        causes.append(_invalid_value("metadata.name", name, why))
    if rt.group == "apps":
        spec = obj.get("spec") or {}
        selector = spec.get("selector")
        template = spec.get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
            causes.append(_required("spec.selector"))
        elif any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
            causes.append(
                _invalid_value("spec.template.metadata.labels", labels, "`selector` does not match template `labels`")
            )
        if old is not None and (old.get("spec") or {}).get("selector") != selector:
            causes.append(_invalid_value("spec.selector", selector, "field is immutable"))
        containers = (template.get("spec") or {}).get("containers")
        if not containers:
            causes.append(_required("spec.template.spec.containers"))
        for i, container in enumerate(containers or []):
            for key in ("name", "image"):
                if not isinstance(container, dict) or not container.get(key):
                    causes.append(_required(f"spec.template.spec.containers[{i}].{key}"))
    if causes:
        raise invalid(rt, name, causes)


def _check_strings(rt: ResourceType, obj: Obj) -> None:
    """Maps of strings that Go would fail to decode (a classic: `enabled: true` in a ConfigMap)."""
    meta = obj.get("metadata") or {}
    maps = [("metadata.labels", meta.get("labels")), ("metadata.annotations", meta.get("annotations"))]
    if rt.kind in ("ConfigMap", "Secret"):
        maps += [("data", obj.get("data")), ("stringData", obj.get("stringData"))]
    for where, value in maps:
        if value is None:
            continue
        bad = [k for k, v in value.items() if not isinstance(v, str)] if isinstance(value, dict) else ["(not a map)"]
        if bad:
            raise bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                f"{where}.{bad[0]}: expected string, got {json.dumps((value or {}).get(bad[0]))}"
            )


def _split_terms(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    return [t.strip() for t in [*terms, current] if t.strip()]


@dataclass(frozen=True)
class Selector:
    labels: tuple[Callable[[dict[str, str]], bool], ...] = ()
    fields: tuple[tuple[str, str, bool], ...] = ()  # (field, value, equal)

    @classmethod
    def parse(cls, label_selector: str | None, field_selector: str | None) -> Selector:
        labels = tuple(_label_requirement(term) for term in _split_terms(label_selector or ""))
        fields = []
        for term in _split_terms(field_selector or ""):
            match = re.fullmatch(r"([\w.]+)\s*(==|=|!=)\s*(.*)", term)
            if not match:
                raise bad_request(f"invalid field selector: {term!r}")
            name, op, value = match.groups()
            if name not in ("metadata.name", "metadata.namespace"):
                raise bad_request(
                    f'field label not supported: {name} (the sandbox knows "metadata.name", "metadata.namespace")'
                )
            fields.append((name.split(".")[1], value, op != "!="))
        return cls(labels, tuple(fields))

    def matches(self, obj: Obj) -> bool:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        return all(f(labels) for f in self.labels) and all(
            (meta.get(name, "") == value) == equal for name, value, equal in self.fields
        )


def _label_requirement(term: str) -> Callable[[dict[str, str]], bool]:
    key = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
    if match := re.fullmatch(rf"({key})\s+(in|notin)\s+\(([^)]*)\)", term):
        name, op, raw = match.groups()
        values = {v.strip() for v in raw.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(name) in values
        return lambda labels: labels.get(name) not in values
    if match := re.fullmatch(rf"({key})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)", term):
        name, op, value = match.groups()
        if op == "!=":
            return lambda labels: labels.get(name) != value
        return lambda labels: labels.get(name) == value
    if match := re.fullmatch(rf"(!?)\s*({key})", term):
        negate, name = match.groups()
        return lambda labels: (name in labels) != bool(negate)
    raise bad_request(f"unable to parse requirement: {term!r}")


# --- the cluster: objects, resourceVersions, writes, watches -----------------------------------------


@dataclass
class WriteOptions:
    manager: str
    dry_run: bool = False
    validation: Literal["Ignore", "Warn", "Strict"] = "Warn"
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Watch:
    rt: ResourceType
    deliver: Callable[[Event | str], None]


class Cluster:
    """The simulated cluster's state and its Python controls (`rollouts`, `argocd`, `flux`, `faults`).

    Thread-safe: the HTTP server, the simulators and test code all call in.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._objects: dict[ResourceType, dict[tuple[str, str], Obj]] = {rt: {} for rt in RESOURCE_TYPES}
        self._rv = 0
        self._history: deque[Event] = deque()
        self._compacted = 0  # events up to this resourceVersion are gone
        self._listeners: list[Callable[[Event], None]] = []
        self._watches: dict[int, _Watch] = {}
        self._next_watch = 0
        self._next_ip = 0
        self.rollouts = Rollouts(self)
        self.argocd = ArgoCD(self)
        self.flux = Flux(self)
        self.faults = Faults(self._drop_watches, self._expire_watches)
        self.requests: Counter[str] = Counter()  # resource requests served, by verb (discovery excluded)
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            self.create(NAMESPACES, None, namespace, WriteOptions("kube-apiserver"))

    # Python API

    @property
    def resource_version(self) -> int:
        return self._rv

    def find(self, resource: str, namespace: str, name: str) -> Obj | None:
        """The stored object (`resource` as plural.group, e.g. "deployments.apps"), or None."""
        rt = BY_QUALIFIED[resource]
        with self._lock:
            obj = self._objects[rt].get((namespace if rt.namespaced else "", name))
        return _copy(obj) if obj is not None else None

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Called (under the store lock, so keep it quick) with every committed change, in order."""
        with self._lock:
            self._listeners.append(listener)

    def write_status(self, resource: str, namespace: str, name: str, status: Obj, manager: str) -> Obj:
        """What a controller does: replace .status (through /status where the kind has it). KeyError if gone."""
        rt = BY_QUALIFIED[resource]
        sub: Subresource = "status" if rt.status else None
        with self._lock:
            current = self._objects[rt].get(self._key(rt, namespace, name))
            if current is None:
                raise KeyError(f"no {rt.qualified} {namespace}/{name} in the sandbox cluster")
            return self.replace(
                rt,
                current["metadata"].get("namespace"),
                name,
                {**current, "status": status},
                WriteOptions(manager),
                sub,
            )

    def compact(self) -> None:
        """Forget the event history, as etcd compaction does: watches resuming from before now get 410."""
        with self._lock:
            self._history.clear()
            self._compacted = self._rv

    # reads

    def _key(self, rt: ResourceType, namespace: str | None, name: str) -> tuple[str, str]:
        return (namespace or "") if rt.namespaced else "", name

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        with self._lock:
            obj = self._objects[rt].get(self._key(rt, namespace, name))
        if obj is None:
            raise not_found(rt, name)
        return obj

    def select(self, rt: ResourceType, namespace: str | None, selector: Selector) -> tuple[list[Obj], int]:
        with self._lock:
            items = [
                obj
                for (ns, _), obj in sorted(self._objects[rt].items())
                if (namespace is None or ns == namespace) and selector.matches(obj)
            ]
            return items, self._rv

    # writes

    def create(self, rt: ResourceType, namespace: str | None, body: Any, options: WriteOptions) -> Obj:
        obj = self._prepare(rt, namespace, body, None, options)
        meta = obj["metadata"]
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(rt, "", [_required("metadata.name")])
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        if rt.status:
            obj.pop("status", None)
        entry = ManagedEntry(options.manager, "Update", rt.api_version, now(), fieldset(view(rt, obj, None)))
        return self._create(rt, obj, [entry], options)

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
            new = self._prepare(rt, namespace, body, name, options)
            wanted_rv = new["metadata"].get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise modified_conflict(rt, name)
            entries = decode_managed(old["metadata"].get("managedFields"))
            sent = new["metadata"].get("managedFields")
            if sent is not None and sent != old["metadata"].get("managedFields"):
                entries = decode_managed(sent)  # clients may rewrite ownership (kubectl's CSA->SSA upgrade)
            before, after = view(rt, old, sub), view(rt, new, sub)
            merged = rebuild(rt, old, after, sub)
            self._defaults(rt, merged, sub)
            after = view(rt, merged, sub)
            old_fields, new_fields = fieldset(before), fieldset(after)
            changed = (new_fields - old_fields) | {
                p for p in new_fields & old_fields if _is_value(p) and _get(before, p) != _get(after, p)
            }
            removed = old_fields - new_fields
            for entry in entries:
                _set_fields(entry, entry.fields - changed - removed)
            mine = _entry_for(entries, rt, options.manager, "Update", sub)
            _set_fields(mine, mine.fields | changed)
            return self._commit(rt, old, merged, entries, options)

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
        with self._lock:
            applied = self._prepare(rt, namespace, body, name, options)
            part = view(rt, applied, sub)
            applied_fields = fieldset(part)
            try:
                old = self.get(rt, namespace, name)
            except ApiError:
                if sub:
                    raise
                if rt.status:
                    applied.pop("status", None)
                entry = ManagedEntry(options.manager, "Apply", rt.api_version, now(), applied_fields)
                return 201, self._create(rt, applied, [entry], options)
            wanted_rv = applied["metadata"].get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise modified_conflict(rt, name)
            entries = decode_managed(old["metadata"].get("managedFields"))
            mine = _entry_for(entries, rt, options.manager, "Apply", sub)
            current = view(rt, old, sub)
            others = [e for e in entries if e is not mine]
            conflicts = [
                (path, entry)
                for entry in others
                if entry.manager != options.manager
                for path in sorted(applied_fields & entry.fields)
                if _is_value(path) and _get(current, path) != _get(part, path)
            ]
            if conflicts and not force and not _upgrades_client_side_apply(rt, old, conflicts, options.manager):
                raise _apply_conflict(conflicts)
            for path, entry in conflicts:
                _set_fields(entry, entry.fields - {path})
            merged = _copy(merge_apply(current, part))
            kept = set(applied_fields).union(*(e.fields for e in others))
            for path in sorted(mine.fields - kept, key=len, reverse=True):
                if not any(len(k) > len(path) and k[: len(path)] == path for k in kept):
                    _delete(merged, path)
                    _prune_empty(merged, path[:-1], kept)
            _set_fields(mine, applied_fields)
            new = rebuild(rt, old, merged, sub)
            self._defaults(rt, new, sub)
            return 200, self._commit(rt, old, new, entries, options)

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
            return self.replace(rt, namespace, name, change(self.get(rt, namespace, name)), options, sub)

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        options: WriteOptions,
        precondition_rv: str | None = None,
    ) -> Obj:
        with self._lock:
            old = self.get(rt, namespace, name)
            if precondition_rv and precondition_rv != old["metadata"]["resourceVersion"]:
                raise modified_conflict(rt, name)
            if options.dry_run:
                return old
            if rt is NAMESPACES:
                for other in RESOURCE_TYPES:
                    for (ns, child), _ in list(self._objects[other].items()):
                        if other.namespaced and ns == name:
                            self.delete(other, ns, child, options)
            del self._objects[rt][self._key(rt, namespace, name)]
            gone = _copy(old)
            self._rv += 1
            gone["metadata"]["resourceVersion"] = str(self._rv)
            self._emit(Event("DELETED", rt.qualified, self._rv, gone, old))
            return gone

    # internals

    def _prepare(
        self, rt: ResourceType, namespace: str | None, body: Any, name: str | None, options: WriteOptions
    ) -> Obj:
        """Check a request body's identity and fields; returns a private copy with unknown fields pruned."""
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON or YAML object")
        obj = _copy(body)
        if not obj.get("kind"):
            raise bad_request(f"Object 'Kind' is missing in '{json.dumps(body)[:200]}'")
        if obj.get("apiVersion") != rt.api_version or obj.get("kind") != rt.kind:
            raise bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) and kind ({obj.get('kind')}) do not match "
                f"the expected API version ({rt.api_version}) and kind ({rt.kind})"
            )
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
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
        unknown = [
            k for k in obj if k not in ("apiVersion", "kind", "metadata") and k not in KNOWN_FIELDS.get(rt.kind, {k})
        ]
        unknown += [f"metadata.{k}" for k in meta if k not in METADATA_FIELDS]
        if unknown and options.validation == "Strict":
            raise bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: strict decoding error: '
                + ", ".join(f'unknown field "{u}"' for u in unknown)
            )
        for path in unknown:
            if options.validation == "Warn":
                options.warnings.append(f'unknown field "{path}"')
            if path.startswith("metadata."):
                del meta[path[len("metadata.") :]]
            else:
                del obj[path]
        _check_strings(rt, obj)
        if rt.kind == "Secret" and isinstance(obj.get("stringData"), dict):
            data = obj.setdefault("data", {}) or {}
            data.update({k: base64.b64encode(v.encode()).decode() for k, v in obj.pop("stringData").items()})
            obj["data"] = data
        return obj

    def _defaults(self, rt: ResourceType, obj: Obj, sub: Subresource) -> None:
        if sub is None:
            apply_defaults(rt, obj, self._allocate_ip)

    def _allocate_ip(self) -> str:
        self._next_ip += 1
        return f"10.96.{self._next_ip // 250}.{self._next_ip % 250 + 1}"

    def _create(self, rt: ResourceType, obj: Obj, entries: list[ManagedEntry], options: WriteOptions) -> Obj:
        with self._lock:
            meta = obj["metadata"]
            if rt.namespaced and ("", meta["namespace"] or "") not in self._objects[NAMESPACES]:
                raise not_found(NAMESPACES, meta["namespace"] or "")
            if self._key(rt, meta.get("namespace"), meta["name"]) in self._objects[rt]:
                raise ApiError(
                    409, "AlreadyExists", f'{rt.qualified} "{meta["name"]}" already exists', _details(rt, meta["name"])
                )
            for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
                meta.pop(key, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now()
            if rt.tracks_generation:
                meta["generation"] = 1
            self._defaults(rt, obj, None)
            return self._commit(rt, None, obj, entries, options)

    def _commit(
        self, rt: ResourceType, old: Obj | None, new: Obj, entries: list[ManagedEntry], options: WriteOptions
    ) -> Obj:
        meta = new["metadata"]
        if old is not None:
            for key in ("uid", "creationTimestamp", "resourceVersion", "generation"):
                if key in old["metadata"]:
                    meta[key] = old["metadata"][key]
            if rt.tracks_generation and _spec_part(rt, old) != _spec_part(rt, new):
                meta["generation"] = int(old["metadata"].get("generation", 0)) + 1
        entries = [e for e in entries if e.fields]
        meta["managedFields"] = [e.encode() for e in entries]
        if not meta["managedFields"]:
            del meta["managedFields"]
        validate(rt, new, old)
        if old is not None and new == old:
            return old  # nothing changed: no new resourceVersion, no event
        if options.dry_run:
            return new
        with self._lock:
            self._rv += 1
            meta["resourceVersion"] = str(self._rv)
            self._objects[rt][self._key(rt, meta.get("namespace"), meta["name"])] = new
            self._emit(Event("MODIFIED" if old else "ADDED", rt.qualified, self._rv, new, old))
        return new

    def _emit(self, event: Event) -> None:
        self._history.append(event)
        while len(self._history) > HISTORY_LIMIT:
            self._compacted = self._history.popleft().rv
        for listener in self._listeners:
            listener(event)
        for watch in self._watches.values():
            if watch.rt.qualified == event.resource:
                watch.deliver(event)

    # watches

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
                    for o in self._objects[rt].values()
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

    def _drop_watches(self) -> int:
        return self.end_watches("drop")

    def _expire_watches(self) -> int:
        self.compact()
        return self.end_watches("expire")


def _spec_part(rt: ResourceType, obj: Obj) -> Obj:
    """What generation counts: all but metadata (and status, where a status subresource isolates it)."""
    return {
        k: v
        for k, v in obj.items()
        if k not in ("metadata", "apiVersion", "kind") and not (k == "status" and rt.status)
    }


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _upgrades_client_side_apply(
    rt: ResourceType, live: Obj, conflicts: list[tuple[FieldPath, ManagedEntry]], manager: str
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
    allowed = {p for p in fieldset(last) if _get(last, p) == _get(current, p)}
    return all(path in allowed for path, _ in conflicts)


def _prune_empty(obj: Obj, path: FieldPath, kept: set[FieldPath]) -> None:
    while path:
        value = _get(obj, path)
        if value in ({}, []) and path not in kept:
            _delete(obj, path)
            path = path[:-1]
        else:
            return


def _apply_conflict(conflicts: list[tuple[FieldPath, ManagedEntry]]) -> ApiError:
    def owner(entry: ManagedEntry) -> str:
        where = f' with subresource "{entry.subresource}"' if entry.subresource else ""
        return f'"{entry.manager}"{where} using {entry.api_version}'

    causes = [
        {"reason": "FieldManagerConflict", "message": f"conflict with {owner(e)}", "field": _dotted(p)}
        for p, e in conflicts
    ]
    if len(conflicts) == 1:
        path, entry = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {owner(entry)}: {_dotted(path)}"
    else:
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(
            f"conflict with {owner(e)}: {_dotted(p)}" for p, e in conflicts
        )
    return ApiError(409, "Conflict", message, {"causes": causes})


def _patched(rt: ResourceType, kind: str, body: bytes) -> Callable[[Obj], Obj]:
    """The function a PATCH applies to the current object (apply is handled by Cluster.apply)."""
    if kind == "strategic" and rt.custom:
        raise _unsupported_patch(rt)
    patch = _parse_body(body)
    if kind == "json":
        return lambda obj: json_patch(obj, patch)
    if not isinstance(patch, dict):
        raise bad_request("a merge patch must be a JSON object")
    return (lambda obj: merge_patch(obj, patch)) if kind == "merge" else (lambda obj: strategic_merge(obj, patch))


def _unsupported_patch(rt: ResourceType) -> ApiError:
    accepted = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
    if not rt.custom:
        accepted.insert(2, "application/strategic-merge-patch+json")
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: " + ", ".join(accepted),
    )


def _parse_body(raw: bytes) -> Any:
    if not raw.strip():
        raise bad_request("the request body is empty")
    try:
        return json.loads(raw)
    except ValueError:
        pass
    try:
        return yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as error:
        raise bad_request(f"the request body is neither JSON nor YAML: {error}") from None


# --- discovery, OpenAPI, tables ----------------------------------------------------------------------

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


def resource_list(group_version: str) -> Obj:
    resources: list[Obj] = []
    for rt in RESOURCE_TYPES:
        if rt.api_version != group_version:
            continue
        entry: Obj = {
            "name": rt.plural,
            "singularName": rt.kind.lower(),
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": VERBS,
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        if rt.status:
            resources.append(
                {
                    "name": f"{rt.plural}/status",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


def api_group(group: str) -> Obj:
    versions = [
        {"groupVersion": gv, "version": gv.split("/")[1]} for gv in GROUP_VERSIONS if gv.startswith(group + "/")
    ]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def _openapi_key(group_version: str) -> str:
    return f"apis/{group_version}" if "/" in group_version else f"api/{group_version}"


def _digest(document: Obj) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16].upper()


def openapi_root() -> Obj:
    return {
        "paths": {
            _openapi_key(gv): {
                "serverRelativeURL": f"/openapi/v3/{_openapi_key(gv)}?hash={_digest(openapi_document(gv))}"
            }
            for gv in GROUP_VERSIONS
        }
    }


def openapi_document(group_version: str) -> Obj:
    """Permissive schemas: every kind preserves unknown fields; PATCH lists fieldValidation (kubectl checks)."""
    schemas: Obj = {}
    paths: Obj = {}
    query = [
        {"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        for n in ("dryRun", "fieldManager", "fieldValidation")
    ]
    for rt in (rt for rt in RESOURCE_TYPES if rt.api_version == group_version):
        gvk = {"group": rt.group, "kind": rt.kind, "version": rt.version}
        prefix = {"": "io.k8s.api.core", "apps": "io.k8s.api.apps"}.get(
            rt.group, ".".join(reversed(rt.group.split(".")))
        )
        schema_name = f"{prefix}.{rt.version}.{rt.kind}"
        schemas[schema_name] = {
            "description": f"{rt.kind} (promoflow sandbox: permissive schema, unknown fields preserved)",
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                **{
                    name: {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    for name in ("metadata", *sorted(KNOWN_FIELDS.get(rt.kind, {"spec", "status"})))
                    if name not in ("immutable", "type")
                },
            },
            "x-kubernetes-preserve-unknown-fields": True,
            "x-kubernetes-group-version-kind": [gvk],
        }
        ref = {"$ref": f"#/components/schemas/{schema_name}"}

        def operation(action: str, extra: Obj, gvk: Obj = gvk, ref: Obj = ref, rt: ResourceType = rt) -> Obj:
            return {
                "operationId": f"{action}{rt.kind}",
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}},
                **extra,
            }

        scope = "/namespaces/{namespace}" if rt.namespaced else ""
        collection = f"/{_openapi_key(group_version)}{scope}/{rt.plural}"
        params = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
        if rt.namespaced:
            params.append({"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}})
        write = {"parameters": query, "requestBody": {"content": {"*/*": {"schema": ref}}}}
        patch_body = {ct: {"schema": {"type": "object"}} for ct in PATCH_TYPES}
        force = {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": True}}
        paths[collection] = {"parameters": params[1:], "get": operation("list", {}), "post": operation("post", write)}
        paths[collection + "/{name}"] = {
            "parameters": params,
            "get": operation("get", {}),
            "put": operation("put", write),
            "patch": operation("patch", {"parameters": [*query, force], "requestBody": {"content": patch_body}}),
            "delete": operation("delete", {"parameters": query[:1]}),
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (promoflow sandbox)", "version": GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    seconds = max(
        0, int((datetime.now(UTC) - datetime.fromisoformat(timestamp.replace("Z", "+00:00"))).total_seconds())
    )
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _status(obj: Obj, *keys: str) -> Any:
    node: Any = obj
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _ready_condition(obj: Obj, field_: str) -> str:
    for condition in _status(obj, "status", "conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get(field_, ""))
    return "Unknown" if field_ == "status" else ""


COLUMNS: dict[str, list[tuple[str, Callable[[Obj], Any]]]] = {
    "Namespace": [("Status", lambda o: _status(o, "status", "phase") or "")],
    "ConfigMap": [("Data", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}))],
    "Secret": [("Type", lambda o: o.get("type", "")), ("Data", lambda o: len(o.get("data") or {}))],
    "Service": [
        ("Type", lambda o: _status(o, "spec", "type") or ""),
        ("Cluster-IP", lambda o: _status(o, "spec", "clusterIP") or "<none>"),
        ("External-IP", lambda o: "<none>"),
        (
            "Port(s)",
            lambda o: (
                ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in _status(o, "spec", "ports") or [])
                or "<none>"
            ),
        ),
    ],
    "Deployment": [
        ("Ready", lambda o: f"{_status(o, 'status', 'readyReplicas') or 0}/{_status(o, 'spec', 'replicas') or 0}"),
        ("Up-to-date", lambda o: _status(o, "status", "updatedReplicas") or 0),
        ("Available", lambda o: _status(o, "status", "availableReplicas") or 0),
    ],
    "StatefulSet": [
        ("Ready", lambda o: f"{_status(o, 'status', 'readyReplicas') or 0}/{_status(o, 'spec', 'replicas') or 0}")
    ],
    "DaemonSet": [
        ("Desired", lambda o: _status(o, "status", "desiredNumberScheduled") or 0),
        ("Ready", lambda o: _status(o, "status", "numberReady") or 0),
        ("Up-to-date", lambda o: _status(o, "status", "updatedNumberScheduled") or 0),
        ("Available", lambda o: _status(o, "status", "numberAvailable") or 0),
    ],
    "Application": [
        ("Sync Status", lambda o: _status(o, "status", "sync", "status") or ""),
        ("Health Status", lambda o: _status(o, "status", "health", "status") or ""),
    ],
    "Kustomization": [
        ("Ready", lambda o: _ready_condition(o, "status")),
        ("Status", lambda o: _ready_condition(o, "message")),
    ],
}


def table(rt: ResourceType, objects: list[Obj], include: str, resource_version: int) -> Obj:
    """What `kubectl get` asks for (Accept: ...;as=Table): the sandbox's versions of kubectl's columns."""
    columns = [
        ("Name", lambda o: o["metadata"]["name"]),
        *COLUMNS.get(rt.kind, []),
        ("Age", lambda o: _age(o["metadata"].get("creationTimestamp"))),
    ]
    rows = []
    for obj in objects:
        row: Obj = {"cells": [get(obj) for _, get in columns]}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    definitions = [
        {"name": name, "type": "string", "format": "name" if name == "Name" else "", "description": name, "priority": 0}
        for name, _ in columns
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(resource_version)},
        "columnDefinitions": definitions,
        "rows": rows,
    }


# --- HTTP --------------------------------------------------------------------------------------------

PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
NO_ROUTE = ApiError(404, "NotFound", "the server could not find the requested resource", {})
FAULT_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def _response(
    body: Obj, status: int = 200, headers: dict[str, str] | None = None, warnings: Iterable[str] = ()
) -> web.Response:
    response = web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )
    for warning in warnings:
        response.headers.add("Warning", f"299 - {json.dumps(warning)}")
    return response


def _fault(status: int, retry_after: int | None) -> ApiError:
    reason = FAULT_REASONS.get(status, "InternalError")
    if status == 429:
        message = "Too many requests, please try again later. (fault injected by the promoflow sandbox)"
    else:
        message = f"Internal error occurred: fault injected by the promoflow sandbox ({status} {reason})"
    details: Obj = {"causes": [{"message": message}]}
    headers = {}
    if retry_after is not None:
        details["retryAfterSeconds"] = retry_after
        headers["Retry-After"] = str(retry_after)
    return ApiError(status, reason, message, details, headers)


@dataclass(frozen=True)
class _Route:
    rt: ResourceType
    namespace: str | None
    name: str | None
    sub: Subresource


def _route(group_version: str, rest: list[str]) -> _Route:
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    rt = BY_PATH.get((group_version, rest[0]))
    if rt is None or len(rest) > 3 or (namespace is not None and not rt.namespaced):
        raise NO_ROUTE
    name = rest[1] if len(rest) > 1 else None
    if len(rest) == 3 and (rest[2] != "status" or not rt.status):
        raise NO_ROUTE
    if rt.namespaced and name is not None and namespace is None:
        raise NO_ROUTE
    return _Route(rt, namespace, name, "status" if len(rest) == 3 else None)


class _Api:
    """The HTTP face of a Cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.address = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as error:
            return _response(error.status(), error.code, error.headers)
        except Exception as error:  # a bug in the stand-in still answers as an API server would
            logger.exception("Kubernetes stand-in failed on %s %s", request.method, request.path_qs)
            return _response(ApiError(500, "InternalError", f"Internal error occurred: {error}").status(), 500)

    def _static(self, request: web.Request) -> web.StreamResponse | None:
        path = request.path.rstrip("/") or "/"
        parts = path.strip("/").split("/")
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/version":
            return _response(VERSION_INFO)
        if path == "/api":
            address = [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.address}]
            return _response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": address})
        if path == "/apis":
            groups = [api_group(g) for g in dict.fromkeys(gv.split("/")[0] for gv in GROUP_VERSIONS if "/" in gv)]
            return _response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if len(parts) == 2 and parts[0] == "apis" and any(gv.startswith(parts[1] + "/") for gv in GROUP_VERSIONS):
            return _response({"kind": "APIGroup", "apiVersion": "v1", **api_group(parts[1])})
        if path == "/openapi/v3":
            return _response(openapi_root())
        if path.startswith("/openapi/v3/"):
            key = path[len("/openapi/v3/") :]
            for gv in GROUP_VERSIONS:
                if _openapi_key(gv) == key:
                    return _response(openapi_document(gv))
            raise NO_ROUTE
        if path.startswith("/openapi/"):
            raise NO_ROUTE  # /openapi/v2 would be protobuf; kubectl falls back to v3
        return None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        static = self._static(request)
        if static is not None:
            if request.method != "GET":
                raise ApiError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            return static
        parts = [p for p in request.path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "api":
            group_version, rest = parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            raise NO_ROUTE
        if group_version not in GROUP_VERSIONS:
            raise NO_ROUTE
        if not rest:
            return _response(resource_list(group_version))
        route = _route(group_version, rest)
        query = request.query
        verb = {
            ("GET", False): "watch" if query.get("watch") in ("true", "1") else "list",
            ("GET", True): "get",
            ("POST", False): "create",
            ("PUT", True): "update",
            ("PATCH", True): "patch",
            ("DELETE", True): "delete",
            ("DELETE", False): "deletecollection",
        }.get((request.method, route.name is not None))
        if verb is None or (route.sub and verb not in ("get", "update", "patch")):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        self.cluster.requests[verb] += 1
        fault = self.cluster.faults.take(verb, request.path)
        if fault:
            raise _fault(*fault)
        if verb == "watch":
            return await self._watch(request, route)
        return await getattr(self, "_" + verb)(request, route)

    def _options(self, request: web.Request, dry_run: Iterable[str] = ()) -> WriteOptions:
        query = request.query
        dry = [*query.getall("dryRun", []), *dry_run]
        for value in dry:
            if value != "All":
                raise bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
        validation = query.get("fieldValidation", "Warn")
        if validation not in ("Ignore", "Warn", "Strict"):
            raise bad_request(
                f'fieldValidation: Unsupported value: "{validation}": supported values: "Ignore", "Strict", "Warn"'
            )
        manager = query.get("fieldManager") or request.headers.get("User-Agent", "unknown").split("/")[0][:128]
        return WriteOptions(manager, bool(dry), validation)  # type: ignore[arg-type]

    def _selector(self, request: web.Request) -> Selector:
        return Selector.parse(request.query.get("labelSelector"), request.query.get("fieldSelector"))

    def _render(self, request: web.Request, rt: ResourceType, objects: list[Obj], rv: int) -> Obj | None:
        if "as=Table" not in request.headers.get("Accept", ""):
            return None
        return table(rt, objects, request.query.get("includeObject", "Metadata"), rv)

    async def _list(self, request: web.Request, route: _Route) -> web.StreamResponse:
        items, rv = self.cluster.select(route.rt, route.namespace, self._selector(request))
        meta: Obj = {"resourceVersion": str(rv)}
        start = request.query.get("continue")
        if start:
            try:
                position = json.loads(base64.urlsafe_b64decode(start))
            except ValueError:
                raise ApiError(410, "Expired", "the provided continue parameter is too old or invalid") from None
            items = [o for o in items if [o["metadata"].get("namespace", ""), o["metadata"]["name"]] >= position]
        limit = int(request.query.get("limit") or 0)
        if 0 < limit < len(items):
            following = items[limit]["metadata"]
            token = json.dumps([following.get("namespace", ""), following["name"]]).encode()
            meta.update(
                {"continue": base64.urlsafe_b64encode(token).decode(), "remainingItemCount": len(items) - limit}
            )
            items = items[:limit]
        rendered = self._render(request, route.rt, items, rv)
        if rendered is not None:
            rendered["metadata"] = meta
            return _response(rendered)
        if not route.rt.custom:  # typed lists carry no per-item apiVersion/kind
            items = [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in items]
        return _response(
            {"kind": f"{route.rt.kind}List", "apiVersion": route.rt.api_version, "metadata": meta, "items": items}
        )

    async def _get(self, request: web.Request, route: _Route) -> web.StreamResponse:
        assert route.name is not None
        obj = self.cluster.get(route.rt, route.namespace, route.name)
        return _response(self._render(request, route.rt, [obj], int(obj["metadata"]["resourceVersion"])) or obj)

    async def _create(self, request: web.Request, route: _Route) -> web.StreamResponse:
        options = self._options(request)
        obj = self.cluster.create(route.rt, route.namespace, await self._body(request), options)
        return _response(obj, 201, warnings=options.warnings)

    async def _update(self, request: web.Request, route: _Route) -> web.StreamResponse:
        assert route.name is not None
        options = self._options(request)
        body = await self._body(request)
        obj = self.cluster.replace(route.rt, route.namespace, route.name, body, options, route.sub)
        return _response(obj, warnings=options.warnings)

    async def _patch(self, request: web.Request, route: _Route) -> web.StreamResponse:
        assert route.name is not None
        kind = PATCH_TYPES.get(request.content_type)
        if kind is None:
            raise _unsupported_patch(route.rt)
        options = self._options(request)
        raw = await request.read()
        if kind == "apply":
            if not request.query.get("fieldManager"):
                raise bad_request("PATCH /apply requires fieldManager parameter")
            force = request.query.get("force") == "true"
            code, obj = self.cluster.apply(
                route.rt, route.namespace, route.name, _parse_body(raw), options, force, route.sub
            )
            return _response(obj, code, warnings=options.warnings)
        obj = self.cluster.patch(
            route.rt, route.namespace, route.name, _patched(route.rt, kind, raw), options, route.sub
        )
        return _response(obj, warnings=options.warnings)

    async def _delete(self, request: web.Request, route: _Route) -> web.StreamResponse:
        assert route.name is not None
        body = await request.read()
        delete_options = _parse_body(body) if body.strip() else {}
        if not isinstance(delete_options, dict):
            raise bad_request("the request body must be DeleteOptions")
        dry = delete_options.get("dryRun") or []
        precondition = (delete_options.get("preconditions") or {}).get("resourceVersion")
        obj = self.cluster.delete(route.rt, route.namespace, route.name, self._options(request, dry), precondition)
        if route.rt.custom or route.rt is NAMESPACES:
            return _response(obj)
        details = _details(route.rt, route.name, uid=obj["metadata"]["uid"])
        return _response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
        )

    async def _deletecollection(self, request: web.Request, route: _Route) -> web.StreamResponse:
        options = self._options(request)
        items, _ = self.cluster.select(route.rt, route.namespace, self._selector(request))
        for obj in items:
            with contextlib.suppress(ApiError):  # deleted meanwhile
                self.cluster.delete(route.rt, obj["metadata"].get("namespace"), obj["metadata"]["name"], options)
        return _response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {}})

    async def _body(self, request: web.Request) -> Any:
        if "protobuf" in request.content_type or "cbor" in request.content_type:
            raise ApiError(415, "UnsupportedMediaType", f"the sandbox speaks JSON and YAML, not {request.content_type}")
        return _parse_body(await request.read())

    async def _watch(self, request: web.Request, route: _Route) -> web.StreamResponse:
        query = request.query
        selector = self._selector(request)
        raw_rv = query.get("resourceVersion", "")
        try:
            since = None if raw_rv in ("", "0") or query.get("sendInitialEvents") == "true" else int(raw_rv)
            timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        except ValueError:
            raise bad_request(f"invalid resourceVersion or timeoutSeconds: {raw_rv!r}") from None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | str] = asyncio.Queue()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()

        async def send(kind: str, obj: Obj) -> None:
            if "as=Table" in request.headers.get("Accept", "") and kind != "ERROR":
                obj = table(
                    route.rt,
                    [obj],
                    query.get("includeObject", "Metadata"),
                    int(obj["metadata"].get("resourceVersion", 0)),
                )
            await response.write(json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n")

        def deliver(item: Event | str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        try:
            watch_id, backlog, reached = self.cluster.open_watch(route.rt, since, deliver)
        except Expired as expired:
            await response.prepare(request)
            await send("ERROR", ApiError(410, "Expired", str(expired)).status())
            await response.write_eof()
            return response
        try:
            await response.prepare(request)
            for event in backlog:
                if visible := self._visible(route, selector, event):
                    await send(*visible)
            if query.get("sendInitialEvents") == "true" and query.get("allowWatchBookmarks") == "true":
                bookmark = {"resourceVersion": str(reached), "annotations": {"k8s.io/initial-events-end": "true"}}
                await send(
                    "BOOKMARK", {"kind": route.rt.kind, "apiVersion": route.rt.api_version, "metadata": bookmark}
                )
            deadline = loop.time() + timeout
            while (remaining := deadline - loop.time()) > 0:
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                if item == "drop":
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                if item == "expire":
                    await send("ERROR", ApiError(410, "Expired", "too old resource version (compacted)").status())
                    break
                if item == "close":
                    break
                if isinstance(item, Event) and item.rv > reached and (visible := self._visible(route, selector, item)):
                    await send(*visible)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            self.cluster.close_watch(watch_id)
        return response

    @staticmethod
    def _visible(route: _Route, selector: Selector, event: Event) -> tuple[str, Obj] | None:
        """The event as this watch sees it: objects entering or leaving the selection are ADDED/DELETED."""

        def selected(obj: Obj | None) -> bool:
            if obj is None:
                return False
            return (
                route.namespace is None or obj["metadata"].get("namespace") == route.namespace
            ) and selector.matches(obj)

        now_in = selected(event.obj)
        if event.type != "MODIFIED":
            return (event.type, event.obj) if now_in else None
        was_in = selected(event.old)
        if now_in:
            return ("MODIFIED" if was_in else "ADDED"), event.obj
        return ("DELETED", event.obj) if was_in else None


# --- the server --------------------------------------------------------------------------------------


class KubeStandIn:
    """The stand-in served on 127.0.0.1 from a background thread with its own event loop.

    `cluster` holds the objects and the Python controls: `cluster.rollouts.behave(...)`,
    `cluster.argocd.report(...)`, `cluster.flux.report(...)`, `cluster.faults.fail(...)`.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.cluster = Cluster()
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("the Kubernetes stand-in is not running: call start() first")
        return f"http://{self._host}:{self._port}"

    def start(self) -> KubeStandIn:
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failures: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._startup(loop))
            except BaseException as error:  # reported to start()'s caller
                failures.append(error)
            started.set()
            if not failures:
                loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="kube-stand-in", daemon=True)
        self._thread.start()
        started.wait()
        if failures:
            self._thread.join()
            self._thread = self._loop = None
            raise failures[0]
        return self

    async def _startup(self, loop: asyncio.AbstractEventLoop) -> None:
        api = _Api(self.cluster)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", api.handle)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, self._host, self._port).start()
        self._port = int(runner.addresses[0][1])
        api.address = f"{self._host}:{self._port}"
        self.cluster.rollouts.start(loop)
        self._runner = runner

    def stop(self) -> None:
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None:
            return
        self.cluster.end_watches()

        async def shutdown() -> None:
            self.cluster.rollouts.stop()
            if runner is not None:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> KubeStandIn:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path | str, context: str = "sandbox") -> Path:
        """A kubeconfig whose current context (namespace "default") points at this stand-in."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": "promoflow-sandbox"}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": "default"}}],
            "current-context": context,
            "preferences": {},
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target


def serve(port: int, kubeconfig: Path | str) -> None:
    """Serve the stand-in on 127.0.0.1:`port` (0: any free port) until SIGINT or SIGTERM."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with KubeStandIn(port=port) as kube:
            written = kube.write_kubeconfig(kubeconfig)
            print(f"Kubernetes API stand-in (simulated, {GIT_VERSION}) listening on {kube.url}", flush=True)
            print(f"kubeconfig: {written}  (export KUBECONFIG={written})", flush=True)
            while not stopping.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
