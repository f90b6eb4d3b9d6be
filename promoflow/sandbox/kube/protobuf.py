"""Request bodies in Kubernetes' protobuf encoding, read into the JSON form the rest of the stand-in works on.

kubectl's typed requests (`kubectl create namespace`, `create deployment`, `auth can-i`, ...) send built-in
kinds as `application/vnd.kubernetes.protobuf`: the bytes `k8s\\0`, then a runtime.Unknown wrapping the
object's apiVersion, kind and message. The field numbers come from the Go types' protobuf tags
(`gotypes.wire`); the result is what the same object sent as JSON would be, zero values Go leaves out
left out. Answers stay JSON: kubectl accepts both.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from promoflow.sandbox.kube import gotypes
from promoflow.sandbox.kube.errors import bad_request

Obj = dict[str, Any]
MAGIC = b"k8s\x00"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
RAW_JSON = {
    "io.k8s.apimachinery.pkg.runtime.RawExtension",
    META + "FieldsV1",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON",
}
SCHEMA_OR = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOr"
WIRE_TYPES = {"string": 2, "bytes": 2, "message": 2, "items": 2, "bool": 0, "int": 0, "float": 1}


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise ValueError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field of a message: ints for varints, bytes otherwise."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            varint, at = _varint(data, at)
            yield number, wire_type, varint
            continue
        if wire_type == 2:
            size, at = _varint(data, at)
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if at + size > len(data):
            raise ValueError("truncated field")
        yield number, wire_type, data[at : at + size]
        at += size


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _first(data: bytes) -> dict[int, Any]:
    return {number: value for number, _, value in _fields(data)}


def _time(data: bytes, micro: bool) -> str | None:
    fields = _first(data)
    if not fields.get(1) and not fields.get(2):
        return None  # the zero time, which Go writes as null (and leaves out where it may)
    moment = datetime.fromtimestamp(_signed(fields.get(1, 0)) + fields.get(2, 0) / 1e9, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def _duration(nanoseconds: int) -> str:
    """Go's time.Duration.String() for whole seconds and more: 1h0m0s, 90s -> 1m30s."""
    seconds = nanoseconds // 10**9
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return (f"{hours}h{minutes}m{seconds}s" if hours else f"{minutes}m{seconds}s" if minutes else f"{seconds}s") or "0s"


def _message(data: bytes, target: str) -> Any:
    """One message of the definition `target`, as its JSON."""
    if target.endswith(".Time") or target.endswith(".MicroTime"):
        return _time(data, target.endswith(".MicroTime"))
    if target == META + "Duration":
        return _duration(_signed(_first(data).get(1, 0)))
    if target.endswith("intstr.IntOrString"):
        fields = _first(data)
        return fields.get(3, b"").decode() if fields.get(1) == 1 else _signed(fields.get(2, 0))
    if target.endswith("resource.Quantity"):
        return _first(data).get(1, b"").decode()
    if target in RAW_JSON:
        raw = _first(data).get(1, b"")
        return json.loads(raw) if raw else None
    if target.startswith(SCHEMA_OR):  # JSON has no field names for these: the list if any, else the schema
        parsed = _struct(data, target)
        listed = parsed.get("jSONSchemas") or parsed.get("property")
        return listed or parsed.get("schema", parsed.get("allows", False) if target.endswith("OrBool") else None)
    return _struct(data, target)


def _scalar(kind: str, target: str, wire_type: int, value: Any) -> Any:
    if wire_type != WIRE_TYPES[kind] and not (kind == "float" and wire_type == 5):
        raise ValueError(f"a {kind} sent as wire type {wire_type}")
    if kind == "float":  # Go writes whole floats as integers
        number: float = struct.unpack("<d" if wire_type == 1 else "<f", value)[0]
        return int(number) if number.is_integer() else number
    if kind == "items":  # a named slice as a map's value: a message repeating its items in field 1
        return [_scalar(target, "", item_type, item) for number, item_type, item in _fields(value) if number == 1]
    if kind == "string":
        return value.decode()
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return _signed(value)
    if kind == "bytes":
        return base64.b64encode(value).decode()
    return _message(value, target)


def _struct(data: bytes, definition: str) -> Obj:
    specs = {spec[0]: spec for spec in gotypes.wire(definition)}
    out: Obj = {}
    for number, wire_type, value in _fields(data):
        spec = specs.get(number)
        if spec is None:
            continue
        name, kind = spec[1], spec[2]
        if kind == "inline":  # an embedded struct: a message on the wire, its fields the parent's in JSON
            out.update(_struct(value, spec[3]))
            continue
        if kind == "map":
            entry = {number: (item_type, item) for number, item_type, item in _fields(value)}
            key = _scalar("string", "", *entry.get(1, (2, b"")))
            item_type, item = entry.get(2, (WIRE_TYPES[spec[3]], b"" if WIRE_TYPES[spec[3]] == 2 else 0))
            out.setdefault(name, {})[key] = _scalar(spec[3], spec[4], item_type, item)
            continue
        target, repeated = spec[3], spec[4]
        if repeated and kind in ("int", "bool") and wire_type == 2:  # packed (floats are never repeated here)
            at, items = 0, []
            while at < len(value):
                item, at = _varint(value, at)
                items.append(_scalar(kind, target, 0, item))
            out.setdefault(name, []).extend(items)
        elif repeated:
            out.setdefault(name, []).append(_scalar(kind, target, wire_type, value))
        else:
            decoded = _scalar(kind, target, wire_type, value)
            if decoded is not None:
                out[name] = decoded
    for _, name, kind, *rest in specs.values():  # what omitempty leaves out of JSON
        if kind == "inline":
            continue
        if kind in ("string", "bool", "int", "float") and rest[-1] and not rest[-2] and out.get(name) in ("", False, 0):
            out.pop(name, None)
    return out


def envelope(raw: bytes) -> tuple[str, str, bytes]:
    """(apiVersion, kind, message) of a protobuf request body."""
    if not raw.startswith(MAGIC):
        raise bad_request("the protobuf body does not start with the Kubernetes magic number")
    try:
        unknown = _first(raw[len(MAGIC) :])
        type_meta = _first(unknown.get(1, b""))
        return type_meta.get(1, b"").decode(), type_meta.get(2, b"").decode(), unknown.get(2, b"")
    except (ValueError, AttributeError) as error:  # UnicodeDecodeError is a ValueError; an int where bytes belong
        raise bad_request(f"the protobuf body cannot be read: {error}") from None


def decode(raw: bytes, definition: str) -> Obj:
    """A protobuf request body of the definition `definition` as the JSON object it stands for."""
    api_version, kind, message = envelope(raw)
    try:
        body = _struct(message, definition)
    except (ValueError, AttributeError, TypeError, struct.error) as error:  # a field of the wrong shape
        raise bad_request(f"the protobuf body cannot be read: {error}") from None
    except RecursionError:
        raise bad_request("the protobuf body is nested too deeply") from None
    return {"apiVersion": api_version, "kind": kind, **body}
