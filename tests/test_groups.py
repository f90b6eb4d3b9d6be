"""Groups from the command line: a bundle promoted into one environment, its history and status, end to end
through the real flows, git repositories and Prefect."""

from __future__ import annotations

from typing import Any

import pytest

from promoflow.sandbox.github import GitHubStandIn
from tests.conftest import Sandbox
from tests.helpers import running_cli, wait_for
from tests.test_git_sources import GROUP, REQUESTER, ConfigRepo, env_files, history, status
from tests.test_github_flow import PEOPLE, REPO, TOKENS, github_section, pulls

# the group of test_git_sources, and an app outside it
SHOP = GROUP.replace(
    "groups:\n",
    "  - name: solo\n    path: apps/solo\n    environments: [dev]\n    git: {url: config-src, directory: solo}\n"
    "groups:\n",
)
UNHEALTHY_WEB = SHOP.replace(
    "        source: {oci_layout: .promoflow/demo/oci/web}\n",
    "        source: {oci_layout: .promoflow/demo/oci/web}\n"
    "    health_checks:\n      - {url: 'http://127.0.0.1:9/down', attempts: 1, timeout_seconds: 1}\n",
)

STAGING_APPROVED = SHOP.replace(
    "  - {name: staging, branch: env/staging}\n", "  - {name: staging, branch: env/staging, approval: {required: 1}}\n"
)


