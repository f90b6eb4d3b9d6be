"""Semantic Versioning 2.0.0 versions and npm (node-semver) ranges.

Versions follow https://semver.org/spec/v2.0.0.html: `MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]`,
ordered by precedence (prerelease identifiers compared one by one, numeric ones numerically and
below alphanumeric ones; build metadata ignored). Tags may carry a `v`/`V` prefix.

Ranges follow node-semver (https://github.com/npm/node-semver#ranges), strict (non-loose) mode:
comparators `<  <=  >  >=  =`, space-separated AND sets, `||`, hyphen ranges `1.2 - 2.3.4`,
x-ranges `1.x  1.2.*  *  ""`, partial versions, `~`/`~>` and `^`. The range text is desugared the
way node-semver does it (the pipeline of `classes/range.js` is ported step by step, including the
`-0` lower bounds it adds when prereleases are included), so `Range.desugared()` gives the same
canonical string as node's `new Range(text).range`.

Prereleases, as in node: with `include_prerelease=False` a version like `1.3.0-rc.1` only
satisfies a comparator set if some comparator of that set names the same `MAJOR.MINOR.PATCH`
with a prerelease (`>=1.3.0-rc.0` lets `1.3.0-rc.1` in, but not `1.4.0-rc.1`).

Stdlib only; no Prefect imports.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["Range", "Version", "parse_range", "parse_version", "select"]

# Sort key of a version: (major, minor, patch, 1 for a release / 0 for a prerelease, identifiers).
# Each prerelease identifier becomes (0, number, "") or (1, 0, text), so plain tuple comparison is
# semver precedence: numeric < alphanumeric, and a shorter identifier list sorts first.
_Ident = tuple[int, int, str]
_Key = tuple[int, int, int, int, tuple[_Ident, ...]]

_IDENT_CHARS = re.compile(r"[0-9A-Za-z-]+", re.ASCII)
_PRE_IDENT = re.compile(r"0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*", re.ASCII)

# Linear-time tag matcher (no nested ambiguous quantifiers): identifiers are validated afterwards.
_TAG = re.compile(
    r"([vV]?)(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?",
    re.ASCII,
)


def _ident_key(ident: str) -> _Ident:
    if ident.isdigit():
        return (0, int(ident), "")
    return (1, 0, ident)


def _prerelease_key(text: str) -> tuple[_Ident, ...] | None:
    """Key of a dot-separated prerelease, or None if a numeric identifier has a leading zero."""
    key = []
    for ident in text.split("."):
        if ident.isdigit():
            if len(ident) > 1 and ident[0] == "0":
                return None
            key.append((0, int(ident), ""))
        else:
            key.append((1, 0, ident))
    return tuple(key)


@dataclass(frozen=True, order=True)
class Version:
    """A semver 2.0.0 version.

    Ordering, equality and hashing follow semver precedence, so build metadata is ignored:
    `Version.parse("1.0.0+a") == Version.parse("1.0.0+b")`. Use `str(v)` to tell them apart.
    """

    major: int = field(compare=False)
    minor: int = field(compare=False)
    patch: int = field(compare=False)
    prerelease: tuple[str, ...] = field(default=(), compare=False)
    build: tuple[str, ...] = field(default=(), compare=False)
    _key: _Key = field(init=False, repr=False, compare=True)

    def __post_init__(self) -> None:
        for name in ("major", "minor", "patch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        for name in ("prerelease", "build"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, tuple | list):
                raise TypeError(f"{name} must be a tuple of identifiers, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        for ident in self.prerelease:
            if not isinstance(ident, str) or not _PRE_IDENT.fullmatch(ident):
                raise ValueError(f"invalid prerelease identifier {ident!r}")
        for ident in self.build:
            if not isinstance(ident, str) or not _IDENT_CHARS.fullmatch(ident):
                raise ValueError(f"invalid build identifier {ident!r}")
        key: _Key = (
            self.major,
            self.minor,
            self.patch,
            0 if self.prerelease else 1,
            tuple(_ident_key(i) for i in self.prerelease),
        )
        object.__setattr__(self, "_key", key)

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse `[v|V]MAJOR.MINOR.PATCH[-PRE][+BUILD]`; raise ValueError otherwise."""
        version = parse_version(text)
        if version is None:
            raise ValueError(f"not a semver 2.0.0 version: {text!r}")
        return version

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    @property
    def core(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text


def parse_version(tag: str) -> Version | None:
    """The version a tag names (`1.2.3`, `v1.2.3-rc.1+build.5`), or None if it is not semver.

    Partial versions (`1.2`), leading zeros (`01.2.3`, `1.2.3-01`) and surrounding text are
    rejected.
    """
    match = _TAG.fullmatch(tag)
    if match is None:
        return None
    _, major, minor, patch, pre, build = match.groups()
    if pre is not None and _prerelease_key(pre) is None:
        return None
    return Version(
        int(major),
        int(minor),
        int(patch),
        tuple(pre.split(".")) if pre else (),
        tuple(build.split(".")) if build else (),
    )


# --------------------------------------------------------------------------------------------
# node-semver's regular expressions (internal/re.js, strict flavour), with `$` as `\Z`.

_NUMERIC = r"0|[1-9]\d*"
_NUMERIC_LOOSE = r"\d+"
_NONNUMERIC = r"\d*[a-zA-Z-][a-zA-Z0-9-]*"
_MAINVERSION = rf"({_NUMERIC})\.({_NUMERIC})\.({_NUMERIC})"
_MAINVERSION_LOOSE = rf"({_NUMERIC_LOOSE})\.({_NUMERIC_LOOSE})\.({_NUMERIC_LOOSE})"
_PRERELEASE_ID = rf"(?:{_NONNUMERIC}|{_NUMERIC})"
_PRERELEASE_ID_LOOSE = rf"(?:{_NONNUMERIC}|{_NUMERIC_LOOSE})"
_PRERELEASE = rf"(?:-({_PRERELEASE_ID}(?:\.{_PRERELEASE_ID})*))"
_PRERELEASE_LOOSE = rf"(?:-?({_PRERELEASE_ID_LOOSE}(?:\.{_PRERELEASE_ID_LOOSE})*))"
_BUILD = r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))"
_FULLPLAIN = rf"v?{_MAINVERSION}{_PRERELEASE}?{_BUILD}?"
_LOOSEPLAIN = rf"[v=\s]*{_MAINVERSION_LOOSE}{_PRERELEASE_LOOSE}?{_BUILD}?"
_GTLT = r"((?:<|>)?=?)"
_XRANGE_ID = rf"{_NUMERIC}|x|X|\*"
_XRANGEPLAIN = rf"[v=\s]*({_XRANGE_ID})(?:\.({_XRANGE_ID})(?:\.({_XRANGE_ID})(?:{_PRERELEASE})?{_BUILD}?)?)?"


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.ASCII)


