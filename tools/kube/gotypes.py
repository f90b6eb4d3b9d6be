"""Write promoflow/sandbox/kube/gotypes.json: what the Go types of the API say that its OpenAPI schemas do not.

The stand-in needs three facts the bundled schemas lack: which struct-typed fields Go always writes (not
pointers), which fields it writes even at their zero value (no `omitempty`), and each field's protobuf
number and wire type (kubectl sends built-in kinds as protobuf). They are in the json and protobuf struct
tags of the Go types. Run from the repository root after `scripts/kube-build` (the modules are in the Go
module cache then): `python3 tools/kube/gotypes.py`.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "promoflow" / "sandbox" / "kube" / "gotypes.json"
MODULES = {  # module -> (directory below it, OpenAPI name prefix)
    "k8s.io/api": ("", "io.k8s.api."),
    "k8s.io/apimachinery": ("pkg/apis/meta/v1", "io.k8s.apimachinery.pkg.apis.meta.v1"),
    "k8s.io/apiextensions-apiserver": (
        "pkg/apis/apiextensions/v1",
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1",
    ),
    "k8s.io/kube-aggregator": ("pkg/apis/apiregistration/v1", "io.k8s.kube-aggregator.pkg.apis.apiregistration.v1"),
}
# Types with their own wire forms (the stand-in decodes them by name); anything else named is a struct.
SPECIAL = {
    "k8s.io/apimachinery/pkg/util/intstr.IntOrString": "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    "k8s.io/apimachinery/pkg/api/resource.Quantity": "io.k8s.apimachinery.pkg.api.resource.Quantity",
    "k8s.io/apimachinery/pkg/runtime.RawExtension": "io.k8s.apimachinery.pkg.runtime.RawExtension",
}
SCALARS = re.compile(r"^(u?int(8|16|32|64)?|float(32|64)|bool|string|byte)$")
FIELD = re.compile(r"^(\w+)\s+([\w.*\[\]]+)\s+`(.*)`")
EMBEDDED = re.compile(r"^([\w.*]+)\s+`(.*)`")
TAG = re.compile(r'(\w+):"([^"]*)"')


def module_dir(module: str) -> Path:
    found = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", module],
        cwd=ROOT / "tools" / "kube",
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(found.stdout.strip())


def packages() -> list[tuple[Path, str]]:
    found = []
    for module, (below, prefix) in MODULES.items():
        base = module_dir(module)
        if below:
            found.append((base / below, prefix))
        else:
            found += [
                (d, prefix + f"{d.parent.name}.{d.name}")
                for d in sorted(base.glob("*/v[0-9]*"))
                if re.fullmatch(r"v\d+", d.name)
            ]
    return found


def resolve(go_type: str, imports: dict, prefix: str) -> str:
    bare = go_type.lstrip("*").removeprefix("[]")
    if "." not in bare:
        return f"{prefix}.{bare}"
    alias, name = bare.split(".", 1)
    path = imports.get(alias, alias)
    if path.startswith("k8s.io/api/"):
        return "io.k8s.api." + path[len("k8s.io/api/") :].replace("/", ".") + f".{name}"
    if path == "k8s.io/apimachinery/pkg/apis/meta/v1":
        return f"io.k8s.apimachinery.pkg.apis.meta.v1.{name}"
    return SPECIAL.get(f"{path}.{name}", f"{path}.{name}")


@dataclass
class GoTypes:
    """The struct, alias and named slice or map types of the API's Go packages, by OpenAPI definition name."""

    structs: dict[str, tuple[list, dict, str]] = field(default_factory=dict)  # fields, imports, package prefix
    aliases: dict[str, str] = field(default_factory=dict)  # named scalar types: their Go base type
    composites: dict[str, tuple[str, dict, str]] = field(default_factory=dict)  # named slices and maps

    def parse(self, directory: Path, prefix: str) -> None:
        for source in sorted(directory.glob("*.go")):
            if source.name.endswith("_test.go") or source.name.startswith("zz_"):
                continue
            text = source.read_text()
            block = re.search(r"^import \((.*?)^\)", text, re.M | re.S)
            imports = {}
            for alias, path in re.findall(r'^\s*(\w+)?\s*"([^"]+)"', block.group(1) if block else "", re.M):
                imports[alias or path.rsplit("/", 1)[-1]] = path
            for name, base in re.findall(r"^type (\w+) (string|int32|int64|bool|\[\]byte)\s*$", text, re.M):
                self.aliases[f"{prefix}.{name}"] = base
            for name, underlying in re.findall(r"^type (\w+) ((?:\[\]|map\[)[\w.\[\]*]+)\s*$", text, re.M):
                if underlying != "[]byte":
                    self.composites[f"{prefix}.{name}"] = (underlying, imports, prefix)
            for name, body in re.findall(r"^type (\w+) struct \{\n(.*?)^\}", text, re.M | re.S):
                fields = []
                for line in body.splitlines():
                    line = line.strip()
                    if not line or line.startswith("//"):
                        continue
                    embedded, named = EMBEDDED.match(line), FIELD.match(line)
                    if embedded:
                        fields.append((None, embedded.group(1), dict(TAG.findall(embedded.group(2)))))
                    elif named:
                        fields.append((named.group(1), named.group(2), dict(TAG.findall(named.group(3)))))
                self.structs[f"{prefix}.{name}"] = (fields, imports, prefix)
            for name in re.findall(r"^type (\w+) struct ?\{\}", text, re.M):  # CustomResourceSubresourceStatus
                self.structs[f"{prefix}.{name}"] = ([], imports, prefix)

    def underlying(self, go_type: str, imports: dict, prefix: str) -> tuple[str, str, dict, str]:
        """(Go type, target, imports, prefix) of a field's type: a named slice or map stands for its underlying
        type (ResourceList is a map on the wire, ValidationRules a repeated field), resolved where it is declared."""
        target = resolve(go_type, imports, prefix)
        if target in self.composites and not go_type.startswith(("*", "[]", "map[")):
            go_type, imports, prefix = self.composites[target]
            target = resolve(go_type, imports, prefix)
        return go_type, target, imports, prefix

    def fields_of(self, definition: str) -> list[tuple[str, str, str]]:
        """(json tag, Go type, target) of a struct's JSON fields, embedded structs' fields included."""
        fields, imports, prefix = self.structs[definition]
        out = []
        for name, go_type, tags in fields:
            json_tag = tags.get("json", "")
            if name is None and (json_tag.startswith(",inline") or not json_tag):
                target = resolve(go_type, imports, prefix)
                if target in self.structs and not target.endswith(".TypeMeta"):  # kind and apiVersion: no fields
                    out += self.fields_of(target)
                continue
            json_name = json_tag.split(",")[0]
            if json_name and json_name != "-":
                go_type, target, _, _ = self.underlying(go_type, imports, prefix)
                out.append((json_tag, go_type, target))
        return out

    def kind_of(self, go_type: str, target: str) -> str:
        element = go_type.lstrip("*").removeprefix("[]")
        if go_type.startswith("[]byte") or self.aliases.get(target) == "[]byte":
            return "bytes"
        if (
            target in SPECIAL.values()
            or target in self.structs
            or target.endswith((".Time", ".MicroTime", ".Duration", ".FieldsV1"))
        ):
            return "message"
        base = self.aliases.get(target, element)
        if base == "bool":
            return "bool"
        if base.startswith("float"):
            return "float"
        if SCALARS.match(base) and base != "string":
            return "int"
        return "string"

    def wire_of(self, definition: str) -> list[list[object]]:
        """[number, json name, kind, target, repeated, pointer, omitempty] of each protobuf field of a struct.

        An embedded struct inlined in JSON is a nested message on the wire: kind "inline", its fields merged.
        A map is [number, json name, "map", value kind, value target, ...]; a named slice as a map's value
        (ExtraValue) is a message repeating its items in field 1: value kind "items", target their kind.
        """
        fields, imports, prefix = self.structs[definition]
        found: list[list[object]] = []
        for name, declared, tags in fields:
            proto = tags.get("protobuf", "-")
            if proto == "-":
                continue  # TypeMeta (kind and apiVersion are not fields of the message), time.Time
            number = int(proto.split(",")[1])
            json_name, *options = tags.get("json", "").split(",")
            if name is None and not json_name:
                found.append([number, "", "inline", resolve(declared, imports, prefix), False, False, False])
                continue
            # Fields without a json tag (JSONSchemaPropsOrBool's) go by their protobuf name.
            json_name = json_name or dict(p.split("=", 1) for p in proto.split(",") if "=" in p)["name"]
            go_type, target, where, within = self.underlying(declared, imports, prefix)
            pointer, repeated = go_type.startswith("*"), go_type.startswith("[]") and go_type != "[]byte"
            omitted = bool({"omitempty", "omitzero"} & set(options))
            if go_type.startswith("map["):
                value_type = go_type.split("]", 1)[1]
                value_target = resolve(value_type, where, within)
                if value_target in self.composites:
                    items, item_target, _, _ = self.underlying(value_type, where, within)
                    kind = ["map", "items", self.kind_of(items, item_target)]
                else:
                    kind = ["map", self.kind_of(value_type, value_target), value_target]
            else:
                kind = [self.kind_of(go_type, target), target]
            found.append([number, json_name, *kind, repeated, pointer, omitted])
        return found


