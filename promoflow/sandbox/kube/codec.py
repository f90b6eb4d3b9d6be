"""Request bodies decoded as kube-apiserver decodes them, and objects written back as Go writes them.

Decoding a built-in kind is Go's `json.Unmarshal` into its types: a value of the wrong type fails the whole
request (400, `json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type
int32`), unknown fields are dropped and reported (a warning, or 400 under `fieldValidation=Strict`), nulls
leave fields unset. A custom resource is pruned to its CRD's schema the same way, but wrong types are a 422
from its OpenAPI validation. Encoding adds what Go always writes (`gotypes`) and drops what `omitempty`
leaves out (empty maps and lists).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from promoflow.sandbox.kube import gotypes
from promoflow.sandbox.kube.errors import ApiError, bad_request, invalid
from promoflow.sandbox.kube.fields import KEY_DEFAULTS, list_keys
from promoflow.sandbox.kube.resources import ResourceType
from promoflow.sandbox.kube.schema import ANY, OBJECT_META, Schema

Obj = dict[str, Any]
Validation = Literal["Ignore", "Warn", "Strict"]
QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_DROP: Any = object()


class _TypeError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Decoded:
    obj: Obj
    unknown: list[str] = field(default_factory=list)  # paths of unknown fields, as strict decoding names them
    unknown_applied: list[str] = field(default_factory=list)  # the same, as server-side apply names them


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


class _Decoder:
    def __init__(self, rt: ResourceType) -> None:
        self.rt = rt
        self.unknown: list[str] = []
        self.unknown_applied: list[str] = []  # the same, as structured-merge-diff names them
        self.causes: list[Obj] = []  # a custom resource's type errors, reported together

    def fail(self, value: Any, schema: Schema, path: str, go_path: str, struct: str) -> Any:
        if self.rt.custom:
            expected = {"struct": "object", "map": "object", "list": "array"}.get(schema.shape, schema.shape)
            got = {"bool": "boolean", "number": "number"}.get(_json_kind(value), _json_kind(value))
            if isinstance(value, int) and not isinstance(value, bool):
                got = "integer"
            message = f"Invalid value: {json.dumps(got)}: {path} in body must be of type {expected}: {json.dumps(got)}"
            self.causes.append({"reason": "FieldValueTypeInvalid", "message": message, "field": path})
            return _DROP
        shown = _json_kind(value)
        if isinstance(value, float) and schema.shape in ("integer", "int-or-string"):
            shown = f"number {value!r}"
        raise _TypeError(
            f"json: cannot unmarshal {shown} into Go struct field {struct}.{go_path} of type {schema.go_type()}"
        )

    def value(self, value: Any, schema: Schema, path: str, go_path: str, struct: str, smd: str) -> Any:
        if value is None:
            return _DROP
        shape = schema.shape
        if shape == "any":
            return value
        if shape == "struct":
            if not isinstance(value, dict):
                return self.fail(value, schema, path, go_path, struct)
            return self.struct(value, schema, path, go_path, smd)
        if shape == "map":
            if not isinstance(value, dict):
                return self.fail(value, schema, path, go_path, struct)
            out = {}
            for key, item in value.items():
                here = f"{path}.{key}" if path else key
                decoded = self.value(item, schema.values, here, go_path, struct, f"{smd}.{key}")
                if decoded is not _DROP:
                    out[key] = decoded
            return out
        if shape == "list":
            if not isinstance(value, list):
                return self.fail(value, schema, path, go_path, struct)
            items = []
            keys = list_keys(schema, value)
            for index, item in enumerate(value):
                element = f"[{index}]"
                if keys:
                    element = "[" + ",".join(f"{k}={json.dumps(item.get(k, KEY_DEFAULTS.get(k)))}" for k in keys) + "]"
                decoded = self.value(item, schema.items, f"{path}[{index}]", go_path, struct, smd + element)
                items.append(None if decoded is _DROP else decoded)
            return items
        return self.scalar(value, schema, path, go_path, struct)

    def scalar(self, value: Any, schema: Schema, path: str, go_path: str, struct: str) -> Any:
        shape = schema.shape
        if isinstance(value, datetime.date | datetime.datetime) and shape == "string":
            return value.isoformat()  # YAML read an unquoted date: Go sees the string it was
        if shape == "string" and isinstance(value, str):
            if schema.node.get("format") == "byte":
                _check_base64(value)
            return value
        if shape == "boolean" and isinstance(value, bool):
            return value
        if shape == "integer" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if shape == "number" and isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if shape == "int-or-string" and (isinstance(value, str) or type(value) is int):
            return value
        if shape == "quantity":
            return _quantity(value) if not isinstance(value, bool) else self.fail(value, schema, path, go_path, struct)
        return self.fail(value, schema, path, go_path, struct)

    def struct(self, value: Obj, schema: Schema, path: str, go_path: str, smd: str = "") -> Obj:
        out: Obj = {}
        for key, item in value.items():
            here = f"{path}.{key}" if path else key
            sub = schema.field(key)
            if sub is None:
                if schema.preserves_unknown:
                    out[key] = item
                else:
                    self.unknown.append(here)
                    self.unknown_applied.append(f"{smd}.{key}")
                continue
            go_here = f"{go_path}.{key}" if go_path else key
            decoded = self.value(item, sub, here, go_here, schema.go_name, f"{smd}.{key}")
            if decoded is not _DROP:
                out[key] = decoded
        return out


def _check_base64(value: str) -> None:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        position = next((i for i, c in enumerate(value) if not (c.isalnum() or c in "+/=")), len(value) - 1)
        raise _TypeError(f"illegal base64 data at input byte {max(position, 0)}") from None


def _quantity(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{round(value * 1000)}m"
    if isinstance(value, str) and QUANTITY.match(value.strip()):
        return value.strip()
    raise _TypeError("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")


def decode(rt: ResourceType, body: Obj) -> Decoded:
    """`body` typed by `rt`'s schema: unknown fields dropped (and listed), wrong types refused."""
    decoder = _Decoder(rt)
    try:
        obj = decoder.struct(body, rt.schema, "", "")
    except _TypeError as error:
        message = f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {error.message}'
        raise bad_request(message) from None
    if decoder.causes:
        name = str((body.get("metadata") or {}).get("name", ""))
        raise invalid(rt, name, decoder.causes)
    return Decoded(obj, decoder.unknown, decoder.unknown_applied)


