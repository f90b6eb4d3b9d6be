"""The four ways to change an object: server-side apply's merge, JSON merge patch, strategic merge patch, JSON patch.

Server-side apply merges lists as their schema says (by key, as a set, or atomically); strategic merge
follows the older `x-kubernetes-patch-strategy` and `-patch-merge-key` (so `metadata.finalizers` merges as
a set, `containers` by name). Both come from the kind's schema.
"""

from __future__ import annotations

import json
from typing import Any

from promoflow.sandbox.kube.errors import ApiError, bad_request
from promoflow.sandbox.kube.fields import copy, item_element, list_keys
from promoflow.sandbox.kube.schema import ANY, Schema


def _sub(schema: Schema, key: str) -> Schema:
    if schema.shape == "struct":
        return schema.field(key) or ANY
    return schema.values if schema.shape == "map" else ANY


def merge_apply(current: Any, applied: Any, schema: Schema) -> Any:
    """Server-side apply's merge: maps recursively, lists by key or as sets, atomic values replaced."""
    if isinstance(current, dict) and isinstance(applied, dict) and not schema.atomic:
        out = dict(current)
        for key, value in applied.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merge_apply(current[key], value, _sub(schema, key)) if key in current else value
        return out
    if isinstance(current, list) and isinstance(applied, list):
        if schema.list_type == "set":
            return current + [v for v in applied if v not in current]
        if list_keys(schema, applied) and (not current or list_keys(schema, current)):
            merged = list(current)
            positions = {item_element(item, schema): i for i, item in enumerate(merged)}
            for item in applied:
                element = item_element(item, schema)
                if element in positions:
                    merged[positions[element]] = merge_apply(merged[positions[element]], item, schema.items)
                else:
                    positions[element] = len(merged)
                    merged.append(item)
            return merged
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


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def strategic_merge(target: Any, patch: Any, schema: Schema) -> Any:
    """Strategic merge patch with its directives: $patch, $retainKeys, $deleteFromPrimitiveList, $setElementOrder.

    A list whose strategy is `merge` keeps the server's items; the patch's come first, in the patch's order
    (or `$setElementOrder`'s), with the server's slotted back where they stood among them.
    """
    if not isinstance(patch, dict) or patch.get("$patch") == "replace":
        return _strip(patch)
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
            order = patch.get(f"$setElementOrder/{key}")
            out[key] = _strategic_list(
                out.get(key), value, _sub(schema, key), order if isinstance(order, list) else None
            )
        else:
            out[key] = strategic_merge(out.get(key), value, _sub(schema, key))
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


def _strategic_list(current: Any, patch: list[Any], schema: Schema, order: list[Any] | None) -> list[Any]:
    def directive(item: Any) -> Any:
        return item.get("$patch") if isinstance(item, dict) else None

    if any(directive(item) == "replace" for item in patch):
        return [_strip(item) for item in patch if directive(item) != "replace"]
    if "merge" not in schema.patch_strategy or not isinstance(current, list):
        return [_strip(item) for item in patch if directive(item) != "delete"]
    key = schema.patch_merge_key
    if key is None:  # a list of values merged as a set (metadata.finalizers)
        return _patch_order(current + [v for v in patch if v not in current], order or patch, current, None)
    merged = list(current)
    positions = {item.get(key): i for i, item in enumerate(merged) if isinstance(item, dict)}
    deleted = set()
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(f"unable to find api field in struct for the list merged by {key!r}: {item!r}")
        if directive(item) == "delete":
            deleted.add(item.get(key))
        elif item.get(key) in positions:
            at = positions[item.get(key)]
            merged[at] = strategic_merge(merged[at], item, schema.items)
        else:
            positions[item.get(key)] = len(merged)
            merged.append(_strip(item))
    kept = [item for item in merged if not (isinstance(item, dict) and item.get(key) in deleted)]
    return _patch_order(kept, order or [i for i in patch if directive(i) is None], current, key)


def _patch_order(merged: list[Any], patch: list[Any], original: list[Any], key: str | None) -> list[Any]:
    """Strategic merge's order: the patch's items in its order, the server's own slotted in where they were before."""

    def identity(item: Any) -> Any:
        return item.get(key) if key is not None and isinstance(item, dict) else json.dumps(item, sort_keys=True)

    patched = [identity(i) for i in patch]
    before = [identity(i) for i in original]
    right = sorted((m for m in merged if identity(m) in patched), key=lambda m: patched.index(identity(m)))
    left = sorted(
        (m for m in merged if identity(m) not in patched),
        key=lambda m: before.index(identity(m)) if identity(m) in before else len(before),
    )
    ordered, i, j = [], 0, 0
    while i < len(left) or j < len(right):
        if j >= len(right) or (
            i < len(left)
            and identity(left[i]) in before
            and identity(right[j]) in before
            and before.index(identity(left[i])) < before.index(identity(right[j]))
        ):
            ordered.append(left[i])
            i += 1
        else:
            ordered.append(right[j])
            j += 1
    return ordered


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]] if path else []


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch."""
    if not isinstance(operations, list):
        raise bad_request("a JSON patch must be a list of operations")
    doc = copy(doc)

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
            add(path, copy(read(_pointer(op.get("from")))))
        elif read(path) != op.get("value"):
            raise unprocessable(f"testing value /{'/'.join(path)} failed")
    return doc
