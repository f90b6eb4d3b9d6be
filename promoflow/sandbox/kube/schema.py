"""The schemas of what the stand-in stores, read as the API server reads its Go types and a CRD's schema.

Built-in kinds take Kubernetes' own OpenAPI definitions, bundled with `kubernetes-validate` (the ones
`promoflow.clusters.schemas` checks manifests with); a custom resource takes its CRD's `openAPIV3Schema`.
Either way one `Schema` answers what decoding, defaulting, managed fields and strategic merge need to know
about a field: its shape, its Go type, how its lists merge and whether it keeps unknown fields.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from promoflow.clusters.schemas import definitions

Obj = dict[str, Any]
Shape = Literal["struct", "map", "list", "string", "integer", "number", "boolean", "int-or-string", "quantity", "any"]
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# Objects of any content: raw JSON in Go (an embedded object, a managedFields trie, a CRD's JSON values).
FREE_FORM = {
    "io.k8s.apimachinery.pkg.runtime.RawExtension",
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1",
    "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray",
}


def _defs() -> dict[str, Obj]:
    found: dict[str, Obj] = definitions()["$defs"]
    return found


class Schema:
    """One node of a schema, its `$ref` followed; children are built on first use (definitions are recursive)."""

    __slots__ = ("_items", "_props", "_values", "name", "node", "shape")

    def __init__(self, node: Obj, name: str | None = None) -> None:
        self.node, self.name = node, name
        self.shape = _shape(node, name)
        self._props: dict[str, Schema | None] = {}
        self._items: Schema | None = None
        self._values: Schema | None = None

    def field(self, key: str) -> Schema | None:
        """The schema of a struct's field `key`; None if the struct has no such field."""
        if key not in self._props:
            child = (self.node.get("properties") or {}).get(key)
            self._props[key] = wrap(child) if isinstance(child, dict) else None
        return self._props[key]

    @property
    def fields(self) -> dict[str, Any]:
        found: dict[str, Any] = self.node.get("properties") or {}
        return found

    @property
    def values(self) -> Schema:
        """The schema of a map's values."""
        if self._values is None:
            extra = self.node.get("additionalProperties")
            self._values = wrap(extra) if isinstance(extra, dict) else ANY
        return self._values

    @property
    def items(self) -> Schema:
        if self._items is None:
            items = self.node.get("items")
            self._items = wrap(items) if isinstance(items, dict) else ANY
        return self._items

    @property
    def required(self) -> list[str]:
        return list(self.node.get("required") or [])

    @property
    def preserves_unknown(self) -> bool:
        return bool(self.node.get("x-kubernetes-preserve-unknown-fields"))

    @property
    def list_type(self) -> str:
        """How server-side apply merges this list: "map" (by `list_keys`), "set" or "atomic"."""
        declared = self.node.get("x-kubernetes-list-type")
        if declared:
            return str(declared)
        return "map" if self.node.get("x-kubernetes-patch-merge-key") else "atomic"

    @property
    def list_keys(self) -> tuple[str, ...]:
        keys = self.node.get("x-kubernetes-list-map-keys")
        if keys:
            return tuple(keys)
        key = self.node.get("x-kubernetes-patch-merge-key")
        return (key,) if key else ()

    @property
    def atomic(self) -> bool:
        """A struct or map that server-side apply owns as one value."""
        return self.node.get("x-kubernetes-map-type") == "atomic"

    @property
    def patch_strategy(self) -> set[str]:
        return set(filter(None, str(self.node.get("x-kubernetes-patch-strategy") or "").split(",")))

    @property
    def patch_merge_key(self) -> str | None:
        key = self.node.get("x-kubernetes-patch-merge-key")
        return str(key) if key else None

    @property
    def go_name(self) -> str:
        """The Go type name, as decoding errors print it: `DeploymentSpec`."""
        return (self.name or "").rsplit(".", 1)[-1]

    def go_type(self) -> str:
        """The Go type of a value of this schema, as `json: cannot unmarshal ...` prints it."""
        if self.name and self.shape == "struct":
            version, _, kind = self.name.rsplit(".", 2)[-2:] if self.name.count(".") >= 2 else ("", "", self.name)
            return f"{version}.{kind}" if version else kind
        if self.shape == "list":
            return "[]" + self.items.go_type()
        if self.shape == "map":
            return "map[string]" + self.values.go_type()
        if self.shape == "integer":
            return str(self.node.get("format") or "int64")
        return {
            "number": "float64",
            "boolean": "bool",
            "int-or-string": "intstr.IntOrString",
            "quantity": "resource.Quantity",
            "string": "string",
        }.get(self.shape, "interface {}")


def _types(node: Obj) -> set[str]:
    declared = node.get("type")
    found = set(declared) if isinstance(declared, list) else {declared} if declared else set()
    return found - {"null"}


def _shape(node: Obj, name: str | None) -> Shape:
    if name in FREE_FORM:
        return "any"
    if node.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    if node.get("oneOf"):
        options = set().union(*(_types(o) for o in node["oneOf"] if isinstance(o, dict)))
        return "int-or-string" if "integer" in options else "quantity"
    types = _types(node)
    if "object" in types:
        if isinstance(node.get("additionalProperties"), dict):
            return "map"
        if node.get("properties") or name or not node.get("x-kubernetes-preserve-unknown-fields"):
            return "struct"
        return "any"
    for shape in ("array", "string", "integer", "number", "boolean"):
        if shape in types:
            return "list" if shape == "array" else shape
    return "any"


ANY = Schema({}, None)


def wrap(node: Obj) -> Schema:
    """A Schema for `node`; a `$ref` to a bundled definition shares that definition's Schema."""
    ref = node.get("$ref")
    if isinstance(ref, str):
        return definition(ref.rsplit("/", 1)[-1])
    return Schema(node)


@functools.cache
def definition(name: str) -> Schema:
    return Schema(_defs()[name], name)


def has_definition(name: str) -> bool:
    return name in _defs()


def all_definitions() -> dict[str, Obj]:
    return _defs()


def custom_resource(open_api_v3: Obj | None) -> Schema:
    """A CRD version's schema, with the object metadata every custom resource has (unknown fields kept if none)."""
    node = dict(open_api_v3 or {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    properties = dict(node.get("properties") or {})
    properties.update(
        apiVersion={"type": "string"},
        kind={"type": "string"},
        metadata={"$ref": f"#/$defs/{OBJECT_META}"},
    )
    node["properties"] = properties
    node.setdefault("type", "object")
    return Schema(node)
