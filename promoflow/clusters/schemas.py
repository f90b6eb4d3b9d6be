"""Kubernetes' own JSON schemas of built-in kinds: a manifest the API server would refuse fails before any apply.

The schemas are the official OpenAPI definitions as converted by the `kubernetes-validate` package (bundled,
read offline), in their strict form: an unknown field is an error, as it is for `kubectl apply` with
`--validate=strict`. Kinds of custom resources (any group outside Kubernetes' own) have no schema here and
pass: their CRD, possibly rendered alongside, is the API server's to enforce.
"""

from __future__ import annotations

import datetime
import functools
import importlib.resources
import json
import re
from typing import Any

from promoflow.errors import TerminalError

MAX_ERRORS_SHOWN = 5
_VERSION_DIR = re.compile(r"^v(\d+)\.(\d+)\.(\d+)-local-strict$")
_JSON_TYPES = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false"}
_JSON_TYPES |= {"object": "a mapping", "array": "a list", "null": "null"}


def check(obj: dict[str, Any], where: str) -> None:
    """Raise TerminalError, located at `where`, naming each field of `obj` that its kind's schema refuses."""
    problems = errors(obj)
    if problems:
        shown = problems[:MAX_ERRORS_SHOWN]
        more = f" (and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
        raise TerminalError(
            f"{where}: invalid {obj['kind']} (Kubernetes {kubernetes_version()} schema): "
            f"{'; '.join(shown)}{more}: fix the manifest"
        )


def errors(obj: dict[str, Any]) -> list[str]:
    """`field.path: what is wrong` for each schema violation of `obj`; empty if valid or if its kind has no schema."""
    validator = _validator(obj["apiVersion"], obj["kind"])
    if validator is None:
        return []
    return sorted(line for error in validator.iter_errors(obj) for line in _describe(error))


def is_builtin(api_version: str) -> bool:
    """Whether the group is Kubernetes' own: the core group, a dotless group (apps, batch) or one under k8s.io."""
    group = api_version.rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


@functools.cache
def kubernetes_version() -> str:
    """The newest Kubernetes minor version whose schemas are bundled, e.g. `1.37`."""
    versions = [m.groups() for p in _root().iterdir() if (m := _VERSION_DIR.match(p.name))]
    major, minor, _ = max(versions, key=lambda v: tuple(int(n) for n in v))
    return f"{major}.{minor}"


def _root() -> Any:
    return importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"


def _schemas() -> Any:
    return _root() / f"v{kubernetes_version()}.0-local-strict"


@functools.cache
def definitions() -> dict[str, Any]:
    """The bundled document of all definitions (about 2 MB of JSON, loaded once): `$defs` by OpenAPI name."""
    document: dict[str, Any] = json.loads((_schemas() / "_definitions.json").read_text())
    return document


@functools.cache
def _registry() -> Any:
    """Every kind's schema refers into the definitions."""
    from referencing import Registry, Resource

    return Resource.from_contents(definitions()) @ Registry()


@functools.cache
def _validator(api_version: str, kind: str) -> Any:
    from jsonschema import Draft202012Validator, validators

    if not is_builtin(api_version):
        return None
    group, _, version = api_version.rpartition("/")
    suffix = f"{group.split('.')[0]}-{version}" if group else version
    path = _schemas() / f"{kind.lower()}-{suffix}.json"
    if not path.is_file():
        return None  # a kind or version Kubernetes does not have: the API server says so, naming it
    checker = Draft202012Validator.TYPE_CHECKER.redefine("string", _is_string)
    validator = validators.extend(Draft202012Validator, type_checker=checker)
    return validator(json.loads(path.read_text()), registry=_registry())


def _describe(error: Any) -> list[str]:
    """One line per problem, in a manifest author's words rather than JSON Schema's."""
    path = _path(error.absolute_path)
    located = path or "(top level)"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties") or {})
        return [f"{_join(path, key)}: unknown field" for key in error.instance if key not in known]
    if error.validator == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        wanted = [_JSON_TYPES.get(t, t) for t in wanted if t != "null"]
        return [f"{located}: must be {' or '.join(wanted)}, not {_shown(error.instance)}"]
    if error.validator == "required":
        missing = [key for key in error.validator_value if key not in error.instance]
        return [f"{_join(path, key)}: required" for key in missing]
    if error.validator == "oneOf" and error.schema.get("oneOf"):
        wanted = [
            _JSON_TYPES.get(t, t)
            for option in error.schema["oneOf"]
            for t in (option.get("type") if isinstance(option.get("type"), list) else [option.get("type")])
            if t and t != "null"
        ]
        if wanted:
            return [f"{located}: must be {' or '.join(dict.fromkeys(wanted))}, not {_shown(error.instance)}"]
    return [f"{located}: {error.message}"]


def _path(parts: Any) -> str:
    """kubectl's notation: `spec.template.spec.containers[0].image`."""
    text = ""
    for part in parts:
        text = f"{text}[{part}]" if isinstance(part, int) else _join(text, str(part))
    return text


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _shown(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str | int | float | bool) or value is None else type(value).__name__


def _is_string(checker: Any, instance: Any) -> bool:
    """YAML reads `2024-01-01` as a date; kubectl and the client send it as the string it was, so it is one."""
    return isinstance(instance, str | datetime.date)
