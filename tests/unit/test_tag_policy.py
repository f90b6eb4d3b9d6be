"""Semver ranges and tag policies at their edges (catches issue 16, behaviour 6: a wider upper bound for tilde
ranges with a prerelease; the tie-break between tags of equal value reversed). Expected values are written out
by hand from node-semver's documentation, never computed with the module under test."""

from __future__ import annotations

import dataclasses

import pytest

from promoflow.config import TagPolicy
from promoflow.sources import policy, semver


@pytest.mark.parametrize(
    ("text", "desugared"),
    [
        ("~1.2.3-beta.2", ">=1.2.3-beta.2 <1.3.0-0"),
        ("~0.2.3-rc.1", ">=0.2.3-rc.1 <0.3.0-0"),
        ("~1.2.3", ">=1.2.3 <1.3.0-0"),
        ("~1.2", ">=1.2.0 <1.3.0-0"),
        ("~1", ">=1.0.0 <2.0.0-0"),
        ("^1.2.3-beta.2", ">=1.2.3-beta.2 <2.0.0-0"),
        ("^0.2.3-rc.1", ">=0.2.3-rc.1 <0.3.0-0"),
        ("^0.0.3-rc.1", ">=0.0.3-rc.1 <0.0.4-0"),
        (">1", ">=2.0.0"),
        (">1.2", ">=1.3.0"),
        ("<=1", "<2.0.0-0"),
        ("<=1.2", "<1.3.0-0"),
        (">=1.x", ">=1.0.0"),
    ],
)
def test_tilde_and_caret_bounds(text: str, desugared: str) -> None:
    assert semver.parse_range(text).desugared() == desugared


def test_a_tilde_range_with_a_prerelease_stops_before_the_next_minor() -> None:
    wanted = semver.parse_range("~1.2.3-beta.2")
    assert wanted.contains("1.2.3-beta.4") and wanted.contains("1.2.9")
    assert not wanted.contains("1.3.0") and not wanted.contains("1.3.0-rc.1", include_prerelease=True)
    assert not wanted.contains("2.0.0") and not wanted.contains("1.2.3-alpha")
    tags = ["1.2.3-beta.4", "1.2.9", "1.3.0", "1.9.9", "2.0.0"]
    assert semver.select(tags, "~1.2.3-beta.2") == "1.2.9"
    assert semver.select(tags, "~1.2.3-beta.2", lowest=True) == "1.2.3-beta.4"


def test_equal_versions_pick_the_unprefixed_then_smallest_tag_in_either_direction() -> None:
    tags = ["v1.2.0", "1.2.0+b9", "1.2.0+b1", "V1.2.0", "1.1.0", "v1.1.0"]
    for order in (tags, tags[::-1]):
        assert semver.select(order, "*") == "1.2.0+b1"
        assert semver.select(order, "*", lowest=True) == "1.1.0"
        assert semver.select(order, "<1.2.0", lowest=False) == "1.1.0"


def test_a_policy_breaks_ties_between_tags_of_equal_value_by_the_smallest_tag() -> None:
    """Two tags whose extracted value is the same version: the alphabetically smallest tag, whatever their order."""
    by_build = TagPolicy(regex=r"^(?:main|release)-(?P<v>\d+\.\d+\.\d+)$", extract="$v", semver=">=1.0.0")
    tags = ["release-1.4.0", "main-1.4.0", "main-1.3.0"]
    for order in (tags, tags[::-1]):
        assert policy.select(order, by_build) == "main-1.4.0"
    ascending = by_build.model_copy(update={"direction": "asc"})
    assert policy.select(["release-1.3.0", "main-1.4.0", "main-1.3.0"], ascending) == "main-1.3.0"
    numbers = TagPolicy(regex=r"^(?:b|a)-(?P<n>\d+)$", extract="$n", order="numerical")
    for order in (["b-7", "a-7", "a-3"], ["a-3", "a-7", "b-7"]):
        assert policy.select(order, numbers) == "a-7"
        assert policy.ranked(order, numbers, 3) == ["a-7", "b-7", "a-3"]
    numbers_up = numbers.model_copy(update={"direction": "asc"})
    assert policy.ranked(["b-3", "a-7", "a-3"], numbers_up, 3) == ["a-3", "b-3", "a-7"]


def test_prereleases_are_left_out_unless_asked_for() -> None:
    tags = ["1.3.0-rc.1", "1.2.0"]
    assert semver.select(tags, "^1.0") == "1.2.0"
    assert semver.select(tags, "^1.0", include_prerelease=True) == "1.3.0-rc.1"
    assert semver.parse_range("^1.0").contains("1.3.0-rc.1") is False