_RE_BUILD = _re(_BUILD)
_RE_XRANGE = _re(rf"^{_GTLT}\s*{_XRANGEPLAIN}\Z")
_RE_TILDE = _re(rf"^(?:~>?){_XRANGEPLAIN}\Z")
_RE_CARET = _re(rf"^(?:\^){_XRANGEPLAIN}\Z")
_RE_TILDE_TRIM = _re(r"(\s*)(?:~>?)\s+")
_RE_CARET_TRIM = _re(r"(\s*)(?:\^)\s+")
_RE_COMPARATOR_TRIM = _re(rf"(\s*){_GTLT}\s*({_LOOSEPLAIN}|{_XRANGEPLAIN})")
_RE_COMPARATOR = _re(rf"^{_GTLT}\s*({_FULLPLAIN})\Z|^\Z")
_RE_HYPHEN = _re(rf"^\s*({_XRANGEPLAIN})\s+-\s+({_XRANGEPLAIN})\s*\Z")
_RE_STAR = _re(r"(<|>)?=?\s*\*")
_RE_GTE0 = _re(r"^\s*>=\s*0\.0\.0\s*\Z")
_RE_GTE0_PRE = _re(r"^\s*>=\s*0\.0\.0-0\s*\Z")
_RE_SPACES = _re(r"\s+")
_WHITESPACE = " \t\n\r\f\v"
_MAX_RANGE_LENGTH = 4096


def _is_x(ident: str | None) -> bool:
    return not ident or ident.lower() == "x" or ident == "*"


def _split_ws(text: str) -> list[str]:
    return _RE_SPACES.split(text)


