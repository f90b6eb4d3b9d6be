"""Tag policies: filter, extract, order, track; and `promoflow images select|preview` on top of them."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from promoflow.config import TagPolicy
from promoflow.sources.policy import ranked, select
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
        ({"order": "random"}, "'semver', 'numerical' or 'alphabetical'"),
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


def test_images_preview_shows_candidates_and_the_pick(sandbox: Sandbox) -> None:
    digest = sandbox.publish("1.3.0")
    sandbox.publish("2.0.0")  # outside the demo's range >=1.0.0 <2
    (preview,) = json.loads(sandbox.cli("images", "preview", "web", "--json").stdout)
    assert preview["pick"] == "1.3.0" and preview["digest"] == digest
    assert preview["candidates"] == ["1.3.0", "1.1.0", "1.0.0"]
    assert preview["tags"] == 5
    unknown = run_cli("images", "preview", "nope", cwd=sandbox.base)
    assert unknown.returncode == 1 and "Unknown app 'nope'" in unknown.stderr