def staging_members(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The members' promotions into staging (not the baseline adopted from what the branch ran)."""
    return [p for p in history(sandbox, "shop", "--env", "staging") if p["kind"] == "promotion"]


def both_waiting(sandbox: Sandbox) -> list[dict[str, Any]]:
    members = staging_members(sandbox)
    return members if len(members) == 2 and all(p["state"] == "awaiting_approval" for p in members) else []


def label_of(sandbox: Sandbox, bundle_id: str) -> str:
    return str(sandbox.db().get_bundle(bundle_id).label)


def one_sentence(result_stderr: str) -> str:
    lines = [line for line in result_stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result_stderr, result_stderr
    return lines[0]


def test_unknown_names_and_environments_say_so_in_one_sentence(sandbox: Sandbox) -> None:
    sandbox.config.write_text(SHOP)
    ConfigRepo(sandbox.base / "config-src").commit("c", {"conf/a.yaml": "a: 1\n", "solo/s.yaml": "s: 1\n"})
    sandbox.publish("1.2.0")
    cases = [
        (["promote", "nope", "--to", "dev"], "error: Unknown app 'nope': promotions.yaml defines conf, web, solo "
         "(and the group shop)."),
        (["history", "nope"], "error: Unknown app 'nope'"),
        (["pipeline", "nope"], "error: Unknown app 'nope'"),
        (["promote", "shop", "--to", "qa"], "error: Unknown environment 'qa'"),
        (["promote", "shop", "--to", "dev", "--release", "nosuch"], "error: Unknown bundle 'nosuch' of group shop"),
        (["promote", "shop", "--to", "staging"], "of group shop has not succeeded in dev yet: promote it there "
         "first (`promoflow promote shop --to dev --release "),
    ]  # fmt: skip
    for args, expected in cases:
        result = sandbox.cli(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert expected in one_sentence(result.stderr), (args, result.stderr)
    assert history(sandbox) == []  # nothing half-done


@pytest.mark.prefect
def test_a_group_is_promoted_one_environment_at_a_time_and_shows_in_history_and_status(
    sandbox: Sandbox, prefect_api: str
) -> None:
    sandbox.config.write_text(SHOP)
    repo = ConfigRepo(sandbox.base / "config-src")
    repo.commit("conf 1, solo 1", {"conf/a.yaml": "a: 1\n", "solo/s.yaml": "s: 1\n"})
    sandbox.publish("1.2.0")
    solo = sandbox.cli("promote", "solo", "--to", "dev", env=REQUESTER)
    assert solo.returncode == 0, solo.stderr

    to_dev = sandbox.cli("promote", "shop", "--to", "dev", env=REQUESTER)
    assert to_dev.returncode == 0, to_dev.stderr
    dev = [p for p in history(sandbox, "shop") if p["kind"] != "baseline"]  # web's adopted 1.1.0 in dev
    assert sorted((p["app"], p["environment"], p["state"]) for p in dev) == [
        ("conf", "dev", "succeeded"),
        ("web", "dev", "succeeded"),
    ]  # only the group's members, not solo
    (bundle_id,) = {p["bundle_id"] for p in dev}
    assert bundle_id and "Group shop runs bundle conf:" in to_dev.stdout and f"({bundle_id}) in dev." in to_dev.stdout
    assert env_files(sandbox, "env/staging", "apps/conf") == {}  # nothing beyond dev

    rows = status(sandbox)
    assert rows[("conf", "dev")]["bundle"]["id"] == bundle_id == rows[("web", "dev")]["bundle"]["id"]
    assert rows[("conf", "staging")]["bundle"] is None and rows[("solo", "dev")]["group"] is None
    assert rows[("solo", "dev")]["bundle"] is None

    to_staging = sandbox.cli("promote", "shop", "--to", "staging", "--release", bundle_id, env=REQUESTER)
    assert to_staging.returncode == 0, to_staging.stderr
    staged = [p for p in history(sandbox, "shop", "--env", "staging") if p["kind"] != "baseline"]
    assert sorted(p["app"] for p in staged) == ["conf", "web"] and {p["bundle_id"] for p in staged} == {bundle_id}
    assert env_files(sandbox, "env/staging", "apps/conf") == {"a.yaml": "a: 1"}
    assert 'newTag: "1.2.0"' in sandbox.git("show", "env/staging:apps/web/kustomization.yaml")
    again = sandbox.cli("promote", "shop", "--to", "staging", "--release", bundle_id)
    assert again.returncode == 0 and "already runs bundle" in again.stdout, again.stderr

    table = sandbox.cli("history", "shop")
    assert table.returncode == 0 and "bundle" in table.stdout and table.stdout.count(bundle_id) == 4, table.stdout
    assert "solo" not in table.stdout
    board = sandbox.cli("status")
    assert board.returncode == 0, board.stderr
    groups = {
        tuple(line.strip().split(maxsplit=2))
        for line in board.stdout[board.stdout.index("groups") :].splitlines()
        if line.startswith("shop ")
    }
    assert groups == {
        ("shop", "dev", f"{bundle_id} ({label_of(sandbox, bundle_id)})"),
        ("shop", "staging", f"{bundle_id} ({label_of(sandbox, bundle_id)})"),
        ("shop", "prod", "-"),
    }, board.stdout


@pytest.mark.prefect
def test_a_failing_member_rolls_back_the_members_already_changed_in_that_environment(
    sandbox: Sandbox, prefect_api: str
) -> None:
    sandbox.config.write_text(SHOP)
    repo = ConfigRepo(sandbox.base / "config-src")
    repo.commit("conf 1", {"conf/a.yaml": "a: 1\n"})
    sandbox.publish("1.2.0")
    first = sandbox.cli("promote", "shop", "--to", "dev", env=REQUESTER)
    assert first.returncode == 0, first.stderr
    (before,) = {p["bundle_id"] for p in history(sandbox, "shop") if p["kind"] == "promotion"}

    repo.commit("conf 2", {"conf/a.yaml": "a: 2\n"})
    sandbox.publish("1.3.0")
    sandbox.config.write_text(UNHEALTHY_WEB)
    failed = sandbox.cli("promote", "shop", "--to", "dev", env=REQUESTER)
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr
    conf_label = next(p for p in history(sandbox, "conf") if p["bundle_id"] == before)["release"]["label"]
    assert "of group shop stopped in dev: web failed" in failed.stderr
    assert f"conf was rolled back to {conf_label}." in failed.stderr
    assert env_files(sandbox, "env/dev", "apps/conf") == {"a.yaml": "a: 1"}
    rows = status(sandbox)
    assert rows[("conf", "dev")]["current_release"]["label"] == conf_label
    assert rows[("conf", "dev")]["bundle"]["id"] == before  # the whole group is back on the earlier bundle


@pytest.mark.prefect
def test_members_go_side_by_side_and_wait_for_their_approvals_at_once(sandbox: Sandbox, prefect_api: str) -> None:
    sandbox.config.write_text(STAGING_APPROVED)
    ConfigRepo(sandbox.base / "config-src").commit("conf 1", {"conf/a.yaml": "a: 1\n"})
    sandbox.publish("1.2.0")
    to_dev = sandbox.cli("promote", "shop", "--to", "dev", env=REQUESTER)
    assert to_dev.returncode == 0, to_dev.stderr
    (bundle_id,) = {p["bundle_id"] for p in history(sandbox, "shop") if p["kind"] == "promotion"}

    with running_cli(sandbox, "promote", "shop", "--to", "staging", "--release", bundle_id) as run:
        # One after another, web would not start before conf's approval: both requests are open and wait at once.
        waiting = wait_for(lambda: both_waiting(sandbox), timeout=180, what="both members to wait for approval at once")
        for promotion in sorted(waiting, key=lambda p: p["app"], reverse=True):  # web's wait is not held yet
            approved = sandbox.cli("approve", str(promotion["id"]), "--as", "uma")
            assert approved.returncode == 0, approved.stderr
        _, stderr = run.communicate(timeout=240)
    assert run.returncode == 0, stderr
    promoted = staging_members(sandbox)
    assert sorted((p["app"], p["state"], len(p["approvals"])) for p in promoted) == [
        ("conf", "succeeded", 1),
        ("web", "succeeded", 1),
    ]
    merges = sandbox.git("log", "--merges", "--format=%s", "env/staging").splitlines()
    assert len(merges) == 2 and {p["request_branch"] for p in promoted} == {
        b for b in sandbox.git("branch", "--list", "promoflow/staging/*").split() if b != "*"
    }


ONE_REQUEST = STAGING_APPROVED.replace("    apps: [conf, web]\n", "    apps: [conf, web]\n    bundle_request: true\n")


@pytest.mark.prefect
def test_a_bundle_request_is_one_branch_one_approval_and_one_merge_per_environment(
    sandbox: Sandbox, prefect_api: str
) -> None:
    sandbox.config.write_text(ONE_REQUEST)
    ConfigRepo(sandbox.base / "config-src").commit("conf 1", {"conf/a.yaml": "a: 1\n"})
    sandbox.publish("1.2.0")
    to_dev = sandbox.cli("promote", "shop", "--to", "dev", env=REQUESTER)
    assert to_dev.returncode == 0, to_dev.stderr
    dev = [p for p in history(sandbox, "shop", "--env", "dev") if p["kind"] == "promotion"]
    (bundle_id,) = {p["bundle_id"] for p in dev}
    (branch,) = {p["request_branch"] for p in dev}
    (merge,) = {p["merge_commit"] for p in dev}
    assert len(dev) == 2 and branch.startswith(f"promoflow/dev/bundle-{bundle_id}-p") and merge
    assert sandbox.git("log", "--merges", "--format=%H %s", "env/dev").splitlines() == [
        f"{merge} Merge request: Promote shop {label_of(sandbox, bundle_id)} to dev"
    ]
    changed = sandbox.git("diff", "--name-only", f"{merge}^1", merge).split()
    assert {path.split("/")[1] for path in changed} == {"conf", "web"}  # both members', one branch, one commit
    assert sandbox.git("rev-list", "--count", f"{merge}^1..{merge}^2").strip() == "1"
    assert [b for b in sandbox.git("branch", "--list", "promoflow/dev/*").split() if b != "*"] == [branch]

    with running_cli(sandbox, "promote", "shop", "--to", "staging", "--release", bundle_id) as run:
        waiting = wait_for(lambda: both_waiting(sandbox), timeout=180, what="both members to wait for approval")
        # One decision, on either member's promotion, decides the one request.
        web = next(p for p in waiting if p["app"] == "web")
        approved = sandbox.cli("approve", str(web["id"]), "--as", "uma")
        assert approved.returncode == 0, approved.stderr
        _, stderr = run.communicate(timeout=240)
    assert run.returncode == 0, stderr
    promoted = staging_members(sandbox)
    assert sorted((p["app"], p["state"]) for p in promoted) == [("conf", "succeeded"), ("web", "succeeded")]
    assert len({p["request_branch"] for p in promoted}) == len({p["merge_commit"] for p in promoted}) == 1
    assert len(sandbox.git("log", "--merges", "--format=%s", "env/staging").splitlines()) == 1
    assert env_files(sandbox, "env/staging", "apps/conf") == {"a.yaml": "a: 1"}
    assert 'newTag: "1.2.0"' in sandbox.git("show", "env/staging:apps/web/kustomization.yaml")


@pytest.mark.prefect
def test_a_bundle_request_is_one_pull_request_merged_once_on_github(sandbox: Sandbox, prefect_api: str) -> None:
    ConfigRepo(sandbox.base / "config-src").commit("conf 1", {"conf/a.yaml": "a: 1\n"})
    sandbox.publish("1.2.0")
    with GitHubStandIn({REPO: sandbox.repo}, tokens=TOKENS) as github:
        sandbox.config.write_text(
            ONE_REQUEST.replace(
                "repository: {url: .promoflow/demo/repo.git}\n",
                f"repository:\n  url: .promoflow/demo/repo.git{github_section(github.url)}",
            )
        )
        result = sandbox.cli("promote", "shop", "--to", "dev", env=PEOPLE)
        assert result.returncode == 0, result.stdout + result.stderr
        (pull,) = pulls(github)  # the members opened it side by side: the second found the first's
        assert pull.merged and pull.title.startswith("Promote shop ")
        assert pull.head.ref.startswith("promoflow/dev/bundle-")
        merge_commit = pull.merge_commit_sha
    dev = [p for p in history(sandbox, "shop", "--env", "dev") if p["kind"] == "promotion"]
    assert sorted((p["app"], p["state"], p["merge_commit"]) for p in dev) == [
        ("conf", "succeeded", merge_commit),
        ("web", "succeeded", merge_commit),
    ]
    assert env_files(sandbox, "env/dev", "apps/conf") == {"a.yaml": "a: 1"}
    assert 'newTag: "1.2.0"' in sandbox.git("show", "env/dev:apps/web/kustomization.yaml")