def _replace_caret(comp: str, include_prerelease: bool) -> str:
    # ^1.2.3 := >=1.2.3 <2.0.0-0, ^0.2.3 := >=0.2.3 <0.3.0-0, ^0.0.3 := >=0.0.3 <0.0.4-0, ^1.x := 1.x
    match = _RE_CARET.match(comp)
    if match is None:
        return comp
    major, minor, patch, pre = match.group(1, 2, 3, 4)
    z = "-0" if include_prerelease else ""
    if _is_x(major):
        return ""
    if _is_x(minor):
        return f">={major}.0.0{z} <{int(major) + 1}.0.0-0"
    if _is_x(patch):
        if major == "0":
            return f">={major}.{minor}.0{z} <{major}.{int(minor) + 1}.0-0"
        return f">={major}.{minor}.0{z} <{int(major) + 1}.0.0-0"
    low = f">={major}.{minor}.{patch}-{pre}" if pre else f">={major}.{minor}.{patch}"
    if major == "0":
        if minor == "0":
            return f"{low} <{major}.{minor}.{int(patch) + 1}-0"
        return f"{low} <{major}.{int(minor) + 1}.0-0"
    return f"{low} <{int(major) + 1}.0.0-0"


def _replace_tilde(comp: str, include_prerelease: bool) -> str:
    # ~1.2.3 := >=1.2.3 <1.3.0-0, ~1.2 := >=1.2.0 <1.3.0-0, ~1 := >=1.0.0 <2.0.0-0
    match = _RE_TILDE.match(comp)
    if match is None:
        return comp
    major, minor, patch, pre = match.group(1, 2, 3, 4)
    z = "-0" if include_prerelease else ""
    if _is_x(major):
        return ""
    if _is_x(minor):
        return f">={major}.0.0{z} <{int(major) + 1}.0.0-0"
    if _is_x(patch):
        return f">={major}.{minor}.0{z} <{major}.{int(minor) + 1}.0-0"
    if pre:
        return f">={major}.{minor}.{patch}-{pre} <{major}.{int(minor) + 1}.0-0"
    return f">={major}.{minor}.{patch} <{major}.{int(minor) + 1}.0-0"


def _replace_xrange(comp: str, include_prerelease: bool) -> str:
    comp = comp.strip(_WHITESPACE)
    match = _RE_XRANGE.match(comp)
    if match is None:
        return comp
    gtlt, major, minor, patch = match.group(1, 2, 3, 4)
    # A wildcard followed by a concrete part (`x.1`, `1.x.3`) is not a range: leave it to fail.
    if (_is_x(major) and not _is_x(minor)) or (_is_x(minor) and patch and not _is_x(patch)):
        return comp
    x_major = _is_x(major)
    x_minor = x_major or _is_x(minor)
    any_x = x_minor or _is_x(patch)
    if gtlt == "=" and any_x:
        gtlt = ""
    pre = "-0" if include_prerelease else ""
    if x_major:
        return "<0.0.0-0" if gtlt in (">", "<") else "*"
    if gtlt and any_x:
        major_n = int(major)
        minor_n = 0 if x_minor else int(minor)
        if gtlt == ">":
            # >1 := >=2.0.0, >1.2 := >=1.3.0
            gtlt = ">="
            if x_minor:
                major_n += 1
            else:
                minor_n += 1
        elif gtlt == "<=":
            # <=1.2 := <1.3.0-0, <=1 := <2.0.0-0
            gtlt = "<"
            if x_minor:
                major_n += 1
            else:
                minor_n += 1
        if gtlt == "<":
            pre = "-0"
        return f"{gtlt}{major_n}.{minor_n}.0{pre}"
    if x_minor:
        return f">={major}.0.0{pre} <{int(major) + 1}.0.0-0"
    if any_x:
        return f">={major}.{minor}.0{pre} <{major}.{int(minor) + 1}.0-0"
    return comp


def _hyphen_replacer(include_prerelease: bool) -> Callable[[re.Match[str]], str]:
    z = "-0" if include_prerelease else ""

    def replace(match: re.Match[str]) -> str:
        low, f_major, f_minor, f_patch, f_pre = match.group(1, 2, 3, 4, 5)
        high, t_major, t_minor, t_patch, t_pre = match.group(7, 8, 9, 10, 11)
        if _is_x(f_major):
            low = ""
        elif _is_x(f_minor):
            low = f">={f_major}.0.0{z}"
        elif _is_x(f_patch):
            low = f">={f_major}.{f_minor}.0{z}"
        elif f_pre:
            low = f">={low}"
        else:
            low = f">={low}{z}"
        if _is_x(t_major):
            high = ""
        elif _is_x(t_minor):
            high = f"<{int(t_major) + 1}.0.0-0"
        elif _is_x(t_patch):
            high = f"<{t_major}.{int(t_minor) + 1}.0-0"
        elif t_pre:
            high = f"<={t_major}.{t_minor}.{t_patch}-{t_pre}"
        elif include_prerelease:
            high = f"<{t_major}.{t_minor}.{int(t_patch) + 1}-0"
        else:
            high = f"<={high}"
        return f"{low} {high}".strip(_WHITESPACE)

    return replace


