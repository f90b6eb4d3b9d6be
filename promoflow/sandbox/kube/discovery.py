"""Discovery and OpenAPI v3, built from what the cluster serves.

OpenAPI v3 documents carry the bundled schemas of the built-in kinds (and each CRD's own), in OpenAPI 3's
form, so `kubectl explain` prints the fields, client-side `kubectl apply` computes its patches from them,
and kubectl sees that each PATCH takes `fieldValidation`. `/openapi/v2` is not served (kubectl expects
protobuf there and falls back to v3).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

from promoflow.sandbox.kube.resources import GIT_VERSION, VERSION, Catalogue, ResourceType
from promoflow.sandbox.kube.schema import all_definitions

Obj = dict[str, Any]
PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
CUSTOM_VERBS = ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]
VERSION_INFO = {
    "major": VERSION.split(".")[0],
    "minor": VERSION.split(".")[1],
    "emulationMajor": VERSION.split(".")[0],
    "emulationMinor": VERSION.split(".")[1],
    "minCompatibilityMajor": VERSION.split(".")[0],
    "minCompatibilityMinor": str(int(VERSION.split(".")[1]) - 1),
    "gitVersion": GIT_VERSION,
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.26.8",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def resource_list(catalogue: Catalogue, group_version: str) -> Obj:
    resources: list[Obj] = []
    for rt in sorted((rt for rt in catalogue.types if rt.api_version == group_version), key=lambda rt: rt.plural):
        entry: Obj = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": CUSTOM_VERBS if rt.custom else list(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        if rt.stored:
            entry["storageVersionHash"] = _hash(rt.key)
        resources.append(entry)
        subresources: list[tuple[str, str, list[str], tuple[str, str] | None]] = []
        if rt.kind == "Namespace" and not rt.custom:
            subresources.append(("finalize", rt.kind, ["update"], None))
        if rt.scale:
            subresources.append(("scale", "Scale", ["get", "patch", "update"], ("autoscaling", "v1")))
        if rt.status:
            subresources.append(("status", rt.kind, ["get", "patch", "update"], None))
        for name, kind, verbs, group_version_of in sorted(subresources):
            sub: Obj = {"name": f"{rt.plural}/{name}", "singularName": "", "namespaced": rt.namespaced, "kind": kind}
            if group_version_of:
                sub.update(group=group_version_of[0], version=group_version_of[1])
            sub["verbs"] = verbs
            resources.append(sub)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


def api_group(catalogue: Catalogue, group: str) -> Obj:
    preferred = catalogue.preferred(group)
    found = [gv.split("/")[1] for gv in catalogue.group_versions if gv.startswith(group + "/")]
    ordered = [preferred, *sorted((v for v in found if v != preferred), reverse=True)]
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in ordered]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def api_groups(catalogue: Catalogue) -> Obj:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group(catalogue, g) for g in catalogue.groups()]}


# --- OpenAPI v3 --------------------------------------------------------------------------------------------


def openapi_key(group_version: str) -> str:
    return f"apis/{group_version}" if "/" in group_version else f"api/{group_version}"


def _v3(node: Any) -> Any:
    """A bundled JSON-schema node in OpenAPI 3's form: one type, no `additionalProperties: false`, component refs."""
    if isinstance(node, list):
        return [_v3(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: Obj = {}
    for key, value in node.items():
        if key in ("$schema", "$id") or (key == "additionalProperties" and value is False):
            continue
        if key == "$ref" and isinstance(value, str):
            out[key] = "#/components/schemas/" + value.rsplit("/", 1)[-1]
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if types:
                out[key] = types[0]
        elif key == "oneOf" and isinstance(value, list):
            options = {
                t
                for option in value
                for t in (option.get("type") if isinstance(option.get("type"), list) else [option.get("type")])
            }
            out["oneOf"] = [{"type": "integer" if "integer" in options else "number"}, {"type": "string"}]
            out["format"] = "int-or-string" if "integer" in options else "quantity"
        else:
            out[key] = _v3(value)
    return out


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


@functools.cache
def _closure(names: frozenset[str]) -> dict[str, Obj]:
    """The bundled definitions `names` need, in OpenAPI 3's form."""
    defs = all_definitions()
    todo, found = list(names), {}
    while todo:
        name = todo.pop()
        if name in found or name not in defs:
            continue
        found[name] = _v3(defs[name])
        todo += _refs(defs[name])
    return found


def _schema_name(rt: ResourceType) -> str:
    if rt.schema.name:
        return rt.schema.name
    return ".".join(reversed(rt.group.split("."))) + f".{rt.version}.{rt.kind}"


def _custom_schema(rt: ResourceType) -> Obj:
    schema = _v3(rt.schema.node)
    schema["x-kubernetes-group-version-kind"] = [{"group": rt.group, "kind": rt.kind, "version": rt.version}]
    return schema


def _parameter(name: str, kind: str = "string", where: str = "query", required: bool = False) -> Obj:
    parameter: Obj = {"name": name, "in": where, "schema": {"type": kind, "uniqueItems": True}}
    if required:
        parameter["required"] = True
    return parameter


def openapi_document(catalogue: Catalogue, group_version: str) -> Obj:
    """The OpenAPI v3 document of one group-version: its resources' paths and every schema they use."""
    served = [rt for rt in catalogue.types if rt.api_version == group_version]
    builtin = frozenset(
        {rt.schema.name for rt in served if rt.schema.name}
        | {rt.schema.name + "List" for rt in served if rt.schema.name}
        | {"io.k8s.apimachinery.pkg.apis.meta.v1.Patch", "io.k8s.apimachinery.pkg.apis.meta.v1.Status"}
        | {"io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    )
    schemas = dict(_closure(builtin))
    paths: Obj = {}
    write = [_parameter("dryRun"), _parameter("fieldManager"), _parameter("fieldValidation")]
    for rt in served:
        name = _schema_name(rt)
        if rt.custom:
            schemas[name] = _custom_schema(rt)
        ref = {"$ref": f"#/components/schemas/{name}"}
        gvk = {"group": rt.group, "kind": rt.kind, "version": rt.version}

        def operation(action: str, extra: Obj, ref: Obj = ref, gvk: Obj = gvk, rt: ResourceType = rt) -> Obj:
            return {
                "operationId": f"{action}{rt.kind}",
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                **extra,
            }

        scope = "/namespaces/{namespace}" if rt.namespaced else ""
        collection = f"/{openapi_key(group_version)}{scope}/{rt.plural}"
        item = [_parameter("name", where="path", required=True)]
        if rt.namespaced:
            item.append(_parameter("namespace", where="path", required=True))
        body = {"requestBody": {"content": {"*/*": {"schema": ref}}, "required": True}}
        patch_body = {
            ct: {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}}
            for ct in PATCH_TYPES
        }
        patch = operation(
            "patch", {"parameters": [*write, _parameter("force", "boolean")], "requestBody": {"content": patch_body}}
        )
        paths[collection] = {"parameters": item[1:]}
        if "create" in rt.verbs:
            paths[collection]["post"] = operation("post", {"parameters": write, **body})
        if "list" in rt.verbs:
            paths[collection]["get"] = operation("list", {})
        if rt.stored:
            paths[collection + "/{name}"] = {
                "parameters": item,
                "get": operation("get", {}),
                "put": operation("put", {"parameters": write, **body}),
                "patch": patch,
                "delete": operation("delete", {"parameters": write[:1]}),
            }
            if rt.status:
                paths[collection + "/{name}/status"] = {
                    "parameters": item,
                    "get": operation("get", {}),
                    "put": operation("put", {"parameters": write, **body}),
                    "patch": patch,
                }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def openapi_root(catalogue: Catalogue, digest: Callable[[str], str]) -> Obj:
    return {
        "paths": {
            openapi_key(gv): {"serverRelativeURL": f"/openapi/v3/{openapi_key(gv)}?hash={digest(gv)}"}
            for gv in catalogue.group_versions
        }
    }


def document_hash(document: Obj) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest().upper()
