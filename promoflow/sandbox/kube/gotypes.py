"""How Go writes and reads the built-in kinds, where their OpenAPI schemas do not say.

Go always writes a struct-typed field that is not a pointer (`spec`, `template`, `resources: {}`), and a
field without `omitempty` even at its zero value (`numberMisscheduled: 0`, `rules: null`); kubectl sends
built-in kinds as protobuf, whose field numbers no schema carries. gotypes.json holds these facts, read
from the json and protobuf tags of the Go types by tools/kube/gotypes.py, by OpenAPI definition name:
- `struct_fields`: the struct-typed fields Go always writes;
- `zero_fields`: the fields it writes even at their zero value, with that value (null for pointers, slices, maps);
- `wire`: each field's [number, json name, kind, target, repeated, pointer, omitempty], kind one of string,
  bool, int, bytes, message (target: its definition), map (then value kind and target), or inline (an
  embedded struct: a nested message on the wire, its fields inlined in JSON).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any


@functools.cache
def _facts() -> dict[str, Any]:
    found: dict[str, Any] = json.loads((Path(__file__).parent / "gotypes.json").read_text())
    return found


def struct_fields(definition: str) -> list[str]:
    return list(_facts()["struct_fields"].get(definition, ()))


def zero_fields(definition: str) -> dict[str, Any]:
    return dict(_facts()["zero_fields"].get(definition, {}))


def wire(definition: str) -> list[list[Any]]:
    return list(_facts()["wire"].get(definition, ()))