def test_a_range_of_4096_characters_is_read_and_a_longer_one_refused() -> None:
    longest = " " * 4089 + ">=1.0.0"
    assert len(longest) == 4096 and semver.parse_range(longest).contains("1.0.0")
    with pytest.raises(ValueError, match="longer than 4096 characters"):
        semver.parse_range(" " + longest)


def test_extract_joins_several_captures_and_checks_the_ones_it_names() -> None:
    build = TagPolicy(regex=r"^v(\d+)-(?P<minor>\d+)-(\w+)$", extract="$1.${minor}.0-$3", semver=">=1.0.0-0")
    assert policy.candidates(["v1-4-rc", "x"], build) == [("v1-4-rc", "1.4.0-rc")]
    assert policy.select(["v1-4-rc", "v1-10-rc", "v2-0-b"], build.model_copy(update={"prerelease": True})) == "v2-0-b"
    swapped = TagPolicy(regex=r"^(\d+)-(\d+)$", extract="$2.$1.0")
    assert policy.candidates(["3-1", "3-1-x"], swapped) == [("3-1", "1.3.0")]
    policy.check_template(r"(\d+)-(\d+)", "$2.$1")
    policy.check_template(r"(?P<n>\d+)", "${n} $0 $1")
    for template, name in (("$2", "2"), ("${m}", "m"), ("$1$3", "3")):
        with pytest.raises(ValueError, match=rf"`extract` names \${name}, which the regex does not capture"):
            policy.check_template(r"(\d+)-(\d+)" if name == "3" else r"(\d+)", template)


def test_a_policy_is_described_in_a_few_words() -> None:
    assert policy.describe(TagPolicy(track="latest")) == "track latest"
    assert policy.describe(TagPolicy(semver="^1.2", prerelease=True)) == "semver '^1.2' with prereleases"
    numbered = TagPolicy(regex=r"^b-(\d+)$", extract="$1", order="numerical", direction="asc", ignore=["*-dbg", "x*"])
    assert policy.describe(numbered) == r"regex '^b-(\\d+)$', extract '$1', numerical asc, ignoring *-dbg, x*"
    assert policy.describe(TagPolicy(order="alphabetical")) == "alphabetical desc"


def test_ranges_and_versions_are_values() -> None:
    """Immutable and hashable: a policy's parsed range can be shared and cached."""
    cached = {semver.parse_range("^1.2"): "a", semver.Version.parse("1.2.0"): "b"}
    assert cached[semver.parse_range("^1.2")] == "a" and cached[semver.Version.parse("1.2.0+build")] == "b"
    with pytest.raises(dataclasses.FrozenInstanceError):
        semver.parse_range("^1.2").text = "*"  # type: ignore[misc]


def test_hyphen_ranges_keep_the_prereleases_they_name() -> None:
    low = semver.parse_range("1.2.3-rc.1 - 2.0.0")
    assert low.desugared() == ">=1.2.3-rc.1 <=2.0.0"
    assert low.desugared(include_prerelease=True) == ">=1.2.3-rc.1 <2.0.1-0"
    high = semver.parse_range("1.0.0 - 2.0.0-rc.1")
    assert high.desugared(include_prerelease=True) == ">=1.0.0-0 <=2.0.0-rc.1"
    assert high.contains("2.0.0-rc.1") and not high.contains("2.0.0")


def test_a_version_refuses_identifiers_of_the_wrong_type_or_shape() -> None:
    with pytest.raises(TypeError, match="prerelease must be a tuple of identifiers"):
        semver.Version(1, 2, 3, "rc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="build must be a tuple of identifiers"):
        semver.Version(1, 2, 3, (), None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid build identifier 'a\\+b'"):
        semver.Version(1, 2, 3, (), ("a+b",))
    with pytest.raises(ValueError, match="invalid prerelease identifier '01'"):
        semver.Version(1, 2, 3, ("01",))
    assert str(semver.Version(1, 2, 3, ["rc", "1"], ["b"])) == "1.2.3-rc.1+b"  # type: ignore[arg-type]


def test_select_orders_prerelease_identifiers_and_bounds_as_semver_does() -> None:
    """select's fast path builds its own keys for tags: they must order like the range's bounds."""
    assert semver.select(["1.0.0-1", "1.0.0-alpha"], "*", include_prerelease=True) == "1.0.0-alpha"
    assert semver.select(["1.0.0-rb"], "<1.0.0-rc", include_prerelease=True) == "1.0.0-rb"
    assert semver.select(["1.0.0-rd"], "<1.0.0-rc", include_prerelease=True) is None
    assert semver.select(["1.2.3"], "<=1.2.3") == "1.2.3"
    assert semver.select(["1.2.3"], ">1.2.3-rc.1", include_prerelease=True) == "1.2.3"
