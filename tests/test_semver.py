"""promoflow.sources.semver against node-semver's own fixtures and the semver.org spec.

Rows marked "node fixture" come from npm/node-semver test/fixtures/{range-include,range-exclude,
range-parse}.js (strict mode rows only; loose-mode rows are out of scope).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest

from promoflow.sources.semver import Range, Version, parse_range, parse_version, select

PRE = "include_prerelease"

# (range, version, include_prerelease) that must match -- node fixture range-include.js
INCLUDED: list[tuple[str, str, bool]] = [
    ("1.0.0 - 2.0.0", "1.2.3", False),
    ("^1.2.3+build", "1.2.3", False),
    ("^1.2.3+build", "1.3.0", False),
    ("1.2.3-pre+asdf - 2.4.3-pre+asdf", "1.2.3", False),
    ("1.2.3-pre+asdf - 2.4.3-pre+asdf", "1.2.3-pre.2", False),
    ("1.2.3-pre+asdf - 2.4.3-pre+asdf", "2.4.3-alpha", False),
    ("1.2.3+asdf - 2.4.3+asdf", "1.2.3", False),
    ("1.0.0", "1.0.0", False),
    (">=*", "0.2.4", False),
    ("", "1.0.0", False),
    ("*", "1.2.3", False),
    ("*", "v1.2.3", False),
    (">=1.0.0", "1.0.0", False),
    (">=1.0.0", "1.0.1", False),
    (">=1.0.0", "1.1.0", False),
    (">1.0.0", "1.0.1", False),
    (">1.0.0", "1.1.0", False),
    ("<=2.0.0", "2.0.0", False),
    ("<=2.0.0", "1.9999.9999", False),
    ("<=2.0.0", "0.2.9", False),
    ("<2.0.0", "1.9999.9999", False),
    ("<2.0.0", "0.2.9", False),
    (">= 1.0.0", "1.0.0", False),
    (">=  1.0.0", "1.0.1", False),
    (">=   1.0.0", "1.1.0", False),
    ("> 1.0.0", "1.0.1", False),
    (">  1.0.0", "1.1.0", False),
    ("<=   2.0.0", "2.0.0", False),
    ("<= 2.0.0", "1.9999.9999", False),
    ("<=  2.0.0", "0.2.9", False),
    ("<    2.0.0", "1.9999.9999", False),
    ("<\t2.0.0", "0.2.9", False),
    (">=0.1.97", "v0.1.97", False),
    (">=0.1.97", "0.1.97", False),
    ("0.1.20 || 1.2.4", "1.2.4", False),
    (">=0.2.3 || <0.0.1", "0.0.0", False),
    (">=0.2.3 || <0.0.1", "0.2.3", False),
    (">=0.2.3 || <0.0.1", "0.2.4", False),
    ("||", "1.3.4", False),
    ("2.x.x", "2.1.3", False),
    ("1.2.x", "1.2.3", False),
    ("1.2.x || 2.x", "2.1.3", False),
    ("1.2.x || 2.x", "1.2.3", False),
    ("x", "1.2.3", False),
    ("2.*.*", "2.1.3", False),
    ("1.2.*", "1.2.3", False),
    ("1.2.* || 2.*", "2.1.3", False),
    ("1.2.* || 2.*", "1.2.3", False),
    ("2", "2.1.2", False),
    ("2.3", "2.3.1", False),
    ("~0.0.1", "0.0.1", False),
    ("~0.0.1", "0.0.2", False),
    ("~x", "0.0.9", False),
    ("~2", "2.0.9", False),
    ("~2.4", "2.4.0", False),
    ("~2.4", "2.4.5", False),
    ("~>3.2.1", "3.2.2", False),
    ("~1", "1.2.3", False),
    ("~>1", "1.2.3", False),
    ("~> 1", "1.2.3", False),
    ("~1.0", "1.0.2", False),
    ("~ 1.0", "1.0.2", False),
    ("~ 1.0.3", "1.0.12", False),
    (">=1", "1.0.0", False),
    (">= 1", "1.0.0", False),
    ("<1.2", "1.1.1", False),
    ("< 1.2", "1.1.1", False),
    ("~v0.5.4-pre", "0.5.5", False),
    ("~v0.5.4-pre", "0.5.4", False),
    ("=0.7.x", "0.7.2", False),
    ("<=0.7.x", "0.7.2", False),
    (">=0.7.x", "0.7.2", False),
    ("<=0.7.x", "0.6.2", False),
    ("~1.2.1 >=1.2.3", "1.2.3", False),
    ("~1.2.1 =1.2.3", "1.2.3", False),
    ("~1.2.1 1.2.3", "1.2.3", False),
    ("~1.2.1 >=1.2.3 1.2.3", "1.2.3", False),
    ("~1.2.1 1.2.3 >=1.2.3", "1.2.3", False),
    (">=1.2.1 1.2.3", "1.2.3", False),
    ("1.2.3 >=1.2.1", "1.2.3", False),
    (">=1.2.3 >=1.2.1", "1.2.3", False),
    (">=1.2.1 >=1.2.3", "1.2.3", False),
    (">=1.2", "1.2.8", False),
    ("^1.2.3", "1.8.1", False),
    ("^0.1.2", "0.1.2", False),
    ("^0.1", "0.1.2", False),
    ("^0.0.1", "0.0.1", False),
    ("^1.2", "1.4.2", False),
    ("^1.2 ^1", "1.4.2", False),
    ("^1.2.3-alpha", "1.2.3-pre", False),
    ("^1.2.0-alpha", "1.2.0-pre", False),
    ("^0.0.1-alpha", "0.0.1-beta", False),
    ("^0.0.1-alpha", "0.0.1", False),
    ("^0.1.1-alpha", "0.1.1-beta", False),
    ("^x", "1.2.3", False),
    ("x - 1.0.0", "0.9.7", False),
    ("x - 1.x", "0.9.7", False),
    ("1.0.0 - x", "1.9.7", False),
    ("1.x - x", "1.9.7", False),
    ("<=7.x", "7.9.9", False),
    ("2.x", "2.0.0-pre.0", True),
    ("2.x", "2.1.0-pre.0", True),
    ("*", "1.0.0-rc1", True),
    ("^1.0.0-0", "1.0.1-rc1", True),
    ("^1.0.0-rc2", "1.0.1-rc1", True),
    ("^1.0.0", "1.0.1-rc1", True),
    ("^1.0.0", "1.1.0-rc1", True),
    # node-semver#878: tilde lower bounds get -0 like x-ranges when prereleases are included
    ("~1.2", "1.2.0-rc", True),
    ("~1.2.*", "1.2.0-rc", True),
    ("1.2.*", "1.2.0-rc", True),
]

# (range, version, include_prerelease) that must not match -- node fixture range-exclude.js
EXCLUDED: list[tuple[str, str, bool]] = [
    ("1.0.0 - 2.0.0", "2.2.3", False),
    ("1.2.3+asdf - 2.4.3+asdf", "1.2.3-pre.2", False),
    ("1.2.3+asdf - 2.4.3+asdf", "2.4.3-alpha", False),
    ("^1.2.3+build", "2.0.0", False),
    ("^1.2.3+build", "1.2.0", False),
    ("^1.2.3", "1.2.3-pre", False),
    ("^1.2", "1.2.0-pre", False),
    (">1.2", "1.3.0-beta", False),
    ("<=1.2.3", "1.2.3-beta", False),
    ("^1.2.3", "1.2.3-beta", False),
    ("=0.7.x", "0.7.0-asdf", False),
    (">=0.7.x", "0.7.0-asdf", False),
    ("1.0.0", "1.0.1", False),
    (">=1.0.0", "0.0.0", False),
    (">=1.0.0", "0.0.1", False),
    (">=1.0.0", "0.1.0", False),
    (">1.0.0", "0.0.1", False),
    (">1.0.0", "0.1.0", False),
    ("<=2.0.0", "3.0.0", False),
    ("<=2.0.0", "2.9999.9999", False),
    ("<=2.0.0", "2.2.9", False),
    ("<2.0.0", "2.9999.9999", False),
    ("<2.0.0", "2.2.9", False),
    (">=0.1.97", "v0.1.93", False),
    (">=0.1.97", "0.1.93", False),
    ("0.1.20 || 1.2.4", "1.2.3", False),
    (">=0.2.3 || <0.0.1", "0.0.3", False),
    (">=0.2.3 || <0.0.1", "0.2.2", False),
    ("2.x.x", "1.1.3", False),
    ("2.x.x", "3.1.3", False),
    ("1.2.x", "1.3.3", False),
    ("1.2.x || 2.x", "3.1.3", False),
    ("1.2.x || 2.x", "1.1.3", False),
    ("2.*.*", "1.1.3", False),
    ("2.*.*", "3.1.3", False),
    ("1.2.*", "1.3.3", False),
    ("1.2.* || 2.*", "3.1.3", False),
    ("1.2.* || 2.*", "1.1.3", False),
    ("2", "1.1.2", False),
    ("2.3", "2.4.1", False),
    ("~0.0.1", "0.1.0-alpha", False),
    ("~0.0.1", "0.1.0", False),
    ("~2.4", "2.5.0", False),
    ("~2.4", "2.3.9", False),
    ("~>3.2.1", "3.3.2", False),
    ("~>3.2.1", "3.2.0", False),
    ("~1", "0.2.3", False),
    ("~>1", "2.2.3", False),
    ("~1.0", "1.1.0", False),
    ("<1", "1.0.0", False),
    (">=1.2", "1.1.1", False),
    ("~v0.5.4-beta", "0.5.4-alpha", False),
    ("=0.7.x", "0.8.2", False),
    (">=0.7.x", "0.6.2", False),
    ("<0.7.x", "0.7.2", False),
    ("<1.2.3", "1.2.3-beta", False),
    ("=1.2.3", "1.2.3-beta", False),
    (">1.2", "1.2.8", False),
    ("^0.0.1", "0.0.2-alpha", False),
    ("^0.0.1", "0.0.2", False),
    ("^1.2.3", "2.0.0-alpha", False),
    ("^1.2.3", "1.2.2", False),
    ("^1.2", "1.1.9", False),
    ("*", "not a version", False),
    (">=2", "glorp", False),
    ("2.x", "3.0.0-pre.0", True),
    ("^1.0.0", "1.0.0-rc1", True),
    ("^1.2.3-rc2", "2.0.0", True),
    ("^1.0.0", "2.0.0-rc1", True),
    ("^1.0.0", "2.0.0-rc1", False),
    # node-semver#872: an exact 0.x caret does not let its own prereleases in
    ("^0.0.3", "0.0.3-alpha", True),
    ("^0.2.3", "0.2.3-alpha", True),
]

# (range, node's canonical form, include_prerelease) -- node fixture range-parse.js
DESUGARED: list[tuple[str, str, bool]] = [
    ("1.0.0 - 2.0.0", ">=1.0.0 <=2.0.0", False),
    ("1.0.0 - 2.0.0", ">=1.0.0-0 <2.0.1-0", True),
    ("1 - 2", ">=1.0.0 <3.0.0-0", False),
    ("1 - 2", ">=1.0.0-0 <3.0.0-0", True),
    ("1.0 - 2.0", ">=1.0.0 <2.1.0-0", False),
    ("1.0 - 2.0", ">=1.0.0-0 <2.1.0-0", True),
    ("1.0.0", "1.0.0", False),
    (">=*", "*", False),
    ("", "*", False),
    ("*", "*", False),
    (">=1.0.0", ">=1.0.0", False),
    (">1.0.0", ">1.0.0", False),
    ("<=2.0.0", "<=2.0.0", False),
    ("1", ">=1.0.0 <2.0.0-0", False),
    ("<2.0.0", "<2.0.0", False),
    (">= 1.0.0", ">=1.0.0", False),
    ("> 1.0.0", ">1.0.0", False),
    ("<\t2.0.0", "<2.0.0", False),
    ("0.1.20 || 1.2.4", "0.1.20||1.2.4", False),
    (">=0.2.3 || <0.0.1", ">=0.2.3||<0.0.1", False),
    ("||", "*", False),
    ("2.x.x", ">=2.0.0 <3.0.0-0", False),
    ("1.2.x", ">=1.2.0 <1.3.0-0", False),
    ("1.2.x || 2.x", ">=1.2.0 <1.3.0-0||>=2.0.0 <3.0.0-0", False),
    ("x", "*", False),
    ("2.*.*", ">=2.0.0 <3.0.0-0", False),
    ("2.3", ">=2.3.0 <2.4.0-0", False),
    ("~2.4", ">=2.4.0 <2.5.0-0", False),
    ("~>3.2.1", ">=3.2.1 <3.3.0-0", False),
    ("~> 1", ">=1.0.0 <2.0.0-0", False),
    ("~ 1.0", ">=1.0.0 <1.1.0-0", False),
    ("^0", "<1.0.0-0", False),
    ("^ 1", ">=1.0.0 <2.0.0-0", False),
    ("^0.1", ">=0.1.0 <0.2.0-0", False),
    ("^1.2", ">=1.2.0 <2.0.0-0", False),
    ("^0.0.1", ">=0.0.1 <0.0.2-0", False),
    ("^0.0.1-beta", ">=0.0.1-beta <0.0.2-0", False),
    ("^0.1.2", ">=0.1.2 <0.2.0-0", False),
    ("^1.2.3", ">=1.2.3 <2.0.0-0", False),
    ("^1.2.3-beta.4", ">=1.2.3-beta.4 <2.0.0-0", False),
    ("<1", "<1.0.0-0", False),
    (">= 1", ">=1.0.0", False),
    ("< 1.2", "<1.2.0-0", False),
    ("^ 1.2 ^ 1", ">=1.2.0 <2.0.0-0 >=1.0.0", False),
    ("1.2 - 3.4.5", ">=1.2.0 <=3.4.5", False),
    ("1.2.3 - 3.4", ">=1.2.3 <3.5.0-0", False),
    ("1.2 - 3.4", ">=1.2.0 <3.5.0-0", False),
    (">1", ">=2.0.0", False),
    (">1.2", ">=1.3.0", False),
    (">X", "<0.0.0-0", False),
    ("<X", "<0.0.0-0", False),
    ("<x <* || >* 2.x", "<0.0.0-0", False),
    (">x 2.x || * || <x", "*", False),
    ("~1.2", ">=1.2.0-0 <1.3.0-0", True),
    ("^0.0.3", ">=0.0.3 <0.0.4-0", True),
    ("^1.2", ">=1.2.0-0 <2.0.0-0", True),
]

INVALID_RANGES = [
    ">01.02.03",  # node fixture: leading zeros
    "~1.2.3beta",  # node fixture: prerelease without a hyphen is loose-only
    "1.2.3.4",
    "blerg",
    ">=1.2.3 <",
    ">=1.2.3 <=",
    "1.2.3 -2.0.0",
    "1.2.3 -",
    "1.x.3",  # a wildcard cannot be followed by a concrete part
    "x.1",
    "==1.2.3",
    ">=V1.2.3",
    "1 | 2",
    "^1.2.3-01",
    "!1.2.3",
    "latest",
    "1.x " * 1500,  # over the length cap
]


@pytest.mark.parametrize(("range_text", "version", PRE), INCLUDED)
def test_node_fixture_included(range_text: str, version: str, include_prerelease: bool) -> None:
    assert parse_range(range_text).contains(version, include_prerelease)


@pytest.mark.parametrize(("range_text", "version", PRE), EXCLUDED)
def test_node_fixture_excluded(range_text: str, version: str, include_prerelease: bool) -> None:
    assert not parse_range(range_text).contains(version, include_prerelease)


@pytest.mark.parametrize(("range_text", "expected", PRE), DESUGARED)
def test_node_fixture_desugared(range_text: str, expected: str, include_prerelease: bool) -> None:
    assert parse_range(range_text).desugared(include_prerelease) == expected


def test_fixture_tables_are_big_enough() -> None:
    assert len(INCLUDED) + len(EXCLUDED) >= 60
    assert any(pre for _, _, pre in INCLUDED) and any(pre for _, _, pre in EXCLUDED)


@pytest.mark.parametrize("range_text", INVALID_RANGES)
def test_invalid_ranges_raise_value_error(range_text: str) -> None:
    with pytest.raises(ValueError, match="invalid semver range"):
        parse_range(range_text)


def test_invalid_range_message_names_the_bad_part() -> None:
    with pytest.raises(ValueError) as caught:
        parse_range(">=1.2.0 blerg")
    assert "'>=1.2.0 blerg'" in str(caught.value)
    assert "'blerg'" in str(caught.value)


def test_prerelease_rule_uses_the_same_set_only() -> None:
    r = parse_range(">=1.3.0-rc.0 <2 || ^3")
    assert r.contains("1.3.0-rc.1", False)
    assert not r.contains("1.4.0-rc.1", False)  # same set, different MAJOR.MINOR.PATCH
    assert not r.contains("3.1.0-rc.1", False)  # the other set names no prerelease
    assert r.contains("3.1.0-rc.1", True)
    assert r.contains("1.4.0-rc.1", True)


def test_contains_accepts_versions_and_in() -> None:
    r = parse_range("^1.2")
    assert r.contains(Version(1, 9, 0))
    assert r.contains(Version.parse("v1.2.0+build.7"))
    assert "1.5.0" in r
    assert Version(2, 0, 0) not in r
    assert 3 not in r
    assert str(r) == ">=1.2.0 <2.0.0-0"
    assert isinstance(r, Range)


# --- versions --------------------------------------------------------------------------------

SPEC_ORDER = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
]


def test_precedence_follows_the_semver_spec_example() -> None:
    versions = [Version.parse(v) for v in SPEC_ORDER]
    for lower, higher in itertools.pairwise(versions):
        assert lower < higher
        assert not higher < lower
    shuffled = versions[::-1]
    random.Random(7).shuffle(shuffled)
    assert [str(v) for v in sorted(shuffled)] == SPEC_ORDER


def test_precedence_of_the_core_is_numeric() -> None:
    assert Version.parse("1.0.0") < Version.parse("2.0.0") < Version.parse("2.1.0") < Version.parse("2.1.1")
    assert Version.parse("1.2.10") > Version.parse("1.2.9")
    assert Version.parse("1.0.0-2") < Version.parse("1.0.0-10") < Version.parse("1.0.0-a")
    assert Version.parse("1.0.0-alpha") < Version.parse("1.0.0-alpha.0")


def test_build_metadata_is_ignored_for_precedence() -> None:
    a, b = Version.parse("1.0.0+a"), Version.parse("1.0.0+b.2")
    assert a == b and not a < b and not b < a
    assert hash(a) == hash(b)
    assert str(a) == "1.0.0+a"
    assert Version.parse("v1.2.3") == Version.parse("1.2.3")


@pytest.mark.parametrize(
    "text",
    [
        "0.0.4",
        "1.2.3",
        "10.20.30",
        "1.1.2-prerelease+meta",
        "1.1.2+meta",
        "1.1.2+meta-valid",
        "1.0.0-alpha.beta.1",
        "1.0.0-alpha0.valid",
        "1.0.0-alpha.0valid",
        "1.0.0-alpha-a.b-c-somethinglong+build.1-aef.1-its-okay",
        "1.0.0-rc.1+build.1",
        "10.2.3-DEV-SNAPSHOT",
        "1.0.0-0A.is.legal",
        "1.0.0+0.build.1-rc.10000aaa-kk-0.1",
        "1.0.0-x-y-z.--",
        "1.0.0+001",
        "99999999999999999999999.999999999999999999.99999999999999999",
        "v1.2.3",
        "V1.2.3-rc.1",
    ],
)
def test_valid_versions_round_trip(text: str) -> None:
    version = parse_version(text)
    assert version is not None
    assert str(version) == text.lstrip("vV")


@pytest.mark.parametrize(
    "text",
    [
        "1",
        "1.2",
        "1.2.3.4",
        "01.2.3",
        "1.02.3",
        "1.2.03",
        "1.2.3-",
        "1.2.3-01",
        "1.2.3-alpha..1",
        "1.2.3+",
        "1.2.3+a..b",
        "1.2.3-alpha_beta",
        " 1.2.3",
        "1.2.3 ",
        "=1.2.3",
        "vv1.2.3",
        "latest",
        "",
        "1.2.3\n",
        "\u0661.\u0662.\u0663",  # Arabic-Indic digits are not semver digits
    ],
)
def test_invalid_versions_are_none(text: str) -> None:
    assert parse_version(text) is None
    with pytest.raises(ValueError):
        Version.parse(text)


def test_version_validates_its_fields() -> None:
    assert Version(1, 2, 3, ("rc", "1")) == Version.parse("1.2.3-rc.1")
    with pytest.raises(ValueError):
        Version(-1, 0, 0)
    with pytest.raises(ValueError):
        Version(1, 0, 0, ("01",))
    with pytest.raises(TypeError):
        Version(1, 0, 0, "rc.1")  # type: ignore[arg-type]


# --- select ----------------------------------------------------------------------------------


def test_select_picks_the_highest_match() -> None:
    tags = ["1.0.0", "1.2.0", "v1.10.0", "2.0.0", "latest", "1.11.0-rc.1", "sha-abc123", "1.9"]
    assert select(tags, "^1.0", False) == "v1.10.0"
    assert select(tags, "^1.0", True) == "1.11.0-rc.1"
    assert select(tags, ">=1.11.0-rc.0 <2", False) == "1.11.0-rc.1"
    assert select(tags, "*", False) == "2.0.0"
    assert select(tags, "3.x", False) is None
    assert select([], "*", False) is None


def test_select_prefers_the_tag_without_prefix_on_equal_versions() -> None:
    assert select(["v1.2.0", "1.2.0", "1.1.0"], "*", False) == "1.2.0"
    assert select(["1.2.0", "v1.2.0"], "*", False) == "1.2.0"
    assert select(["V1.2.0", "v1.2.0"], "*", False) == "V1.2.0"
    assert select(["1.2.0+b2", "v1.2.0", "1.2.0+b1"], "*", False) == "1.2.0+b1"


def test_select_rejects_bad_ranges() -> None:
    with pytest.raises(ValueError):
        select(["1.0.0"], "not-a-range", False)


def test_select_accepts_a_parsed_range_and_any_iterable() -> None:
    tags = {"1.0.0": "sha256:a", "1.1.0": "sha256:b"}
    assert select(tags, parse_range("~1.0"), False) == "1.0.0"
    assert select(iter(tags), "1", False) == "1.1.0"


def _generated_tags(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    tags = []
    for i in range(count):
        major, minor, patch = rng.randrange(40), rng.randrange(60), rng.randrange(60)
        roll = rng.random()
        if roll < 0.10:
            tags.append(f"v{major}.{minor}.{patch}")
        elif roll < 0.25:
            tags.append(f"{major}.{minor}.{patch}-{rng.choice(['alpha', 'beta', 'rc'])}.{rng.randrange(12)}")
        elif roll < 0.30:
            tags.append(f"{major}.{minor}.{patch}+build.{i}")
        elif roll < 0.35:
            tags.append(rng.choice(["latest", f"sha-{i:08x}", f"{major}.{minor}", "main"]))
        else:
            tags.append(f"{major}.{minor}.{patch}")
    return tags


@pytest.fixture(scope="module")
def tags_100k() -> tuple[list[str], list[tuple[Version, str]]]:
    tags = _generated_tags(100_000, seed=2024)
    parsed = [(version, tag) for tag in tags if (version := parse_version(tag)) is not None]
    return tags, parsed


def _v(text: str) -> Version:
    return Version.parse(text)


# What each range means, written out by hand from node-semver's documentation: the oracle shares no range code
# with the module (only the version order, tested on its own above).
MEANING: dict[tuple[str, bool], Callable[[Version], bool]] = {
    ("*", False): lambda v: not v.prerelease,
    ("^12.3.0", False): lambda v: not v.prerelease and _v("12.3.0") <= v < _v("13.0.0"),
    ("^12.3.0", True): lambda v: _v("12.3.0") <= v < _v("13.0.0-0"),
    ("~20.4 || 3.x", False): lambda v: (
        not v.prerelease and (_v("20.4.0") <= v < _v("20.5.0") or _v("3.0.0") <= v < _v("4.0.0"))
    ),
    ("~20.4 || 3.x", True): lambda v: _v("20.4.0-0") <= v < _v("20.5.0-0") or _v("3.0.0-0") <= v < _v("4.0.0-0"),
    ("<1.0.0", False): lambda v: not v.prerelease and v < _v("1.0.0"),
    # a prerelease only of the core that names one: 7.0.0-rc.N
    (">=7.0.0-rc.0 <7.1", False): lambda v: (
        _v("7.0.0-rc.0") <= v < _v("7.1.0-0") and (not v.prerelease or v.core == (7, 0, 0))
    ),
    ("1.2.3 - 1.9", True): lambda v: _v("1.2.3-0") <= v < _v("1.10.0-0"),
    ("41.x", False): lambda v: not v.prerelease and _v("41.0.0") <= v < _v("42.0.0"),
}


@pytest.mark.parametrize(("range_text", PRE), list(MEANING))
def test_select_on_100k_tags_matches_brute_force(
    tags_100k: tuple[list[str], list[tuple[Version, str]]], range_text: str, include_prerelease: bool
) -> None:
    tags, parsed = tags_100k
    got = select(tags, range_text, include_prerelease)

    means = MEANING[(range_text, include_prerelease)]
    matching = [(version, tag) for version, tag in parsed if means(version)]
    if not matching:
        assert got is None
        return
    best = max(version for version, _ in matching)
    ties = sorted((tag[0] in "vV", tag) for version, tag in matching if version == best)
    assert got == ties[0][1]
    assert got is not None and parse_version(got) == best
    assert select(reversed(tags), range_text, include_prerelease) == got  # order does not matter
