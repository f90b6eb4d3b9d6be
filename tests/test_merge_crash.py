"""A run killed after the forge merged but before the merge was recorded: `status` says a merge is unsettled, and a
re-run finds the merge, records it and closes the step; nothing is merged twice, no second pull request opened."""

from __future__ import annotations

from typing import Any

import pytest
from github import Auth, Github

from promoflow.sandbox.github import GitHubStandIn
from tests.conftest import Sandbox
from tests.test_github_flow import PEOPLE, REPO, TOKEN, configure, github_section, pulls

pytestmark = pytest.mark.prefect

REQUESTER = {"PROMOFLOW_USER": "rita"}


@pytest.fixture(autouse=True)
def _server(prefect_api: str) -> None:
    """Every test here talks to the session's Prefect server."""


def promotion(sandbox: Sandbox, env: str = "dev") -> dict[str, Any]:
    entries = sandbox.cli_json("history", "web", "--env", env)
    assert isinstance(entries, list)
    (found,) = [p for p in entries if p["kind"] == "promotion"]
    return dict(found)


def status(sandbox: Sandbox, env: str = "dev") -> dict[str, Any]:
    rows = sandbox.cli_json("status")
    assert isinstance(rows, list)
    return dict(next(r for r in rows if r["app"] == "web" and r["environment"] == env))


def assert_settled(sandbox: Sandbox, merged: dict[str, Any]) -> None:
    """One merge step succeeded after the interrupted one, nothing left running, the commit recorded is the branch's."""
    assert merged["state"] == "succeeded"
    assert merged["merge_commit"] == sandbox.git("rev-parse", "env/dev").strip()
    merges = [s for s in merged["steps"] if s["name"] == "merge"]
    assert [s["outcome"] for s in merges] == ["interrupted", "succeeded"]
    assert merges[0]["error"].startswith("the process running it (") and merges[0]["error"].endswith("ended first")
    assert merges[1]["detail"]["merge_commit"] == merged["merge_commit"]
    assert [s for s in merged["steps"] if s["outcome"] == "running"] == []
    now = status(sandbox)
    assert now["current_release"]["label"] == "1.2.0" and now["merging"] is None


def test_a_local_merge_pushed_but_not_recorded_is_found_and_recorded_by_the_rerun(sandbox: Sandbox) -> None:
    sandbox.publish("1.2.0")
    before = sandbox.git("rev-parse", "env/dev").strip()
    crashed = sandbox.cli("promote", "web", "--to", "dev", env={**REQUESTER, "PROMOFLOW_FAILPOINTS": "merge-pushed"})
    assert crashed.returncode == -9, crashed.stderr  # killed by SIGKILL right after the push
    assert sandbox.git("rev-parse", "env/dev").strip() != before  # the merge landed

    # meanwhile, status does not claim the branch still runs what it ran: it shows the unsettled merge
    unsettled = status(sandbox)
    assert unsettled["current_release"]["label"] == "1.1.0"
    assert unsettled["merging"] == {"promotion": promotion(sandbox)["id"], "release": promotion(sandbox)["release"]}
    table = sandbox.cli("status")
    assert f"(merging 1.2.0 ({promotion(sandbox)['release']['id'][:7]}): promotion" in table.stdout, table.stdout

    rerun = sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER)
    assert rerun.returncode == 0, rerun.stderr
    assert_settled(sandbox, promotion(sandbox))
    merges = sandbox.git("log", "--merges", "--format=%H", f"{before}..env/dev").split()
    assert merges == [promotion(sandbox)["merge_commit"]]


@pytest.fixture
def github(sandbox: Sandbox) -> Any:
    with GitHubStandIn({REPO: sandbox.repo}, tokens={TOKEN: "promoflow-bot"}) as standin:
        yield standin


@pytest.mark.parametrize("method", ["merge", "squash"])
def test_a_github_merge_not_recorded_is_found_by_the_rerun_without_a_second_pull_request(
    sandbox: Sandbox, github: GitHubStandIn, method: str
) -> None:
    configure(sandbox, github_section(github.url, method), "\n  - name: dev\n    branch: env/dev\n")
    sandbox.publish("1.2.0")
    before = sandbox.git("rev-parse", "env/dev").strip()
    crashed = sandbox.cli("promote", "web", "--to", "dev", env={**PEOPLE, "PROMOFLOW_FAILPOINTS": "merge-pushed"})
    assert crashed.returncode == -9, crashed.stderr
    (pull,) = pulls(github)
    assert pull.merged

    rerun = sandbox.cli("promote", "web", "--to", "dev", env=PEOPLE)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    (pull,) = pulls(github)  # still one pull request
    merged = promotion(sandbox)
    assert merged["merge_commit"] == pull.merge_commit_sha
    assert sandbox.git("rev-list", "--first-parent", f"{before}..env/dev").split() == [pull.merge_commit_sha]
    assert_settled(sandbox, merged)


def test_a_pull_request_merged_on_github_while_no_run_waited_is_reused_not_opened_again(
    sandbox: Sandbox, github: GitHubStandIn
) -> None:
    """Killed after opening the pull request; someone merges it on GitHub (and GitHub deletes the branch); the
    re-run finds the merged request and the prepared head in the environment branch, and records that merge."""
    configure(sandbox, github_section(github.url), "\n  - name: dev\n    branch: env/dev\n")
    sandbox.publish("1.2.0")
    crashed = sandbox.cli("promote", "web", "--to", "dev", env={**PEOPLE, "PROMOFLOW_FAILPOINTS": "after-open-request"})
    assert crashed.returncode == -9, crashed.stderr
    (pull,) = pulls(github)
    gh = Github(base_url=github.url, auth=Auth.Token(TOKEN), seconds_between_requests=0, seconds_between_writes=0)
    landed = gh.get_repo(REPO).get_pull(pull.number).merge(merge_method="merge").sha
    sandbox.git("update-ref", "-d", f"refs/heads/{pull.head.ref}")  # "automatically delete head branches"

    rerun = sandbox.cli("promote", "web", "--to", "dev", env=PEOPLE)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert len(pulls(github)) == 1
    merged = promotion(sandbox)
    assert merged["state"] == "succeeded" and merged["merge_commit"] == landed
    assert sandbox.git("rev-parse", "env/dev").strip() == landed
    opened = [s for s in merged["steps"] if s["name"] == "open_request"]
    assert [s["outcome"] for s in opened] == ["interrupted", "succeeded"]  # killed before it was recorded
    assert (opened[1]["detail"]["number"], opened[1]["detail"]["created"]) == (pull.number, False)