def main() -> None:
    types = GoTypes()
    for directory, prefix in packages():
        types.parse(directory, prefix)
    struct_fields: dict[str, list[str]] = {}
    zero_fields: dict[str, dict[str, object]] = {}
    wire: dict[str, list[list[object]]] = {}
    for definition in sorted(types.structs):
        for json_tag, go_type, target in types.fields_of(definition):
            name, *options = json_tag.split(",")
            omitted = bool({"omitempty", "omitzero"} & set(options))
            pointer, repeated = go_type.startswith("*"), go_type.startswith("[]") and go_type != "[]byte"
            mapped = go_type.startswith("map[")
            plain_struct = not (pointer or repeated or mapped) and target in types.structs
            if plain_struct and "omitzero" not in options:
                struct_fields.setdefault(definition, []).append(name)
            elif not omitted and not plain_struct:
                zero: object = None
                if not (pointer or repeated or mapped):
                    zero = {"int": 0, "float": 0, "bool": False, "string": ""}.get(types.kind_of(go_type, target))
                zero_fields.setdefault(definition, {})[name] = zero
        wire[definition] = types.wire_of(definition)
    OUT.write_text(
        json.dumps({"struct_fields": struct_fields, "zero_fields": zero_fields, "wire": wire}, sort_keys=True) + "\n"
    )


if __name__ == "__main__":
    main()