def _desugar_comparator(comp: str, include_prerelease: bool) -> str:
    comp = _RE_BUILD.sub("", comp, count=1)
    comp = " ".join(_replace_caret(c, include_prerelease) for c in _split_ws(comp.strip(_WHITESPACE)))
    comp = " ".join(_replace_tilde(c, include_prerelease) for c in _split_ws(comp.strip(_WHITESPACE)))
    comp = " ".join(_replace_xrange(c, include_prerelease) for c in _split_ws(comp))
    return _RE_STAR.sub("", comp.strip(_WHITESPACE), count=1)


class _Comparator(NamedTuple):
    operator: str  # "", "<", "<=", ">", ">=" ("" is equality, or any version when version is None)
    version: Version | None  # None: matches any version

    @property
    def value(self) -> str:
        if self.version is None:
            return ""
        # node prints comparators without build metadata
        core = Version(*self.version.core, self.version.prerelease)
        return f"{self.operator}{core}"


_ANY = _Comparator("", None)


def _comparator(text: str, range_text: str) -> _Comparator:
    text = " ".join(_split_ws(text.strip(_WHITESPACE)))
    match = _RE_COMPARATOR.match(text)
    if match is None:
        raise ValueError(f"invalid semver range {range_text!r}: cannot parse comparator {text!r}")
    if not match.group(2):
        return _ANY
    op = match.group(1) or ""
    major, minor, patch, pre, build = match.group(3, 4, 5, 6, 7)
    version = Version(
        int(major),
        int(minor),
        int(patch),
        tuple(pre.split(".")) if pre else (),
        tuple(build.split(".")) if build else (),
    )
    return _Comparator("" if op == "=" else op, version)


def _parse_set(part: str, include_prerelease: bool, range_text: str) -> tuple[_Comparator, ...]:
    part = _RE_BUILD.sub("", part)
    part = _RE_HYPHEN.sub(_hyphen_replacer(include_prerelease), part, count=1)
    part = _RE_COMPARATOR_TRIM.sub(lambda m: m.group(1) + m.group(2) + m.group(3), part)
    part = _RE_TILDE_TRIM.sub(lambda m: m.group(1) + "~", part)
    part = _RE_CARET_TRIM.sub(lambda m: m.group(1) + "^", part)
    desugared = " ".join(_desugar_comparator(c, include_prerelease) for c in part.split(" "))
    gte0 = _RE_GTE0_PRE if include_prerelease else _RE_GTE0
    comparators: dict[str, _Comparator] = {}
    for text in _split_ws(desugared):
        comparator = _comparator(gte0.sub("", text.strip(_WHITESPACE), count=1), range_text)
        if comparator.value == "<0.0.0-0":  # the null set: nothing can match
            return (comparator,)
        comparators.setdefault(comparator.value, comparator)
    if len(comparators) > 1:
        comparators.pop("", None)
    return tuple(comparators.values())


def _parse_sets(text: str, include_prerelease: bool) -> tuple[tuple[_Comparator, ...], ...]:
    raw = " ".join(_split_ws(text.strip(_WHITESPACE)))
    sets = [_parse_set(part.strip(_WHITESPACE), include_prerelease, text) for part in raw.split("||")]
    if len(sets) > 1:
        first = sets[0]
        sets = [s for s in sets if s[0].value != "<0.0.0-0"] or [first]
        if len(sets) > 1:
            for comparators in sets:
                if len(comparators) == 1 and comparators[0].version is None:
                    sets = [comparators]
                    break
    return tuple(sets)