def check_unknown(rt: ResourceType, decoded: Decoded, validation: Validation, warnings: list[str]) -> None:
    """What fieldValidation makes of unknown fields: nothing, warnings, or a 400."""
    if not decoded.unknown or validation == "Ignore":
        return
    if validation == "Strict":
        listed = ", ".join(f'unknown field "{path}"' for path in decoded.unknown)
        raise bad_request(
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: strict decoding error: {listed}'
        )
    warnings.extend(f'unknown field "{path}"' for path in decoded.unknown)


def apply_unknown(rt: ResourceType, name: str, decoded: Decoded, validation: Validation) -> None:
    """Server-side apply refuses fields its schema does not declare, as structured-merge-diff does (500)."""
    if not decoded.unknown:
        return
    errors = [f"{path}: field not declared in schema" for path in decoded.unknown_applied]
    if validation != "Strict":
        errors = errors[:1]
    text = errors[0] if len(errors) == 1 else "errors:\n" + "\n".join("  " + e for e in errors)
    where = f"/{name}; {rt.api_version}, Kind={rt.kind}"
    raise ApiError(500, "", f"failed to create typed patch object ({where}): {text}")


# --- encoding ------------------------------------------------------------------------------------------------


def encode(value: Any, schema: Schema) -> None:
    """Add what Go always writes and drop the empty maps and lists `omitempty` leaves out (in place)."""
    if not isinstance(value, dict) or schema.shape != "struct":
        return
    name_of = schema.name or ""
    always = gotypes.zero_fields(name_of)
    for name, zero in always.items():
        value.setdefault(name, zero)
    for name in gotypes.struct_fields(name_of):
        value.setdefault(name, {})
    for name in schema.fields:
        if name not in value and (schema.field(name) or ANY).name == OBJECT_META:
            value[name] = {}
    for name in list(value):
        sub = schema.field(name)
        if sub is None:
            continue
        item = value[name]
        if isinstance(item, dict | list) and not item and sub.shape in ("map", "list") and name not in always:
            del value[name]
            continue
        encode_value(item, sub)


def encode_value(value: Any, schema: Schema) -> None:
    if schema.shape == "struct":
        if schema.name == OBJECT_META:
            _clean_meta(value)
        else:
            encode(value, schema)
    elif schema.shape == "list" and isinstance(value, list):
        for item in value:
            encode_value(item, schema.items)
    elif schema.shape == "map" and isinstance(value, dict):
        for item in value.values():
            encode_value(item, schema.values)


def _clean_meta(meta: Any) -> None:
    if isinstance(meta, dict):
        for name in ("labels", "annotations", "finalizers", "ownerReferences", "managedFields"):
            if name in meta and not meta[name]:
                del meta[name]


def encode_object(rt: ResourceType, obj: Obj) -> None:
    """The whole object as the API server returns it (custom resources as they were decoded)."""
    _clean_meta(obj.setdefault("metadata", {}))
    if not rt.custom:
        encode(obj, rt.schema)
