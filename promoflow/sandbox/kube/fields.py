"""Field paths and managedFields, as structured-merge-diff computes them from an object and its schema.

A path is a tuple of elements: "f:spec" (a field or map key), 'k:{"name":"web"}' (an item of a list merged
by key), 'v:"example.com/hold"' (an item of a set). An Apply owns the fields of its applied configuration
(`applied_fields`); an Update owns what it added or changed (`compare`), nodes included: that is where the
"." entries of fieldsV1 come from.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from promoflow.sandbox.kube.schema import ANY, Schema

Obj = dict[str, Any]
FieldPath = tuple[str, ...]
MISSING: Any = object()
KEY_DEFAULTS = {"protocol": "TCP"}  # list-map keys the API defaults (ports are keyed by port and protocol)


def now() -> str:
    from promoflow.sandbox.kube_controllers import now as stamp

    return stamp()


def copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def list_keys(schema: Schema, items: Any) -> tuple[str, ...] | None:
    """The keys a list merges its items by, or None if it is atomic (or an item lacks a key)."""
    if schema.list_type != "map" or not isinstance(items, list):
        return None
    keys = schema.list_keys
    if not keys or not all(isinstance(i, dict) and all(k in i or k in KEY_DEFAULTS for k in keys) for i in items):
        return None
    return keys


def item_element(item: Any, schema: Schema) -> str:
    """The path element of a list item: by its keys in a map-list, by its value in a set."""
    if schema.list_type == "set":
        return "v:" + _compact(item)
    return "k:" + _compact({k: item.get(k, KEY_DEFAULTS.get(k)) for k in schema.list_keys})


def _mergeable(schema: Schema, value: Any) -> bool:
    """Whether a list is merged item by item (a set, or a map-list whose items all carry their keys)."""
    if not isinstance(value, list):
        return False
    if schema.list_type == "set":
        return all(not isinstance(i, dict | list) for i in value)
    return list_keys(schema, value) is not None


@functools.lru_cache(maxsize=4096)
def _decoded(element: str) -> Any:
    return json.loads(element[2:])


def child(node: Any, element: str) -> Any:
    """The value at one path element below `node`, or MISSING."""
    if element.startswith("f:"):
        return node.get(element[2:], MISSING) if isinstance(node, dict) else MISSING
    if not isinstance(node, list):
        return MISSING
    wanted = _decoded(element)
    for item in node:
        if element.startswith("v:"):
            if item == wanted:
                return item
        elif isinstance(item, dict) and all(item.get(k, KEY_DEFAULTS.get(k)) == v for k, v in wanted.items()):
            return item
    return MISSING


def get(obj: Any, path: FieldPath) -> Any:
    for element in path:
        obj = child(obj, element)
        if obj is MISSING:
            break
    return obj


def delete(obj: Obj, path: FieldPath) -> None:
    parent = get(obj, path[:-1])
    target = child(parent, path[-1])
    if target is MISSING:
        return
    if isinstance(parent, dict):
        del parent[path[-1][2:]]
    else:
        parent.remove(target)


def _children(value: Any, schema: Schema) -> Iterator[tuple[str, Any, Schema]]:
    """The (element, value, schema) below a granular map or struct, or a mergeable list."""
    if isinstance(value, dict) and not schema.atomic:
        for key, item in value.items():
            sub = schema.field(key) if schema.shape == "struct" else schema.values
            yield "f:" + key, item, sub or ANY
    elif _mergeable(schema, value):
        for item in value:
            yield item_element(item, schema), item, schema.items


def applied_fields(value: Any, schema: Schema, path: FieldPath = ()) -> set[FieldPath]:
    """The fields an applied configuration sets (structured-merge-diff's ToFieldSet)."""
    out: set[FieldPath] = set()
    for element, item, sub in _children(value, schema):
        here = (*path, element)
        below = applied_fields(item, sub, here) if _granular(item, sub) else set()
        leaf = not below
        if leaf or not element.startswith("f:") or (schema.shape != "struct" and isinstance(value, dict)):
            out.add(here)  # list items, map entries and anything without children are members
        out |= below
    return out


def _granular(value: Any, schema: Schema) -> bool:
    if isinstance(value, dict):
        return bool(value) and not schema.atomic
    return _mergeable(schema, value) and bool(value)


def nodes(value: Any, schema: Schema, path: FieldPath = ()) -> dict[FieldPath, tuple[Any, bool]]:
    """Every node below `value` (maps, lists, items, leaves): its value and whether it is a leaf."""
    out: dict[FieldPath, tuple[Any, bool]] = {}
    for element, item, sub in _children(value, schema):
        here = (*path, element)
        granular = _granular(item, sub)
        out[here] = (item, not granular)
        if granular:
            out.update(nodes(item, sub, here))
    return out


def is_leaf(value: Any, schema: Schema) -> bool:
    return not _granular(value, schema)


def schema_at(schema: Schema, path: FieldPath) -> Schema:
    """The schema of the value at `path` below a value of `schema`."""
    for element in path:
        if not element.startswith("f:"):
            schema = schema.items
        elif schema.shape == "struct":
            schema = schema.field(element[2:]) or ANY
        else:
            schema = schema.values
    return schema


def compare(old: Any, new: Any, schema: Schema) -> tuple[set[FieldPath], set[FieldPath]]:
    """(added or modified, removed) from `old` to `new`: what an Update takes ownership of, and what it drops."""
    before, after = nodes(old, schema), nodes(new, schema)
    changed = {p for p, (v, leaf) in after.items() if p not in before or (leaf and before[p][1] and before[p][0] != v)}
    return changed, set(before) - set(after)


def dotted(path: FieldPath) -> str:
    """A path as conflicts print it: `.spec.template.spec.containers[name="app"].image`."""
    text = ""
    for element in path:
        if element.startswith("f:"):
            text += "." + element[2:]
        elif element.startswith("v:"):
            text += "[" + element[2:] + "]"
        else:
            key = _decoded(element)
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
    for key, sub in node.items():
        if key == ".":
            out.add(prefix)
        elif isinstance(sub, dict) and sub:
            out |= parse_fields_v1(sub, (*prefix, key))
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

    def describe(self) -> str:
        """As conflict messages name a manager: `"kubectl"`, `"x" with subresource "status" using v1`."""
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text

    def set_fields(self, fields: set[FieldPath]) -> None:
        if fields != self.fields:  # unchanged ownership keeps its time, so a repeated write is a no-op
            self.fields, self.time, self.encoded = fields, now(), None


def decode_managed(managed: Any) -> list[ManagedEntry]:
    entries = []
    for raw in managed if isinstance(managed, list) else []:
        if isinstance(raw, dict) and raw.get("manager") is not None and isinstance(raw.get("fieldsV1"), dict):
            entries.append(
                ManagedEntry(
                    str(raw["manager"]),
                    str(raw.get("operation", "Update")),
                    str(raw.get("apiVersion", "")),
                    str(raw.get("time") or now()),
                    parse_fields_v1(raw["fieldsV1"]),
                    raw.get("subresource"),
                    raw["fieldsV1"],
                )
            )
    return entries


def entry_for(
    entries: list[ManagedEntry], manager: str, operation: str, api_version: str, subresource: str | None
) -> ManagedEntry:
    for entry in entries:
        if entry.is_(manager, operation, subresource):
            return entry
    entry = ManagedEntry(manager, operation, api_version, now(), set(), subresource)
    entries.append(entry)
    return entry
