"""The github forge against the GitHub stand-in (real PyGithub, real HTTP) on a real bare git repository."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from github import Auth, Github
from github.PullRequest import PullRequest

from promoflow.config import ApprovalPolicy
from promoflow.errors import NotFound, TerminalError, TransientError
from promoflow.forges import github as github_forge
from promoflow.forges.github import GitHubForge, MergeMethod, PullRequestRef
from promoflow.sandbox.github import GitHubStandIn

REPO = "acme/deploy"
TOKEN = "ghp_promoflowSecretToken123"
TOKENS = {TOKEN: "promoflow", "alice-token": "alice", "bob-token": "bob", "carol-token": "carol"}
BRANCH = "promoflow/staging/web/r1"
IDENTITY = {
    "GIT_AUTHOR_NAME": "Dev Eloper",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev Eloper",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}
POLICY = ApprovalPolicy(required=2, approvers=["alice", "bob", "@acme/leads"], sources=["forge"])
TEAMS = {"@acme/leads": {"carol"}}


def git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | IDENTITY
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@dataclass
class World:
    standin: GitHubStandIn
    bare: Path
    work: Path
    forge: GitHubForge

    def push(self, branch: str, name: str, text: str) -> str:
        """Commit one file on ``branch`` in the clone and push it straight into the bare repository."""
        git(self.work, "checkout", "-q", branch)
        (self.work / name).write_text(text)
        git(self.work, "commit", "-qam", f"edit {name}")
        git(self.work, "push", "-q", "origin", branch)
        return git(self.work, "rev-parse", "HEAD")

    def sha(self, rev: str) -> str:
        return git(self.bare, "rev-parse", rev)

    def open(self) -> PullRequestRef:
        return self.forge.open_request(BRANCH, "staging", "Promote web r1 to staging", "Release r1", ["promotion"])

    def pull_as(self, token: str, number: int) -> PullRequest:
        gh = Github(
            base_url=self.standin.url, auth=Auth.Token(token), seconds_between_requests=0, seconds_between_writes=0
        )
        return gh.get_repo(REPO).get_pull(number)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    work, bare = tmp_path / "work", tmp_path / "deploy.git"
    git(tmp_path, "init", "-q", "-b", "staging", str(work))
    (work / "web.yaml").write_text("image: web:1.0\nreplicas: 1\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "staging environment")
    git(work, "checkout", "-qb", BRANCH)
    (work / "web.yaml").write_text("image: web:1.1\nreplicas: 1\n")
    git(work, "commit", "-qam", "Promote web r1 to staging")
    git(tmp_path, "init", "-q", "--bare", "-b", "staging", str(bare))
    git(work, "remote", "add", "origin", str(bare))
    git(work, "push", "-q", "origin", "staging", BRANCH)
    with GitHubStandIn({REPO: bare}, tokens=TOKENS) as standin:
        yield World(standin, bare, work, GitHubForge(REPO, standin.url, TOKEN))


def test_open_request_is_idempotent_and_labelled(world: World) -> None:
    first = world.open()
    again = world.forge.open_request(BRANCH, "staging", "another title", "", ["promotion", "env:staging"])
    assert (first.created, again.created) == (True, False)
    assert first.number == again.number and first.head_sha == again.head_sha == world.sha(BRANCH)
    assert first.url.endswith(f"/{REPO}/pull/{first.number}")
    pull = world.pull_as(TOKEN, first.number)
    assert pull.title == "Promote web r1 to staging" and pull.user.login == "promoflow"
    assert [label.name for label in pull.labels] == ["promotion", "env:staging"]
    gh = Github(base_url=world.standin.url, auth=Auth.Token(TOKEN))
    assert gh.get_repo(REPO).get_pulls(state="all").totalCount == 1

    world.forge.comment(first.number, "Waiting for approval.")
    assert [c.body for c in pull.get_issue_comments()] == ["Waiting for approval."]


def test_approvals_count_on_the_current_head_from_allowed_reviewers(world: World) -> None:
    ref = world.open()
    world.pull_as("alice-token", ref.number).create_review(event="APPROVE")  # the token says who: alice
    world.standin.review(REPO, ref.number, "bob", "APPROVE")  # bob requested the promotion
    world.standin.review(REPO, ref.number, "mallory", "APPROVE")
    world.standin.review(REPO, ref.number, "carol", "COMMENT", body="looking")

    verdict = world.forge.evaluate(ref.number, POLICY, requester="bob", team_members=TEAMS)
    assert (verdict.outcome, verdict.approvers, verdict.missing, verdict.head_sha) == (
        "waiting",
        ("alice",),
        1,
        ref.head_sha,
    )
    reasons = {(r.approver, r.state): (r.counted, r.reason) for r in verdict.reviews}
    assert reasons[("alice", "APPROVED")] == (True, "counted")
    assert reasons[("bob", "APPROVED")] == (False, "bob requested this promotion and cannot approve it")
    assert reasons[("mallory", "APPROVED")] == (False, "mallory is not an allowed approver (alice, bob, @acme/leads)")
    assert reasons[("carol", "COMMENTED")] == (False, "commented: not a decision")

    world.standin.review(REPO, ref.number, "carol", "APPROVE")  # a member of @acme/leads
    verdict = world.forge.evaluate(ref.number, POLICY, requester="bob", team_members=TEAMS)
    assert (verdict.outcome, verdict.approvers, verdict.missing) == ("approved", ("alice", "carol"), 0)

    # A push straight into the repository: both approvals are now on an older head.
    new_head = world.push(BRANCH, "web.yaml", "image: web:1.1\nreplicas: 2\n")
    verdict = world.forge.evaluate(ref.number, POLICY, requester="bob", team_members=TEAMS)
    assert (verdict.outcome, verdict.approvers, verdict.missing, verdict.head_sha) == ("waiting", (), 2, new_head)
    stale = [r for r in verdict.reviews if r.state == "APPROVED" and r.approver in ("alice", "carol")]
    assert all(not r.counted and (r.reason or "").startswith("stale: approved ") for r in stale)

    world.standin.review(REPO, ref.number, "alice", "APPROVE")
    verdict = world.forge.evaluate(ref.number, POLICY, requester="bob", team_members=TEAMS)
    alice = [r for r in verdict.reviews if r.approver == "alice"]
    assert [(r.counted, r.commit_id) for r in alice] == [(False, ref.head_sha), (True, new_head)]
    assert alice[0].reason == f"superseded by alice's later review {alice[1].review_id}"
    assert (verdict.outcome, verdict.approvers) == ("waiting", ("alice",))

    # `reviews` lists them all, unjudged.
    listed = world.forge.reviews(ref.number)
    assert [(r.approver, r.state, r.counted) for r in listed][-1] == ("alice", "APPROVED", None)
    assert len(listed) == len(verdict.reviews) and all(r.submitted_at is not None for r in listed)


def test_a_change_request_rejects_until_dismissed(world: World) -> None:
    ref = world.open()
    policy = ApprovalPolicy(required=1, sources=["forge"])
    blocking = world.pull_as("carol-token", ref.number).create_review(event="REQUEST_CHANGES", body="wrong replicas")
    world.standin.review(REPO, ref.number, "carol", "COMMENT", body="still wrong")  # a comment changes nothing
    world.standin.review(REPO, ref.number, "alice", "APPROVE")
    verdict = world.forge.evaluate(ref.number, policy, requester="dave")
    assert (verdict.outcome, verdict.rejected_by) == ("rejected", "carol")

    world.pull_as(TOKEN, ref.number).get_review(blocking.id).dismiss("fixed")
    verdict = world.forge.evaluate(ref.number, policy, requester="dave")
    assert (verdict.outcome, verdict.approvers, verdict.rejected_by) == ("approved", ("alice",), None)
    carol = next(r for r in verdict.reviews if r.review_id == blocking.id)
    assert (carol.state, carol.counted, carol.reason) == ("DISMISSED", False, "dismissed")


def test_gates_follow_required_statuses_and_check_runs(world: World) -> None:
    ref = world.open()
    sha, required = ref.head_sha, ["ci/build", "smoke"]
    gates = world.forge.gates(sha, required)
    assert gates.outcome == "pending" and [c.state for c in gates.contexts] == ["missing", "missing"]

    world.standin.set_status(REPO, sha, "failure", context="ci/build", description="compile error")
    gates = world.forge.gates(sha, required)
    assert gates.outcome == "failed"
    assert (gates.contexts[0].state, gates.contexts[0].source, gates.contexts[0].description) == (
        "failure",
        "status",
        "compile error",
    )

    world.standin.set_status(REPO, sha, "success", context="ci/build")
    world.standin.add_check_run(REPO, sha, "smoke", status="in_progress", conclusion=None)
    gates = world.forge.gates(sha, required)
    assert gates.outcome == "pending" and [c.state for c in gates.contexts] == ["success", "pending"]

    world.standin.add_check_run(REPO, sha, "smoke", conclusion="success")
    gates = world.forge.gates(sha, required)
    assert gates.outcome == "passed" and [(c.state, c.source) for c in gates.contexts] == [
        ("success", "status"),
        ("success", "check_run"),
    ]
    assert world.forge.gates(sha, []).outcome == "passed"

    world.forge.set_commit_status(sha, "pending", "promoflow/staging", "waiting for approvals", "http://ui/run/1")
    status = world.forge.gates(sha, ["promoflow/staging"]).contexts[0]
    assert (status.state, status.description, status.target_url) == (
        "pending",
        "waiting for approvals",
        "http://ui/run/1",
    )
    world.forge.set_commit_status(sha, "success", "promoflow/staging", "x" * 200)
    status = world.forge.gates(sha, ["promoflow/staging"]).contexts[0]
    assert (status.state, status.description, status.target_url) == ("success", "x" * 140, None)


@pytest.mark.parametrize("method", ["merge", "squash", "rebase"])
def test_each_merge_method_moves_the_branch_once(world: World, method: MergeMethod) -> None:
    ref = world.open()
    base = world.sha("staging")
    merged = world.forge.merge(ref.number, method, ref.head_sha, "Merge promotion p-1\n\nApproved-by: alice\n")
    assert merged == world.sha("staging") != base
    assert git(world.bare, "show", f"{merged}:web.yaml") == "image: web:1.1\nreplicas: 1"
    parents = git(world.bare, "rev-list", "--parents", "-n1", merged).split()[1:]
    if method == "merge":
        assert parents == [base, ref.head_sha]
        assert git(world.bare, "log", "-1", "--format=%s%n%b", merged) == "Merge promotion p-1\nApproved-by: alice"
    elif method == "squash":
        assert parents == [base]
        assert git(world.bare, "log", "-1", "--format=%s", merged) == "Merge promotion p-1"
    else:
        assert parents == [base] and merged != ref.head_sha
    # A re-run after a crash finds the merge instead of merging again.
    assert world.forge.merge(ref.number, method, ref.head_sha, "again") == merged
    assert world.sha("staging") == merged


def test_merge_is_guarded_by_the_approved_head(world: World) -> None:
    ref = world.open()
    world.push(BRANCH, "web.yaml", "image: web:1.2\nreplicas: 1\n")
    with pytest.raises(TerminalError, match=r"head moved.*re-run to re-check approvals"):
        world.forge.merge(ref.number, "merge", ref.head_sha, "Merge")
    assert world.sha("staging") != world.sha(BRANCH) and not world.pull_as(TOKEN, ref.number).is_merged()


def test_a_conflicting_request_is_not_mergeable(world: World) -> None:
    ref = world.open()
    world.push("staging", "web.yaml", "image: web:0.9-hotfix\nreplicas: 1\n")
    with pytest.raises(TerminalError, match=r"#1 in acme/deploy is not mergeable: Pull Request is not mergeable"):
        world.forge.merge(ref.number, "squash", ref.head_sha, "Merge")


def test_a_502_is_retried_and_a_secondary_rate_limit_waits_for_retry_after(world: World) -> None:
    limit = world.standin.inject(r"/pulls$", 403, headers={"Retry-After": "1"}, method="POST")
    started = time.monotonic()
    ref = world.open()
    assert time.monotonic() - started >= 1.0 and limit.hits == 1

    fault = world.standin.inject(r"/pulls/\d+$", 502, count=1)
    world.standin.review(REPO, ref.number, "alice", "APPROVE")
    verdict = world.forge.evaluate(ref.number, ApprovalPolicy(required=1, sources=["forge"]), requester="bob")
    assert verdict.outcome == "approved" and (fault.hits, fault.remaining) == (1, 0)


def test_server_errors_that_persist_are_transient(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(github_forge, "RETRY_BACKOFF_FACTOR", 0)  # the real backoff waits 15 s in all
    forge = GitHubForge(REPO, world.standin.url, TOKEN)
    fault = world.standin.inject(r"/pulls", 503, count=10)
    with pytest.raises(TransientError, match="kept failing after retries"):
        forge.open_request(BRANCH, "staging", "t", "b", [])
    assert fault.hits == github_forge.RETRY_TOTAL + 1


def test_refusals_are_terminal_and_never_show_the_token(world: World) -> None:
    world.standin.inject(r"/pulls", 401, body={"message": "Bad credentials", "documentation_url": "x"})
    with pytest.raises(TerminalError, match="rejected the token") as bad:
        world.open()
    world.standin.inject(r"/pulls", 403, body={"message": "Resource not accessible by integration"})
    with pytest.raises(TerminalError, match=r"refused it .403 Resource not accessible") as forbidden:
        world.open()
    assert not isinstance(forbidden.value, TransientError)
    for error in (bad.value, forbidden.value):
        assert TOKEN not in str(error) and "pull requests: write" in str(error)

    with pytest.raises(NotFound, match=r"acme/deploy\) answered 404"):
        world.forge.merge(99, "merge", "0" * 40, "Merge")
    with pytest.raises(NotFound, match=r"acme/elsewhere"):
        GitHubForge("acme/elsewhere", world.standin.url, TOKEN).reviews(1)
    with pytest.raises(TerminalError, match="OWNER/NAME"):
        GitHubForge("deploy", None, TOKEN)


def test_logins_are_compared_as_github_does_without_case(world: World) -> None:
    """A reviewer is the same person whatever case promotions.yaml or the requester's name uses."""
    ref = world.open()
    policy = ApprovalPolicy(required=2, approvers=["Alice", "BOB", "@acme/leads"], sources=["forge"])
    world.standin.review(REPO, ref.number, "alice", "APPROVE")  # allowed as "Alice"
    world.standin.review(REPO, ref.number, "carol", "APPROVE")  # requested it, as "Carol "
    verdict = world.forge.evaluate(ref.number, policy, requester="Carol ", team_members={"@acme/leads": {"Carol"}})
    reasons = {r.approver: (r.counted, r.reason) for r in verdict.reviews}
    assert reasons["alice"] == (True, "counted")
    assert reasons["carol"] == (False, "carol requested this promotion and cannot approve it")
    assert (verdict.outcome, verdict.approvers, verdict.missing) == ("waiting", ("alice",), 1)
