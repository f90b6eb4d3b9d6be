"""Tag policies: filter, extract, order, track; and `promoflow images select|preview` on top of them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from promoflow.config import TagPolicy
from promoflow.sources.policy import BuildTimesUnknown, ranked, select
from tests.conftest import Sandbox, run_cli

TAGS = ["1.0.0", "1.2.0", "v1.10.0", "1.11.0-rc.1", "2.0.0", "latest", "main-7-abc", "main-12-def", "main-9-0aa"]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({}, "2.0.0"),
        ({"semver": "^1"}, "v1.10.0"),
        ({"semver": "^1", "prerelease": True}, "1.11.0-rc.1"),
        ({"semver": "~1.2"}, "1.2.0"),
        ({"semver": "^1", "direction": "asc"}, "1.0.0"),
        ({"semver": ">=3"}, None),
        ({"semver": "*", "ignore": ["2.*", "v*"]}, "1.2.0"),
        ({"regex": r"main-(?P<n>\d+)-\w+", "extract": "$n", "order": "numerical"}, "main-12-def"),
        ({"regex": r"main-(?P<n>\d+)-\w+", "extract": "${n}", "order": "alphabetical"}, "main-9-0aa"),
        ({"regex": r"main-(\d+)-(\w+)", "extract": "$2", "order": "alphabetical", "direction": "asc"}, "main-9-0aa"),
        ({"regex": r"main-(?P<n>\d+)-\w+", "extract": "1.$n.0", "semver": "<1.10"}, "main-9-0aa"),
        ({"regex": r"main-.*", "order": "numerical"}, None),  # nothing numerical to compare
        # a regex matches anywhere in the tag, as in Flux, Kargo and Argo CD Image Updater; ^ and $ anchor it
        ({"regex": "main", "order": "alphabetical"}, "main-9-0aa"),
        ({"regex": r"1\."}, "v1.10.0"),
        ({"regex": r"^1\."}, "1.2.0"),
        ({"regex": r"^1\.2"}, "1.2.0"),
        ({"regex": r"^1\.2$"}, None),
        ({"regex": r"-(?P<n>\d+)-", "extract": "$n", "order": "numerical"}, "main-12-def"),
        ({"track": "latest"}, "latest"),
        ({"track": "stable"}, None),
    ],
)
def test_policies_pick_like_flux_image_policies(policy: dict[str, object], expected: str | None) -> None:
    chosen = TagPolicy.model_validate(policy)
    assert select(TAGS, chosen) == expected
    assert select(reversed(TAGS), chosen) == expected  # the order of the tag list never matters
    assert (ranked(TAGS, chosen, 3)[:1] or [None]) == [expected]


def test_ranked_lists_the_runners_up_best_first() -> None:
    assert ranked(TAGS, TagPolicy(semver="^1"), 5) == ["v1.10.0", "1.2.0", "1.0.0"]
    numeric = TagPolicy(regex=r"main-(?P<n>\d+)-\w+", extract="$n", order="numerical", direction="asc")
    assert ranked(TAGS, numeric, 2) == ["main-7-abc", "main-9-0aa"]


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"regex": "("}, "invalid regular expression"),
        ({"regex": "(?P<n>x)", "extract": "$m"}, r"names \$m, which the regex does not capture"),
        ({"extract": "$n"}, "`extract` needs a `regex`"),
        ({"track": "latest", "semver": "^1"}, "cannot be combined"),
        ({"order": "random"}, "'semver', 'numerical', 'alphabetical' or 'created'"),
        ({"semver": ">=1 <<2"}, "invalid semver range"),
    ],
)
def test_bad_policies_are_refused_with_a_reason(policy: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TagPolicy.model_validate(policy)


def test_selecting_among_a_hundred_thousand_tags_is_correct() -> None:
    tags = [f"main-{i}-{i:x}" for i in range(100_000)] + [f"1.{i}.0" for i in range(1_000)]
    assert select(tags, TagPolicy(regex=r"main-(?P<n>\d+)-\w+", extract="$n", order="numerical")) == "main-99999-1869f"
    assert select(tags, TagPolicy(semver="~1.500")) == "1.500.0"


def test_images_select_reads_tags_from_arguments_or_stdin(tmp_path: object) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "promoflow", "images", "select", *args],
            input=stdin, capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip

    assert run("--semver", "^1", stdin="1.0.0\n1.4.2\n2.0.0\n").stdout == "1.4.2\n"
    picked = run("--regex", r"build-(?P<n>\d+)", "--extract", "$n", "--order", "numerical", "build-9", "build-10")
    assert picked.stdout == "build-10\n"
    assert run("--asc", "1.0.0", "1.4.2").stdout == "1.0.0\n"
    none = run("--semver", ">=3", "1.0.0")
    assert none.returncode == 1 and none.stderr == "error: none of 1 tags matches (semver '>=3')\n"
    bad = run("--regex", "(", "x")
    assert bad.returncode == 2 and "--regex: Value error, invalid regular expression" in bad.stderr
    created = run("--order", "created", "sha-1", "sha-2")
    assert created.returncode == 2 and created.stdout == ""
    assert created.stderr == (
        "error: --order created picks the newest build, and a tag's build time is in its image, not its name: "
        "`promoflow images preview APP` shows each candidate's build time\n"
    )


def test_images_preview_shows_candidates_and_the_pick(sandbox: Sandbox) -> None:
    digest = sandbox.publish("1.3.0")
    sandbox.publish("2.0.0")  # outside the demo's range >=1.0.0 <2
    (preview,) = json.loads(sandbox.cli("images", "preview", "web", "--json").stdout)
    assert preview["pick"] == "1.3.0" and preview["digest"] == digest
    assert preview["candidates"] == ["1.3.0", "1.1.0", "1.0.0"]
    assert preview["tags"] == 5
    unknown = run_cli("images", "preview", "nope", cwd=sandbox.base)
    assert unknown.returncode == 1 and "Unknown app 'nope'" in unknown.stderr


# -- order: created ---------------------------------------------------------------------------------


def at(hour: int) -> datetime:
    return datetime(2026, 12, 1, hour, tzinfo=UTC)


def build_times(times: dict[str, datetime | None]) -> tuple[Callable[[str], datetime | None], list[str]]:
    """A tag -> its build time, and the tags it was asked for (in order)."""
    asked: list[str] = []

    def built(tag: str) -> datetime | None:
        asked.append(tag)
        return times[tag]

    return built, asked


def test_created_picks_the_newest_build_whatever_the_tags_say() -> None:
    built, asked = build_times({"sha-9f1": at(10), "sha-0ab": at(12), "sha-77c": at(11), "latest": at(12)})
    policy = TagPolicy(order="created", ignore=["latest"])
    assert select(["sha-9f1", "sha-0ab", "sha-77c", "latest"], policy, built) == "sha-0ab"
    assert asked == ["sha-9f1", "sha-0ab", "sha-77c"]  # one build time per candidate, none for an ignored tag
    assert ranked(["sha-9f1", "sha-0ab", "sha-77c"], TagPolicy(order="created", direction="asc"), 3, built) == [
        "sha-9f1",
        "sha-77c",
        "sha-0ab",
    ]


def test_created_ties_go_to_the_smallest_tag_and_missing_times_rank_last() -> None:
    built, _ = build_times({"b": at(12), "a": at(12), "old": at(1), "unknown": None, "epoch": None})
    tags = ["unknown", "b", "epoch", "old", "a"]
    assert ranked(tags, TagPolicy(order="created"), 5, built) == ["a", "b", "old", "epoch", "unknown"]
    assert ranked(tags, TagPolicy(order="created", direction="asc"), 5, built) == ["old", "a", "b", "epoch", "unknown"]
    undated, _ = build_times({"x": None, "w": None})
    assert select(["x", "w"], TagPolicy(order="created"), undated) == "w"  # nothing says when: still a pick


def test_created_reads_only_the_last_max_candidates_of_the_listing() -> None:
    tags = [f"build-{i}" for i in range(50)]
    built, asked = build_times({tag: at(i % 24) for i, tag in enumerate(tags)})
    policy = TagPolicy(order="created", regex="^build-", max_candidates=5)
    assert select(tags, policy, built) == "build-47"  # built at 23:00, the newest of build-45 ... build-49
    assert asked == tags[-5:]
    built, asked = build_times({tag: at(i % 24) for i, tag in enumerate(tags)})
    assert select(tags, TagPolicy(order="created"), built) == "build-47" and asked == tags[-20:]  # 20 by default


def test_created_without_build_times_says_so() -> None:
    with pytest.raises(BuildTimesUnknown, match="needs each candidate's build time"):
        select(["a", "b"], TagPolicy(order="created"))


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"max_candidates": 5}, "`max_candidates` belongs to `order: created`"),
        ({"order": "created", "regex": "(?P<n>.*)", "extract": "$n"}, "compares build times, not values"),
        ({"order": "created", "semver": "^1"}, "compares build times, not values"),
        ({"order": "created", "max_candidates": 0}, "greater than or equal to 1"),
    ],
)
def test_created_policies_that_make_no_sense_are_refused(policy: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TagPolicy.model_validate(policy)


def test_images_preview_shows_each_candidates_build_time_from_an_oci_layout(sandbox: Sandbox) -> None:
    from promoflow.sources import oci_layout

    sandbox.edit_config('          semver: ">=1.0.0 <2"', "          order: created\n          max_candidates: 5")
    sandbox.edit_config("          prerelease: false                       # 1.2.0-rc.1 is never picked\n", "")
    newest = oci_layout.publish(sandbox.layout, "sha-b7e", payload=b"b", created="2026-12-01T12:00:00Z")
    oci_layout.publish(sandbox.layout, "sha-a01", payload=b"a", created="2026-12-01T11:00:00+00:00")
    oci_layout.publish(sandbox.layout, "sha-c3d", payload=b"c", created="2026-12-01T10:00:00.5Z")  # added last
    (preview,) = json.loads(sandbox.cli("images", "preview", "web", "--json", "--top", "4").stdout)
    assert preview["pick"] == "sha-b7e" and preview["digest"] == newest
    # the last 5 tags of index.json: the demo's 1.1.0 and 1.2.0-rc.1 (no build time: last) and the three builds
    assert preview["candidates"] == ["sha-b7e", "sha-a01", "sha-c3d", "1.1.0"]
    assert preview["built"] == {
        "sha-b7e": "2026-12-01T12:00:00+00:00",
        "sha-a01": "2026-12-01T11:00:00+00:00",
        "sha-c3d": "2026-12-01T10:00:00.500000+00:00",
        "1.1.0": None,
    }
    assert preview["policy"] == "newest build of the last 5"
    table = sandbox.cli("images", "preview", "web").stdout.replace("\n", "")
    assert "sha-b7e (built 2026-12-01 12:00:00+00:00)" in table and "1.1.0 (no build time)" in table, table
