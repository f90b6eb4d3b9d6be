"""Tag policies: from the tags of an image repository to the one that is the newest release.

Filter (ignore globs, a regex matching anywhere in the tag), extract (named or numbered captures), order
(semver, numerical, alphabetical; ascending or descending), or track one mutable tag. Linear in the number of tags.

`order: created` orders by build time instead, which no tag says: the caller gives `built` (a tag -> its image's
`created`), asked only for the last `max_candidates` filtered tags of the listing (one config read each).
"""

from __future__ import annotations

import fnmatch
import heapq
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from promoflow.sources import semver

if TYPE_CHECKING:
    from promoflow.config import TagPolicy

_DOLLAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")

BuildTime = Callable[[str], datetime | None]  # a tag -> when its image was built (None: its config does not say)


class BuildTimesUnknown(ValueError):
    """`order: created` without a way to read build times (tags alone, as `images select` has them)."""


def check_template(regex: str, extract: str) -> None:
    """Raise ValueError when `extract` names a capture the regex does not have."""
    pattern = re.compile(regex)
    known = set(pattern.groupindex) | {str(i) for i in range(pattern.groups + 1)}
    for match in _DOLLAR.finditer(extract):
        name = match.group(1) or match.group(2)
        if name not in known:
            raise ValueError(f"`extract` names ${name}, which the regex does not capture")


def candidates(tags: Iterable[str], policy: TagPolicy) -> list[tuple[str, str]]:
    """(tag, value) for every tag the filters let through, value being what is ordered."""
    ignored = _globs(policy.ignore)
    kept = [t for t in tags if not ignored(t)]
    if policy.track is not None:
        return [(t, t) for t in kept if t == policy.track]
    if policy.regex is None:
        return [(t, t) for t in kept]
    match = re.compile(policy.regex).search  # anywhere in the tag, as Flux, Kargo and Argo CD match; ^...$ anchor
    value = _extractor(policy.extract)
    return [(tag, value(found)) for tag in kept if (found := match(tag))]


def _extractor(extract: str | None) -> Callable[[re.Match[str]], str]:
    if extract is None:
        return lambda found: found.string
    # Split the template once into literals and capture references (Match.expand re-parses every call).
    pieces: list[str | int] = []
    position = 0
    for ref in _DOLLAR.finditer(extract):
        pieces.append(extract[position : ref.start()])
        name = ref.group(1) or ref.group(2)
        pieces.append(int(name) if name.isdigit() else f"={name}")
        position = ref.end()
    pieces.append(extract[position:])
    literals = pieces[0::2]
    groups: list[int | str] = [p if isinstance(p, int) else p[1:] for p in pieces[1::2]]

    def value(found: re.Match[str]) -> str:
        captured = found.group(*groups) if len(groups) > 1 else (found.group(groups[0]),) if groups else ()
        out = [str(literals[0])]
        for text, literal in zip(captured, literals[1:], strict=True):
            out.append(text or "")
            out.append(str(literal))
        return "".join(out)

    return value


def select(tags: Iterable[str], policy: TagPolicy, built: BuildTime | None = None) -> str | None:
    """The tag the policy picks, or None. Ties go to the alphabetically smallest tag. `built`: for `order: created`."""
    pairs = candidates(tags, policy)
    if policy.order == "semver" and policy.track is None:
        # The fast path: semver.select compares without building Version objects.
        tags_of: dict[str, list[str]] = {}
        for tag, value in pairs:
            tags_of.setdefault(value, []).append(tag)
        lowest = policy.direction == "asc"
        chosen = semver.select(tags_of, semver.parse_range(policy.semver), policy.prerelease, lowest)
        return min(tags_of[chosen]) if chosen is not None else None
    best = _ranked(pairs, policy, 1, built)
    return best[0] if best else None


def ranked(tags: Iterable[str], policy: TagPolicy, limit: int, built: BuildTime | None = None) -> list[str]:
    """The `limit` best tags, best first: what `select` would pick, then the runners-up."""
    return _ranked(candidates(tags, policy), policy, limit, built)


def _ranked(pairs: list[tuple[str, str]], policy: TagPolicy, limit: int, built: BuildTime | None) -> list[str]:
    if policy.track is not None:
        return [tag for tag, _ in pairs][:limit]
    if policy.order == "created":
        return _by_build_time([tag for tag, _ in pairs[-policy.max_candidates :]], policy, limit, built)
    rank = _rank(policy)
    keyed = [(key, tag) for tag, value in pairs if (key := rank(value)) is not None]
    # Best first; among equal values the alphabetically smallest tag.
    if policy.direction == "desc":
        best = heapq.nsmallest(limit, keyed, key=lambda kt: (_Reverse(kt[0]), kt[1]))
    else:
        best = heapq.nsmallest(limit, keyed)
    return [tag for _, tag in best]


def _by_build_time(tags: list[str], policy: TagPolicy, limit: int, built: BuildTime | None) -> list[str]:
    """Newest build first (`asc`: oldest); same time: the alphabetically smallest tag; no time: last, by tag."""
    if built is None:
        raise BuildTimesUnknown("`order: created` needs each candidate's build time, which its tag does not say")
    times = {tag: built(tag) for tag in tags}
    desc = policy.direction == "desc"
    dated = sorted(
        ((time, tag) for tag, time in times.items() if time is not None),
        key=lambda item: (_Reverse(item[0]) if desc else item[0], item[1]),
    )
    undated = sorted(tag for tag, time in times.items() if time is None)
    return ([tag for _, tag in dated] + undated)[:limit]


def _rank(policy: TagPolicy) -> Callable[[str], Any]:
    if policy.order == "numerical":
        return _number
    if policy.order == "alphabetical":
        return str
    wanted = semver.parse_range(policy.semver)

    def version(value: str) -> semver.Version | None:
        parsed = semver.parse_version(value)
        return parsed if parsed is not None and wanted.contains(parsed, policy.prerelease) else None

    return version


class _Reverse:
    """Inverts the order of a key, so one ascending heap serves both directions."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key

    def __lt__(self, other: _Reverse) -> bool:
        return bool(other.key < self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reverse) and bool(self.key == other.key)

    __hash__ = None  # type: ignore[assignment]


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _globs(patterns: list[str]) -> Callable[[str], bool]:
    if not patterns:
        return lambda _tag: False
    combined = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))
    return lambda tag: combined.match(tag) is not None


def describe(policy: TagPolicy) -> str:
    """The policy in a few words, for messages."""
    if policy.track is not None:
        return f"track {policy.track}"
    parts = [f"regex {policy.regex!r}"] if policy.regex else []
    if policy.extract:
        parts.append(f"extract {policy.extract!r}")
    if policy.order == "semver":
        parts.append(f"semver {policy.semver!r}" + (" with prereleases" if policy.prerelease else ""))
    elif policy.order == "created":
        newest = "newest" if policy.direction == "desc" else "oldest"
        parts.append(f"{newest} build of the last {policy.max_candidates}")
    else:
        parts.append(f"{policy.order} {policy.direction}")
    if policy.ignore:
        parts.append(f"ignoring {', '.join(policy.ignore)}")
    return ", ".join(parts)
