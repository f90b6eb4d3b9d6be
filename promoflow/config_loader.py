"""Load promotions.yaml with errors that say FILE:LINE:COL, where and what.

A valid file is read by `promoflow.yaml12` (libyaml, reading YAML 1.2 exactly as ruamel.yaml does) and
validated: a few hundredths of a second for 200 apps, paid by every flow run's process. Anything else (a
problem, or YAML outside the plain subset: aliases, merge keys, tags, directives, tabs, duplicate keys) takes
the located path: `load()` parses again with ruamel.yaml's round-trip loader, which remembers the line and
column of every mapping key, value and sequence item, validates the data with the pydantic models of
`promoflow.config`, and turns every validation error into a
`Problem` located at the most precise node:

* wrong type / bad value   -> the value
* unknown key              -> the key (with "did you mean" from the model's fields)
* missing key              -> the mapping that lacks it (its key, or its `- ` item)
* duplicate names          -> the duplicate's `name`, telling where the first one is
* unknown environment      -> the entry in `apps[].environments`

Bad input of any kind (no file, not UTF-8, YAML syntax, tabs, duplicate keys, empty
file, a top level that is not a mapping) ends in `ConfigError`, never a traceback.
Hostile input is bounded: a file that is not a regular file or is larger than
MAX_FILE_BYTES is not read, a scalar Python cannot hold (a number of thousands of
digits) is located, and so is the alias that expands the file too far (an alias bomb).
"""

from __future__ import annotations

import datetime
import difflib
import json
import os
import re
import stat
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.constructor import ConstructorError, DuplicateKeyError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from promoflow import yaml12
from promoflow.config import NAME_PATTERN, NameIssue, NameIssues, Promotions, format_loc, name_issues
from promoflow.errors import TerminalError

__all__ = ["MAX_FILE_BYTES", "ConfigError", "Problem", "load"]

MAX_FILE_BYTES = 256 * 1024  # far more than any real promotions.yaml; parsing this much takes seconds
# What aliases (*name) may add to the file, in values and characters of text. An alias "bomb" (each anchor
# repeating the one before) would otherwise expand a few hundred bytes into billions of values.
MAX_ALIASED_VALUES = 100_000
MAX_ALIASED_TEXT = 4 * MAX_FILE_BYTES


Loc = tuple[Any, ...]
Pos = tuple[int, int]  # 1-based line, column


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the file, at a 1-based line and column."""

    file: str
    line: int
    column: int
    path: str  # e.g. `environments[1].approval.required`; "" for the file as a whole
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


class ConfigError(TerminalError):
    """promotions.yaml cannot be used; `problems` lists everything wrong with it."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


def load(path: str | Path) -> Promotions:
    """Read, parse and validate promotions.yaml; raise ConfigError listing every problem."""
    return _Loader(path).run()


# --------------------------------------------------------------------------- loading


@dataclass
class _Node:
    key: Pos  # the key of a mapping entry, the `- ` item of a sequence, or the node itself (top level)
    value: Pos  # where the value starts


class _Stop(Exception):
    """Nothing more can be checked: the problems found so far are all there is."""