_OPS: dict[str, Callable[[_Key, _Key], bool]] = {
    "": operator.eq,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

# A compiled comparator set: (test, bound) pairs for every non-"any" comparator, and the
# MAJOR.MINOR.PATCH tuples that carry a prerelease (the ones that let prereleases in).
_Compiled = tuple[tuple[tuple[Callable[[_Key, _Key], bool], _Key], ...], frozenset[tuple[int, int, int]]]


def _compile(sets: tuple[tuple[_Comparator, ...], ...]) -> tuple[_Compiled, ...]:
    compiled = []
    for comparators in sets:
        tests = tuple((_OPS[c.operator], c.version._key) for c in comparators if c.version is not None)
        cores = frozenset(c.version.core for c in comparators if c.version is not None and c.version.prerelease)
        compiled.append((tests, cores))
    return tuple(compiled)


def _test(compiled: tuple[_Compiled, ...], key: _Key, include_prerelease: bool) -> bool:
    for tests, prerelease_cores in compiled:
        for test, bound in tests:
            if not test(key, bound):
                break
        else:
            if key[3] or include_prerelease or key[:3] in prerelease_cores:
                return True
    return False


@dataclass(frozen=True)
class Range:
    """A node-semver range. Build it with `parse_range`."""

    text: str
    _sets: tuple[tuple[_Comparator, ...], ...] = field(repr=False)
    _sets_prerelease: tuple[tuple[_Comparator, ...], ...] = field(repr=False)
    _compiled: tuple[_Compiled, ...] = field(init=False, repr=False, compare=False)
    _compiled_prerelease: tuple[_Compiled, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", _compile(self._sets))
        object.__setattr__(self, "_compiled_prerelease", _compile(self._sets_prerelease))

    def contains(self, version: Version | str, include_prerelease: bool = False) -> bool:
        """Whether the version satisfies the range (node's `satisfies`).

        A string is parsed with `parse_version`; one that is not semver never satisfies.
        """
        if isinstance(version, str):
            parsed = parse_version(version)
            if parsed is None:
                return False
            version = parsed
        return self._contains_key(version._key, include_prerelease)

    def _contains_key(self, key: _Key, include_prerelease: bool) -> bool:
        compiled = self._compiled_prerelease if include_prerelease else self._compiled
        return _test(compiled, key, include_prerelease)

    def __contains__(self, version: object) -> bool:
        return isinstance(version, Version | str) and self.contains(version)

    def desugared(self, include_prerelease: bool = False) -> str:
        """The comparator form node-semver prints (`new Range(text).range`), `*` for any version."""
        sets = self._sets_prerelease if include_prerelease else self._sets
        text = "||".join(" ".join(c.value for c in comparators).strip() for comparators in sets)
        return text.strip() or "*"

    def __str__(self) -> str:
        return self.desugared()


def parse_range(text: str) -> Range:
    """Parse a node-semver range; raise ValueError (naming the bad part) if it is not one."""
    if not isinstance(text, str):
        raise TypeError(f"a semver range must be a string, got {type(text).__name__}")
    if len(text) > _MAX_RANGE_LENGTH:  # the regexes are not linear on adversarial input
        raise ValueError(f"invalid semver range: longer than {_MAX_RANGE_LENGTH} characters")
    return Range(text, _parse_sets(text, False), _parse_sets(text, True))


def select(
    tags: Iterable[str], range_text: str | Range, include_prerelease: bool = False, lowest: bool = False
) -> str | None:
    """The tag naming the highest (`lowest`: the lowest) version that satisfies the range, or None.

    Tags that are not semver are skipped. Among tags naming equal versions (`1.2.0`, `v1.2.0`,
    `1.2.0+b7`) the one without a `v` prefix wins, then the lexicographically smallest, so the
    result does not depend on the order of `tags`. Raises ValueError for an invalid range.
    """
    wanted = range_text if isinstance(range_text, Range) else parse_range(range_text)
    compiled = wanted._compiled_prerelease if include_prerelease else wanted._compiled
    match_tag = _TAG.fullmatch
    best_tag: str | None = None
    best_key: _Key | None = None
    best_rank: tuple[bool, str] = (True, "")
    for tag in tags:
        match = match_tag(tag)
        if match is None:
            continue
        prefix, major, minor, patch, pre, _ = match.groups()
        if pre is None:
            key: _Key = (int(major), int(minor), int(patch), 1, ())
        else:
            pre_key = _prerelease_key(pre)
            if pre_key is None:
                continue
            key = (int(major), int(minor), int(patch), 0, pre_key)
        if best_key is not None:
            if (key > best_key) if lowest else (key < best_key):
                continue
            if key == best_key:  # same precedence: the range verdict is the same too
                rank = (bool(prefix), tag)
                if rank < best_rank:
                    best_tag, best_rank = tag, rank
                continue
        if _test(compiled, key, include_prerelease):
            best_tag, best_key, best_rank = tag, key, (bool(prefix), tag)
    return best_tag
