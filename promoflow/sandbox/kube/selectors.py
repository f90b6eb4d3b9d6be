"""Label and field selectors of lists and watches (`labelSelector`, `fieldSelector`), and LabelSelector objects."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from promoflow.sandbox.kube.errors import bad_request

Obj = dict[str, Any]
FIELD_LABELS = {"metadata.name", "metadata.namespace"}


def _split_terms(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    return [t.strip() for t in [*terms, current] if t.strip()]


@dataclass(frozen=True)
class Selector:
    labels: tuple[Callable[[dict[str, str]], bool], ...] = ()
    fields: tuple[tuple[str, str, bool], ...] = ()  # (metadata field, value, equal)

    @classmethod
    def parse(cls, label_selector: str | None, field_selector: str | None) -> Selector:
        labels = tuple(_label_requirement(term) for term in _split_terms(label_selector or ""))
        fields = []
        for term in _split_terms(field_selector or ""):
            match = re.fullmatch(r"([\w.]+)\s*(==|=|!=)\s*(.*)", term)
            if not match:
                raise bad_request(f"invalid field selector: {term!r}")
            name, op, value = match.groups()
            if name not in FIELD_LABELS:
                raise bad_request(f'"{name}" is not a known field selector: only "metadata.name", "metadata.namespace"')
            fields.append((name.split(".")[1], value, op != "!="))
        return cls(labels, tuple(fields))

    @property
    def empty(self) -> bool:
        return not self.labels and not self.fields

    def matches(self, obj: Obj) -> bool:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        return all(f(labels) for f in self.labels) and all(
            (meta.get(name, "") == value) == equal for name, value, equal in self.fields
        )


def _label_requirement(term: str) -> Callable[[dict[str, str]], bool]:
    key = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
    if match := re.fullmatch(rf"({key})\s+(in|notin)\s+\(([^)]*)\)", term):
        name, op, raw = match.groups()
        values = {v.strip() for v in raw.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(name) in values
        return lambda labels: labels.get(name) not in values
    if match := re.fullmatch(rf"({key})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)", term):
        name, op, value = match.groups()
        if op == "!=":
            return lambda labels: labels.get(name) != value
        return lambda labels: labels.get(name) == value
    if match := re.fullmatch(rf"(!?)\s*({key})", term):
        negate, name = match.groups()
        return lambda labels: (name in labels) != bool(negate)
    raise bad_request(f"unable to parse requirement: {term!r}")


def label_selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    """Whether a LabelSelector object (matchLabels, matchExpressions) selects `labels`."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, op, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True
