"""YAML read exactly as ruamel.yaml reads it (YAML 1.2), at C speed: libyaml's parser with ruamel.yaml's own table
of implicit scalars, for plain YAML only.

ruamel.yaml's round trip is what promoflow edits and locates errors with, and it is pure Python: a promotions.yaml
of 200 apps takes it 0.7 s, an app of 50 manifests about as long. `read()` gives the same data in a tenth of the
time, or gives up (`NotPlain`) on anything it could read differently: tabs, directives (`%YAML 1.1` changes the
scalars), characters ruamel.yaml refuses, aliases, merge keys, explicit tags, timestamps, keys that are not text or
repeat, numbers Python cannot hold, and YAML errors. The caller then asks ruamel.yaml, which reads it (or says
where it is wrong).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar

import yaml as libyaml
from ruamel.yaml.reader import Reader
from ruamel.yaml.resolver import implicit_resolvers
from yaml._yaml import CParser

__all__ = ["NotPlain", "read"]

_IMPLICIT = "implicit "


class NotPlain(Exception):
    """The text is outside the plain YAML `read` reads exactly as ruamel.yaml does (or not YAML at all)."""


def read(text: str) -> object:
    """The data of the one document `text` holds: mappings with text keys, lists, text, numbers, booleans, nulls."""
    if "\t" in text or re.search(r"^%", text, re.MULTILINE) or Reader.NON_PRINTABLE.search(text):
        raise NotPlain("tabs, a directive or a character ruamel.yaml refuses")
    loader = _PlainLoader(text)
    try:
        return loader.get_single_data()
    except (libyaml.YAMLError, ValueError, OverflowError, RecursionError) as error:
        raise NotPlain(str(error)) from None
    finally:
        loader.dispose()


def _mapping(loader: _PlainLoader, node: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, str) or key in result:
            raise NotPlain("a key that is not text, or a duplicate")
        result[key] = loader.construct_object(value_node)
    return result


def _int(loader: _PlainLoader, node: Any) -> int:
    """As ruamel.yaml reads a YAML 1.2 integer: `0b`, `0o`, `0x` prefixes, `_` ignored, leading zeros decimal."""
    text = str(node.value).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    for prefix, base in (("0b", 2), ("0o", 8), ("0x", 16)):
        if text.startswith(prefix):
            return sign * int(text[2:], base)
    return sign * int(text)


def _float(loader: _PlainLoader, node: Any) -> float:
    text = str(node.value).replace("_", "").lower()
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    if text == ".nan":
        return float("nan")
    return sign * (float("inf") if text == ".inf" else float(text))


def _not_plain(loader: _PlainLoader, node: Any) -> None:
    raise NotPlain(str(node.tag))


class _PlainLoader(CParser, libyaml.constructor.BaseConstructor, libyaml.resolver.BaseResolver):
    """libyaml's parser; YAML 1.2's implicit scalars, from ruamel.yaml's own table; only untagged mappings with
    string keys, lists, strings, numbers, booleans and nulls, each node once (an alias is not plain)."""

    yaml_constructors: ClassVar[dict[str | None, Callable[[_PlainLoader, Any], object]]] = {
        _IMPLICIT + "tag:yaml.org,2002:map": _mapping,
        _IMPLICIT + "tag:yaml.org,2002:seq": lambda loader, node: [loader.construct_object(n) for n in node.value],
        _IMPLICIT + "tag:yaml.org,2002:str": lambda loader, node: str(node.value),
        _IMPLICIT + "tag:yaml.org,2002:int": _int,
        _IMPLICIT + "tag:yaml.org,2002:float": _float,
        _IMPLICIT + "tag:yaml.org,2002:bool": lambda loader, node: str(node.value).lower() == "true",
        _IMPLICIT + "tag:yaml.org,2002:null": lambda loader, node: None,
        None: _not_plain,  # timestamps, merge keys, `=`, and every explicit tag
    }

    def __init__(self, stream: str) -> None:
        CParser.__init__(self, stream)
        libyaml.constructor.BaseConstructor.__init__(self)
        libyaml.resolver.BaseResolver.__init__(self)

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        # libyaml asks only about nodes without a tag: an explicit one (`!!str 12`) keeps its own, which has no
        # constructor here (ruamel.yaml keeps such a value tagged).
        return _IMPLICIT + super().resolve(kind, value, implicit)

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        if node in self.constructed_objects:
            raise NotPlain("an alias")
        return super().construct_object(node, deep=True)


for _versions, _tag, _regexp, _first in implicit_resolvers:
    if (1, 2) in _versions:
        _PlainLoader.add_implicit_resolver(_tag, _regexp, _first)