class _Loader:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.file = str(path)
        self.problems: list[Problem] = []
        self.nodes: dict[Loc, _Node] = {}

    def run(self) -> Promotions:
        try:
            text = self._read()
            if not self.problems and (fast := _fast(text)) is not None:
                return fast
            raw = self._parse(text)
            data = self._plain_top(raw)
            result = self._validate(data)
        except _Stop:
            result = None
        except Exception as exc:  # a bug or an input nobody thought of: still no traceback
            self._add((1, 1), (), f"cannot load this file: {type(exc).__name__}: {exc}")
            result = None
        if self.problems or result is None:
            raise ConfigError(self._sorted())
        return result

    def _add(self, pos: Pos, loc: Loc, message: str) -> None:
        self.problems.append(Problem(self.file, pos[0], pos[1], format_loc(loc), message))

    def _sorted(self) -> list[Problem]:
        unique = list(dict.fromkeys(self.problems))
        return sorted(unique, key=lambda p: (p.line, p.column))

    # ------------------------------------------------------------------ file and text

    def _read(self) -> str:
        data = self._bytes()
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        offset = 0
        while True:  # report every byte sequence that is not UTF-8, then go on with U+FFFD
            try:
                data[offset:].decode("utf-8")
                break
            except UnicodeDecodeError as exc:
                start = offset + exc.start
                bad = data[start : offset + exc.end]
                line_start = data.rfind(b"\n", 0, start) + 1
                column = len(data[line_start:start].decode("utf-8", errors="replace")) + 1
                self._add(
                    (data.count(b"\n", 0, start) + 1, column),
                    (),
                    f"not UTF-8 text: cannot decode byte(s) {bad.hex(' ')}; save the file as UTF-8",
                )
                offset += exc.end
        return data.decode("utf-8", errors="replace")

    def _bytes(self) -> bytes:
        """The file's bytes; a pipe, a device or an oversized file is refused before anything is read."""
        try:
            # Non-blocking: opening a FIFO nobody writes to would otherwise wait forever.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            where = "" if self.path.is_absolute() else f" (looked for {self.path.absolute()})"
            self._add((1, 1), (), f"file does not exist{where}")
            raise _Stop from None
        except OSError as exc:
            self._add((1, 1), (), f"cannot read the file: {exc.strerror or exc}")
            raise _Stop from None
        with os.fdopen(fd, "rb") as file:
            mode, size = os.fstat(fd).st_mode, os.fstat(fd).st_size
            if stat.S_ISDIR(mode):
                self._add((1, 1), (), "is a directory, not a file")
                raise _Stop
            if not stat.S_ISREG(mode):
                self._add((1, 1), (), f"not a regular file ({_file_kind(mode)}): give the path of promotions.yaml")
                raise _Stop
            if size > MAX_FILE_BYTES:
                self._add((1, 1), (), f"the file is larger than {MAX_FILE_BYTES // 1024} KiB ({size} bytes)")
                raise _Stop
            try:
                data = file.read(MAX_FILE_BYTES + 1)  # it may have grown since
            except OSError as exc:
                self._add((1, 1), (), f"cannot read the file: {exc.strerror or exc}")
                raise _Stop from None
        if len(data) > MAX_FILE_BYTES:
            self._add((1, 1), (), f"the file is larger than {MAX_FILE_BYTES // 1024} KiB")
            raise _Stop
        return data

    # ------------------------------------------------------------------ YAML

    def _parse(self, text: str) -> object:
        try:
            return _yaml(allow_duplicate_keys=False).load(text)
        except DuplicateKeyError:
            self._duplicate_keys(text)  # every duplicate, with where the first one is
            try:
                return _yaml(allow_duplicate_keys=True).load(text)  # the last one wins; go on
            except YAMLError as exc:
                self._yaml_error(exc, text)
        except YAMLError as exc:
            self._yaml_error(exc, text)
        except RecursionError:
            self._add((1, 1), (), "the YAML is nested too deeply to read")
        raise _Stop

    def _yaml_error(self, exc: YAMLError, text: str) -> None:
        if isinstance(exc, _Unreadable) and exc.problem_mark is not None:
            self._add((exc.problem_mark.line + 1, exc.problem_mark.column + 1), (), str(exc.problem))
            return
        if isinstance(exc, ReaderError):
            before = text[: exc.position]
            pos = (before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1)
            char = exc.character if isinstance(exc.character, str) else chr(exc.character)
            self._add(pos, (), f"character U+{ord(char):04X} is not allowed in YAML: {exc.reason}")
            return
        if not isinstance(exc, MarkedYAMLError) or exc.problem_mark is None:
            self._add((1, 1), (), f"invalid YAML: {exc}")
            return
        mark = exc.problem_mark
        pos = (mark.line + 1, mark.column + 1)
        problem = str(exc.problem or "").strip()
        context = str(exc.context or "").strip()
        opened = exc.context_mark
        opened_at = f"line {opened.line + 1}, column {opened.column + 1}" if opened is not None else ""
        lines = text.split("\n")
        at_tab = mark.line < len(lines) and lines[mark.line][mark.column : mark.column + 1] == "\t"
        if at_tab or "'\\t'" in problem:
            message = "tab character: YAML does not allow tabs for indentation or here; use spaces"
        elif "mapping values are not allowed" in problem:
            message = (
                "invalid YAML: unexpected ':' (put the value in quotes if it contains ': ', "
                "or check the indentation of this line)"
            )
        elif "expected <block end>" in problem:
            block = "mapping" if "mapping" in context else "list" if "collection" in context else "block"
            message = (
                "invalid YAML: bad indentation: this line does not line up with the lines above it "
                f"(the enclosing {block} starts at {opened_at or 'an earlier line'})"
            )
        elif "while scanning a quoted scalar" in context:
            message = f"invalid YAML: the quoted string opened at {opened_at} is never closed"
        elif "flow sequence" in context or "flow mapping" in context:
            bracket = "[" if "sequence" in context else "{"
            message = f"invalid YAML: the '{bracket}' opened at {opened_at} is not closed ({problem})"
        elif "another document" in problem:
            message = "invalid YAML: more than one document ('---'); the file must hold exactly one"
        elif "undefined alias" in problem:
            message = f"invalid YAML: {problem} (an alias *name needs an anchor &name before it)"
        else:
            message = f"invalid YAML: {problem}" + (f" ({context} at {opened_at})" if context else "")
        self._add(pos, (), message)

    def _duplicate_keys(self, text: str) -> None:
        try:
            root = _yaml(allow_duplicate_keys=True).compose(text)
        except YAMLError as exc:
            self._yaml_error(exc, text)
            raise _Stop from None
        seen_nodes: set[int] = set()

        def walk(node: Node | None, loc: Loc) -> None:
            if node is None or id(node) in seen_nodes:
                return
            seen_nodes.add(id(node))
            if isinstance(node, SequenceNode):
                for index, item in enumerate(node.value):
                    walk(item, (*loc, index))
            elif isinstance(node, MappingNode):
                first: dict[tuple[str, str], int] = {}
                for key, value in node.value:
                    if isinstance(key, ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                        ident = (str(key.tag), str(key.value))
                        line = key.start_mark.line + 1
                        if ident in first:
                            self._add(
                                (line, key.start_mark.column + 1),
                                (*loc, key.value),
                                f"duplicate key {key.value!r} (first defined at line {first[ident]})",
                            )
                        else:
                            first[ident] = line
                    walk(value, (*loc, key.value if isinstance(key, ScalarNode) else "?"))

        walk(root, ())

    # ------------------------------------------------------------------ plain data + positions

    def _plain_top(self, raw: object) -> dict[Any, Any]:
        if raw is None:
            self._add((1, 1), (), f"the file is empty; expected a mapping with the keys {_top_keys()}")
            raise _Stop
        pos = _own_pos(raw)
        self.nodes[()] = _Node(pos, pos)
        if not isinstance(raw, dict):
            self._add(
                pos,
                (),
                f"the top level must be a mapping with the keys {_top_keys()}, got {_describe(_plain(raw))}",
            )
            raise _Stop
        data = self._plain(raw, (), set())
        assert isinstance(data, dict)
        return data

    def _plain(self, node: object, loc: Loc, active: set[int]) -> object:
        """Plain dict/list/str/int/... for pydantic; records positions in self.nodes."""
        if isinstance(node, dict | list):
            if id(node) in active:
                self._add(self.nodes[loc].value, loc, "this alias refers to itself (a recursive YAML anchor)")
                return None
            active = active | {id(node)}
        if isinstance(node, dict):
            result: dict[Any, Any] = {}
            start = _own_pos(node, default=self.nodes[loc].value)
            for key, value in node.items():
                plain_key = _plain_key(key)
                key_pos = _lc(node, "key", key) or start
                value_pos = _lc(node, "value", key) or key_pos
                if value is None and value_pos[0] != key_pos[0]:
                    value_pos = key_pos  # `key:` with nothing after it
                child = (*loc, plain_key)
                self.nodes[child] = _Node(key_pos, value_pos)
                result[plain_key] = self._plain(value, child, active)
            return result
        if isinstance(node, list):
            start = _own_pos(node, default=self.nodes[loc].value)
            items = []
            for index, value in enumerate(node):
                item_pos = _lc(node, "item", index) or start
                child = (*loc, index)
                self.nodes[child] = _Node(item_pos, item_pos)
                items.append(self._plain(value, child, active))
            return items
        return _plain(node)

    def _node(self, loc: Loc) -> tuple[_Node, Loc]:
        """The recorded node at loc, or at its nearest recorded ancestor."""
        while loc not in self.nodes:
            loc = loc[:-1]
        return self.nodes[loc], loc

    # ------------------------------------------------------------------ validation

    def _validate(self, data: dict[Any, Any]) -> Promotions | None:
        try:
            return Promotions.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
        # Names are checked on the raw data: pydantic skips the models' own checks as
        # soon as any field is wrong, and the raw check reports them anyway.
        issues = name_issues(data)
        for issue in issues:
            self._name_issue(issue)
        known = {(issue.loc, issue.message) for issue in issues}
        for error in errors:
            ctx = error.get("ctx") or {}
            if isinstance(ctx.get("error"), NameIssues):
                for issue in ctx["error"].issues:  # the same checks, should already be known
                    issue = _prefixed(issue, tuple(error["loc"]))
                    if (issue.loc, issue.message) not in known:
                        self._name_issue(issue)
            else:
                self._error(error)
        return None

    def _name_issue(self, issue: NameIssue) -> None:
        node, _ = self._node(issue.loc)
        message = issue.message
        if issue.first is not None:
            first, _ = self._node(issue.first)
            message += f" (first defined at line {first.value[0]})"
        self._add(node.value, issue.loc, message)

    def _error(self, error: Any) -> None:
        loc: Loc = tuple(error["loc"])
        kind: str = error["type"]
        if kind == "missing":
            parent, parent_loc = self._node(loc[:-1])
            self._add(parent.key, parent_loc, f"missing required key {loc[-1]!r}")
        elif kind in ("extra_forbidden", "invalid_key"):
            node, found = self._node(loc)
            self._add(node.key, found, _unknown_key(loc))
        else:
            node, found = self._node(loc)
            message = _message(kind, error)
            if found != loc and any(p.message == message for p in self.problems):
                return  # not in the file: a default copied from a value already reported (repository.branch)
            self._add(node.value, found, message)


# --------------------------------------------------------------------------- the fast path


def _fast(text: str) -> Promotions | None:
    """The valid config, parsed by libyaml; None when the file has a problem or anything unusual (the located
    path then reads it, and reports what is wrong)."""
    data = plain_data(text)
    if data is None:
        return None
    try:
        return Promotions.model_validate(data)
    except ValidationError:
        return None


def plain_data(text: str) -> dict[str, Any] | None:
    """The file's data as libyaml reads it with YAML 1.2's scalars (exactly what the located path reads); None
    when it is not a mapping of plain YAML."""
    try:
        data = yaml12.read(text)
    except yaml12.NotPlain:
        return None
    return data if isinstance(data, dict) else None


# --------------------------------------------------------------------------- helpers


class _Unreadable(ConstructorError):
    """A scalar that cannot become the value its tag says (a number of 5000 digits, the 13th month), or an alias
    that expands the file too far: its problem is the whole message."""


class _Composer(Composer):
    """Counts what each alias adds to the document, and refuses the alias that goes over the bounds."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.aliased = (0, 0)  # values, characters
        self.sizes: dict[int, tuple[int, int]] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        alias = self.parser.peek_event() if self.parser.check_event(AliasEvent) else None
        node = super().compose_node(parent, index)
        if alias is not None:
            values, text = _size(node, self.sizes)
            self.aliased = (self.aliased[0] + values, self.aliased[1] + text)
            if self.aliased[0] > MAX_ALIASED_VALUES or self.aliased[1] > MAX_ALIASED_TEXT:
                message = (
                    f"aliases (*name) expand this file by more than {MAX_ALIASED_VALUES} values or "
                    f"{MAX_ALIASED_TEXT // 1024} KiB of text, this one included: repeat less through aliases"
                )
                raise _Unreadable(None, None, message, alias.start_mark)
        return node


def _size(node: Node, sizes: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """Values and characters of text in `node` with its aliases expanded (each shared node measured once)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = (0, 0)  # an alias inside its own anchor (refused later) counts once
    if isinstance(node, ScalarNode):
        size = (1, len(str(node.value)))
    else:
        children = [n for pair in node.value for n in pair] if isinstance(node, MappingNode) else node.value
        measured = [_size(child, sizes) for child in children]
        size = (1 + sum(v for v, _ in measured), sum(t for _, t in measured))
    sizes[id(node)] = size
    return size


class _Constructor(RoundTripConstructor):
    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            if str(exc).startswith("Exceeds the limit") and isinstance(node, ScalarNode):
                digits = re.sub(r"^[-+]?(0[xXoObB])?|[^0-9a-fA-F]", "", str(node.value))
                message = f"this number is too large ({len(digits)} digits)"
            else:
                message = f"cannot read this value: {exc}"
            raise _Unreadable(None, None, message, node.start_mark) from None


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _yaml(*, allow_duplicate_keys: bool) -> YAML:
    yaml = YAML(typ="rt", pure=True)
    yaml.Composer = _Composer
    yaml.Constructor = _Constructor
    yaml.allow_duplicate_keys = allow_duplicate_keys
    return yaml


def _lc(node: Any, what: str, key: object) -> Pos | None:
    try:
        line, column = getattr(node.lc, what)(key)
    except (AttributeError, KeyError, IndexError, TypeError):
        return None
    if line is None or column is None:
        return None
    return int(line) + 1, int(column) + 1


def _own_pos(node: object, default: Pos = (1, 1)) -> Pos:
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None or lc.col is None:
        return default
    return int(lc.line) + 1, int(lc.col) + 1


def _plain(value: object) -> object:
    """ruamel's scalar subclasses (ScalarInt, ScalarFloat, ...) as the plain builtins."""
    if isinstance(value, ScalarBoolean):
        return bool(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return {_plain_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _plain_key(key: object) -> str:
    """Keys as text: `1:`, `null:` or `[a, b]:` are just unknown keys in this schema."""
    plain = _plain(key)
    if isinstance(plain, str):
        return plain
    try:
        return json.dumps(plain)
    except (TypeError, ValueError):
        return str(plain)


def _prefixed(issue: NameIssue, prefix: Loc) -> NameIssue:
    first = (*prefix, *issue.first) if issue.first is not None else None
    return NameIssue((*prefix, *issue.loc), issue.message, first)


def _top_keys() -> str:
    return ", ".join(Promotions.model_fields)


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` (None if it is not a model)."""
    current: Any = Promotions
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, str) and isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            if field is None:
                return None
            current = field.annotation
        elif isinstance(part, int) and get_origin(current) is list:
            current = get_args(current)[0]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _unknown_key(loc: Loc) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    allowed = list(model.model_fields) if model else []
    shown = repr(key)
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key {shown}; did you mean {close[0]!r}?"
    return f"unknown key {shown}" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")


def _describe(value: object) -> str:
    """A value as the message shows it: 'two', 3, true, a mapping, ..."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value.bit_length() > 200:
        return "a number of more than 60 digits"
    if isinstance(value, int | float):
        return repr(value) if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, datetime.datetime):
        return f"the timestamp {value.isoformat()}"
    if isinstance(value, datetime.date):
        return f"the date {value.isoformat()}"
    return f"a {type(value).__name__}"


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_PATTERNS = {
    NAME_PATTERN: "a lowercase name: letters a-z, digits and '-', starting and ending with a "
    "letter or digit, at most 63 characters",
}


def _message(kind: str, error: Any) -> str:
    value = error.get("input")
    got = _describe(value)
    ctx = error.get("ctx") or {}
    if kind in ("int_type", "int_parsing", "int_parsing_size"):
        return f"expected an integer, got {got}"
    if kind == "int_from_float":
        return f"expected a whole number, got {got}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {got}"
    if kind == "finite_number":
        return f"expected a finite number, got {got}"
    if kind == "timezone_aware":
        return f"expected a time with a zone (2026-12-20T00:00:00+01:00, or Z for UTC), got {got}"
    if kind.startswith("datetime_"):
        return f"expected a date and time with a zone, e.g. 2026-12-20T00:00:00+01:00, got {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {got}"
    if kind == "string_type":
        scalar = isinstance(value, int | float | bool | datetime.date)
        quote = "; put it in quotes to make it text" if scalar else ""
        return f"expected a string, got {got}{quote}"
    if kind == "list_type":
        hint = f"; write [{value}] or one '- ' item per line" if isinstance(value, str) else ""
        return f"expected a list, got {got}{hint}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping (indented key: value lines), got {got}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        many = " or " in expected or "," in expected
        return f"expected {'one of ' if many else ''}{expected}, got {got}"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        return f"expected {_PATTERNS.get(pattern, f'text matching {pattern}')}, got {got}"
    if kind == "string_too_short":
        minimum = ctx.get("min_length", 1)
        return "must not be empty" if minimum == 1 else f"must be at least {minimum} characters, got {got}"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters long"
    if kind == "too_short":
        minimum = ctx.get("min_length", 1)
        items = "at least one item" if minimum == 1 else f"at least {minimum} items"
        return f"expected {items}, got {'none' if not value else len(value)}"
    if kind == "too_long":
        return f"expected at most {ctx.get('max_length')} items, got {ctx.get('actual_length')}"
    bounds = {
        "greater_than_equal": ("must be at least", "ge"),
        "greater_than": ("must be greater than", "gt"),
        "less_than_equal": ("must be at most", "le"),
        "less_than": ("must be less than", "lt"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"{words} {_number(ctx.get(key))}, got {got}"
    if kind == "value_error":
        text = re.sub(r"^Value error, ", "", str(error.get("msg", "")))
        loc = tuple(error.get("loc") or ())
        if loc[-1:] == ("password",) or loc[-2:-1] == ("headers",):
            return text  # what was written there may be the secret itself: never echo it
        return f"{text}, got {got}"
    if kind == "recursion_loop":
        return "this value refers to itself (a recursive YAML anchor)"
    message = str(error.get("msg", kind))
    return f"{message[:1].lower()}{message[1:]}, got {got}"
