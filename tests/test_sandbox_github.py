"""The GitHub stand-in, driven by the real PyGithub client, on a real bare git repository.

When each test ends, every JSON body the stand-in sent is validated against GitHub's published schemas.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from github import Auth, Github, GithubException, GithubRetry
from github.PullRequest import PullRequest
from github.Repository import Repository

from promoflow.sandbox.github import GitHubError, GitHubStandIn

ROOT = Path(__file__).resolve().parent.parent
REPO = "acme/deploy"
TOKENS = {"alice-token": "alice", "bob-token": "bob"}
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Dev Eloper",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev Eloper",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}

# GitHub's component schemas, from the shared/ folder beside the checkout (see its data/github-rest/SOURCE.md).
SCHEMAS_FILE = ROOT.parent / "shared" / "data" / "github-rest" / "schemas.json"
DEFS = json.loads(SCHEMAS_FILE.read_text())["$defs"]
# Shapes that are inline in GitHub's OpenAPI description (or not among the extracted components).
CHECK_RUN_LIST = {
    "type": "object",
    "required": ["total_count", "check_runs"],
    "properties": {
        "total_count": {"type": "integer"},
        "check_runs": {"type": "array", "items": {"$ref": "#/$defs/check-run"}},
    },
}
ERROR = {  # basic-error, validation-error and validation-error-simple
    "type": "object",
    "required": ["message", "documentation_url"],
    "properties": {
        "message": {"type": "string"},
        "documentation_url": {"type": "string"},
        "status": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "anyOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "required": ["code"],
                        "properties": {
                            "resource": {"type": "string"},
                            "field": {"type": "string"},
                            "message": {"type": "string"},
                            "code": {"type": "string"},
                        },
                    },
                ]
            },
        },
    },
}
GIT_REF = {"$ref": "#/$defs/git-ref"}
R = r"/repos/[^/]+/[^/]+"
# (methods, path after /api/v3, schema): a name, [a name] for a list, or an inline schema. First match wins.
EXPECTED: list[tuple[str, str, Any]] = [
    ("GET", r"/user", "simple-user"),
    ("GET", R, "full-repository"),
    ("GET", R + r"/branches/.+", "branch-with-protection"),
    ("GET", R + r"/git/ref/.+", "git-ref"),
    ("POST", R + r"/git/refs", "git-ref"),
    ("PATCH", R + r"/git/refs/.+", "git-ref"),
    ("GET", R + r"/git/matching-refs/.*", ["git-ref"]),
    ("GET", R + r"/git/refs(/.+)?", {"anyOf": [GIT_REF, {"type": "array", "items": GIT_REF}]}),
    ("GET", R + r"/pulls", ["pull-request-simple"]),
    ("POST", R + r"/pulls", "pull-request"),
    ("GET PATCH", R + r"/pulls/\d+", "pull-request"),
    ("GET", R + r"/pulls/\d+/reviews", ["pull-request-review"]),
    ("POST", R + r"/pulls/\d+/reviews", "pull-request-review"),
    ("GET", R + r"/pulls/\d+/reviews/\d+", "pull-request-review"),
    ("PUT", R + r"/pulls/\d+/reviews/\d+/dismissals", "pull-request-review"),
    ("PUT", R + r"/pulls/\d+/merge", "pull-request-merge-result"),
    ("GET", R + r"/commits/.+/status", "combined-commit-status"),
    ("GET", R + r"/commits/.+/check-runs", CHECK_RUN_LIST),
    ("GET", R + r"/commits/.+", "commit"),
    ("POST", R + r"/statuses/\w+", "status"),
    ("GET", R + r"/statuses/\w+", ["status"]),
    ("POST", R + r"/check-runs", "check-run"),
    ("GET PATCH", R + r"/check-runs/\d+", "check-run"),
    ("GET POST DELETE", R + r"/issues/\d+/labels(/.+)?", ["label"]),
    ("POST", R + r"/issues/\d+/comments", "issue-comment"),
    ("GET", R + r"/issues/\d+/comments", ["issue-comment"]),
]


def schema_for(method: str, path: str, status: int) -> dict[str, Any]:
    if status >= 400:
        return ERROR
    for methods, pattern, schema in EXPECTED:
        if method in methods.split() and re.fullmatch(pattern, path):
            if isinstance(schema, str):
                return {"$ref": f"#/$defs/{schema}"}
            if isinstance(schema, list):
                return {"type": "array", "items": {"$ref": f"#/$defs/{schema[0]}"}}
            return dict(schema)
    raise AssertionError(f"no schema known for {method} {path}")


def validate(body: Any, schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(
        {**schema, "$defs": DEFS}, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors[:5])


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_IDENTITY}, check=True, capture_output=True, text=True
    ).stdout.strip()


@dataclass
class World:
    """The stand-in for ``acme/deploy``, its bare repository, and a clone playing another git client."""

    standin: GitHubStandIn
    bare: Path
    work: Path

    def client(self, token: str = "promoflow-token", **options: Any) -> Github:
        return Github(
            base_url=self.standin.url,
            auth=Auth.Token(token),
            seconds_between_requests=0,
            seconds_between_writes=0,
            **options,
        )

    @property
    def repo(self) -> Repository:
        return self.client().get_repo(REPO)

    def push(self, branch: str, files: dict[str, str], message: str, start: str = "main") -> str:
        """Commit ``files`` on ``branch`` (cut from ``start`` if new) and push it into the bare repository."""
        git(self.work, "fetch", "-q", "origin")
        exists = git(self.work, "ls-remote", "origin", f"refs/heads/{branch}")
        git(self.work, "checkout", "-q", "-B", branch, f"origin/{branch if exists else start}")
        for name, text in files.items():
            (self.work / name).parent.mkdir(parents=True, exist_ok=True)
            (self.work / name).write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", message)
        git(self.work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        return git(self.work, "rev-parse", "HEAD")

    def sha(self, rev: str) -> str:
        return git(self.bare, "rev-parse", rev)

    def open(self, branch: str, files: dict[str, str] | None = None, title: str = "Promote web") -> PullRequest:
        self.push(branch, files or {f"{branch}.txt": branch}, f"change on {branch}")
        return self.repo.create_pull(base="main", head=branch, title=title, body="Release r1")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    work, bare = tmp_path / "work", tmp_path / "deploy.git"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "clusters/dev").mkdir(parents=True)
    (work / "clusters/dev/web.yaml").write_text("image: web:1.0\nreplicas: 1\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "Initial environment")
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(work, "remote", "add", "origin", str(bare))
    git(work, "push", "-q", "origin", "main")
    with GitHubStandIn({REPO: bare}, tokens=TOKENS) as standin:
        yield World(standin, bare, work)
    web = standin.url.removesuffix("/api/v3")
    for exchange in standin.exchanges:
        schema = schema_for(exchange.method, exchange.path, exchange.status)
        try:
            validate(exchange.body, schema)
            # The schemas' "uri" format is not checked by jsonschema without extras: links must stay on the
            # stand-in (PyGithub asserts that for the ones it follows).
            for key, url in urls(exchange.body):
                assert url == web or url.startswith(web + "/"), f"{key}: {url}"
        except AssertionError as error:
            raise AssertionError(f"{exchange.method} {exchange.path} -> {exchange.status}: {error}") from None


def urls(body: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """(key, value) of every http link in a body, but links callers gave and GitHub's documentation links."""
    if isinstance(body, dict):
        for name, value in body.items():
            yield from urls(value, name)
    elif isinstance(body, list):
        for item in body:
            yield from urls(item, key)
    elif (
        isinstance(body, str)
        and body.startswith("http")
        and key not in ("target_url", "details_url", "documentation_url")
    ):
        yield key, body


def test_repository_branches_and_refs(world: World) -> None:
    gh = world.client()
    assert gh.get_user().login == "promoflow"
    repo = gh.get_repo(REPO)
    assert (repo.full_name, repo.default_branch, repo.id) == (REPO, "main", gh.get_repo(REPO).id)
    assert repo.clone_url == world.bare.resolve().as_uri()  # clients can clone and push there
    main = world.sha("main")
    branch = repo.get_branch("main")
    assert branch.commit.sha == main
    assert [f.filename for f in branch.commit.files] == ["clusters/dev/web.yaml"]

    ref = repo.create_git_ref("refs/heads/promoflow/dev/web/r1", main)
    assert (ref.ref, ref.object.sha, ref.object.type) == ("refs/heads/promoflow/dev/web/r1", main, "commit")
    assert world.sha("refs/heads/promoflow/dev/web/r1") == main  # really in the bare repository
    assert repo.get_git_ref("heads/promoflow/dev/web/r1").object.sha == main
    assert repo.get_branch("promoflow/dev/web/r1").commit.sha == main

    with pytest.raises(GithubException) as exists:
        repo.create_git_ref("refs/heads/promoflow/dev/web/r1", main)
    assert exists.value.status == 422
    with pytest.raises(GithubException) as missing:
        repo.get_branch("nope")
    assert missing.value.status == 404
    with pytest.raises(GithubException) as unknown:
        gh.get_repo("acme/unknown")
    assert unknown.value.status == 404


def test_refs_move_and_go_like_on_github(world: World) -> None:
    repo = world.repo
    base = world.sha("main")
    ahead = world.push("feature", {"a.txt": "a\n"}, "ahead")
    ref = repo.create_git_ref("refs/heads/promoflow/dev/web/r1", base)
    ref.edit(ahead)  # a fast-forward
    assert world.sha("promoflow/dev/web/r1") == ahead
    with pytest.raises(GithubException) as backwards:
        ref.edit(base)
    assert backwards.value.status == 422
    ref.edit(base, force=True)
    assert world.sha("promoflow/dev/web/r1") == base
    assert [r.ref for r in repo.get_git_matching_refs("heads/promoflow")] == ["refs/heads/promoflow/dev/web/r1"]
    assert [r.ref for r in repo.get_git_refs()] == [
        "refs/heads/feature",
        "refs/heads/main",
        "refs/heads/promoflow/dev/web/r1",
    ]
    ref.delete()
    assert "promoflow/dev/web/r1" not in git(world.bare, "branch", "--list")
    with pytest.raises(GithubException) as gone:
        ref.delete()
    assert gone.value.status == 422


def test_pull_requests_close_reopen_and_change_base(world: World) -> None:
    pull = world.open("promoflow/dev/web/r1")
    git(world.bare, "branch", "staging", "main")
    pull.edit(state="closed")
    assert world.repo.get_pulls(state="open").totalCount == 0
    assert world.repo.get_pulls(state="closed").totalCount == 1
    pull.edit(state="open", base="staging", title="Promote web to staging")
    pull = world.repo.get_pull(pull.number)
    assert (pull.state, pull.base.ref, pull.title, pull.closed_at) == (
        "open",
        "staging",
        "Promote web to staging",
        None,
    )


def test_concurrent_clients_get_distinct_pull_requests(world: World) -> None:
    from concurrent.futures import ThreadPoolExecutor

    branches = [f"promoflow/dev/app{index}/r1" for index in range(8)]
    for branch in branches:
        world.push(branch, {f"{branch}.txt": "x\n"}, branch)
    repo = world.repo
    with ThreadPoolExecutor(max_workers=8) as pool:
        numbers = list(pool.map(lambda b: repo.create_pull(base="main", head=b, title=b).number, branches))
    assert sorted(numbers) == list(range(1, 9))
    assert {p.head.ref: p.number for p in repo.get_pulls()} == dict(zip(branches, numbers, strict=True))


def test_pull_requests_are_found_before_opened_and_paginate(world: World) -> None:
    repo = world.repo
    for index in range(5):
        branch = f"promoflow/dev/web/r{index}"
        world.push(branch, {"clusters/dev/web.yaml": f"image: web:2.{index}\nreplicas: 1\n"}, f"Promote r{index}")
        for _attempt in range(2):  # a re-run finds the pull request instead of opening a second one
            found = list(repo.get_pulls(state="open", head=f"acme:{branch}", base="main"))
            pull = found[0] if found else repo.create_pull(base="main", head=branch, title=f"Promote r{index}")
        assert pull.number == index + 1
        assert pull.head.sha == world.sha(branch) and pull.base.sha == world.sha("main")
        assert (pull.commits, pull.changed_files, pull.additions, pull.deletions) == (1, 1, 1, 1)
        assert (pull.mergeable, pull.mergeable_state, pull.user.login) == (True, "clean", "promoflow")

    with pytest.raises(GithubException) as duplicate:
        repo.create_pull(base="main", head="promoflow/dev/web/r0", title="again")
    assert duplicate.value.status == 422
    assert "already exists" in duplicate.value.data["errors"][0]["message"]
    git(world.bare, "branch", "empty", "main")
    with pytest.raises(GithubException) as empty:
        repo.create_pull(base="main", head="empty", title="nothing")
    assert "No commits between" in empty.value.data["errors"][0]["message"]
    git(world.work, "checkout", "-q", "--orphan", "unrelated")
    git(world.work, "commit", "-q", "-m", "Unrelated history")
    git(world.work, "push", "-q", "origin", "HEAD:refs/heads/unrelated")
    with pytest.raises(GithubException) as unrelated:
        repo.create_pull(base="main", head="unrelated", title="unrelated")
    assert "no history in common" in unrelated.value.data["errors"][0]["message"]

    paged = world.client(per_page=2).get_repo(REPO).get_pulls(state="all")
    assert paged.totalCount == 5
    assert [p.number for p in paged] == [5, 4, 3, 2, 1]
    assert [p.number for p in repo.get_pulls(sort="created", direction="asc")] == [1, 2, 3, 4, 5]
    assert repo.get_pulls(head="promoflow/dev/web/r0").totalCount == 5  # GitHub ignores a head without OWNER:
    assert repo.get_pulls(base="other").totalCount == 0

    response = httpx.get(
        f"{world.standin.url}/repos/{REPO}/pulls",
        params={"per_page": 2, "page": 2},
        headers={"Authorization": "token x"},
    )
    links = {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', response.headers["link"])}
    assert {rel: url.rsplit("page=", 1)[1] for rel, url in links.items()} == {
        "next": "3",
        "last": "3",
        "first": "1",
        "prev": "1",
    }
    assert all(url.startswith(f"{world.standin.url}/repos/{REPO}/pulls?") for url in links.values())


def test_reviews_by_several_people_go_stale_when_the_head_moves(world: World) -> None:
    pull = world.open("promoflow/dev/web/r1")
    first_head = pull.head.sha
    alice = world.client("alice-token").get_repo(REPO).get_pull(pull.number)
    assert alice.create_review(event="APPROVE").state == "APPROVED"
    # Another person through plain HTTP: X-Standin-User names the caller.
    response = httpx.post(
        f"{world.standin.url}/repos/{REPO}/pulls/{pull.number}/reviews",
        json={"event": "APPROVE", "body": "ship it"},
        headers={"Authorization": "token any", "X-Standin-User": "bob"},
    )
    assert response.status_code == 200 and response.json()["user"]["login"] == "bob"
    reviews = list(pull.get_reviews())
    assert [(r.user.login, r.state, r.commit_id) for r in reviews] == [
        ("alice", "APPROVED", first_head),
        ("bob", "APPROVED", first_head),
    ]

    with pytest.raises(GithubException) as own:
        pull.create_review(event="APPROVE")  # the requester cannot approve their own pull request
    assert own.value.status == 422

    # Someone pushes to the head branch: head.sha follows, the earlier approvals are on an older head.
    new_head = world.push("promoflow/dev/web/r1", {"clusters/dev/web.yaml": "image: web:1.1\n"}, "Fix tag")
    pull = world.repo.get_pull(pull.number)
    assert pull.head.sha == new_head != first_head
    assert all(r.commit_id == first_head for r in pull.get_reviews())
    fresh = world.standin.review(REPO, pull.number, "carol", "APPROVE")  # the Python helper
    validate(fresh, schema_for("POST", f"/repos/{REPO}/pulls/1/reviews", 200))
    assert (fresh["user"]["login"], fresh["commit_id"]) == ("carol", new_head)
    with pytest.raises(GitHubError) as invalid:
        world.standin.review(REPO, pull.number, "carol", "LGTM")
    assert invalid.value.status == 422


def test_changes_requested_then_dismissed(world: World) -> None:
    pull = world.open("promoflow/dev/web/r1")
    bob = world.client("bob-token").get_repo(REPO).get_pull(pull.number)
    with pytest.raises(GithubException) as no_body:
        bob.create_review(event="REQUEST_CHANGES")
    assert no_body.value.status == 422
    blocking = bob.create_review(event="REQUEST_CHANGES", body="wrong replica count")
    comment = bob.create_review(event="COMMENT", body="just a note")
    assert [r.state for r in pull.get_reviews()] == ["CHANGES_REQUESTED", "COMMENTED"]

    blocking.dismiss("fixed in a later commit")
    assert blocking.state == "DISMISSED"
    assert [r.state for r in pull.get_reviews()] == ["DISMISSED", "COMMENTED"]
    for review in (blocking, comment):  # only approvals and change requests can be dismissed
        with pytest.raises(GithubException) as refused:
            review.dismiss("again")
        assert refused.value.status == 422
    assert pull.get_review(blocking.id).state == "DISMISSED"


def test_statuses_combined_status_and_check_runs(world: World) -> None:
    pull = world.open("promoflow/dev/web/r1")
    repo = world.repo
    commit = repo.get_commit(pull.head.sha)
    assert commit.commit.message == "change on promoflow/dev/web/r1"
    assert commit.commit.author.name == "Dev Eloper" and [p.sha for p in commit.parents] == [world.sha("main")]
    assert combined_state(commit) == ("pending", 0)

    commit.create_status("pending", context="ci/build", description="building")
    commit.create_status("success", target_url="http://ci.example/1", context="ci/build")
    lint = commit.create_status("failure", context="ci/lint")
    assert (lint.state, lint.context, lint.creator.login) == ("failure", "ci/lint", "promoflow")
    assert combined_state(commit) == ("failure", 2)
    assert [(s.context, s.state) for s in commit.get_statuses()] == [
        ("ci/lint", "failure"),
        ("ci/build", "success"),
        ("ci/build", "pending"),
    ]
    status = world.standin.set_status(REPO, pull.head.sha, "success", context="ci/lint")
    validate(status, schema_for("POST", f"/repos/{REPO}/statuses/{pull.head.sha}", 201))
    assert combined_state(repo.get_commit("promoflow/dev/web/r1")) == ("success", 2)  # a branch name works too

    created = repo.create_check_run(name="verify", head_sha=pull.head.sha, status="in_progress")
    assert (created.status, created.conclusion, created.app.slug) == ("in_progress", None, "github-standin")
    created.edit(conclusion="success", output={"title": "verify", "summary": "all good"})
    assert (created.status, created.conclusion, created.output.summary) == ("completed", "success", "all good")
    world.standin.add_check_run(REPO, pull.head.sha, "smoke", conclusion="failure")
    helper = world.standin.add_check_run(REPO, pull.head.sha, "smoke", conclusion="success", summary="rerun")
    validate(helper, schema_for("POST", f"/repos/{REPO}/check-runs", 201))

    runs = commit.get_check_runs()
    assert runs.totalCount == 2  # the latest run of each name
    assert {(r.name, r.conclusion) for r in runs} == {("verify", "success"), ("smoke", "success")}
    assert [p.number for p in next(iter(runs)).pull_requests] == [pull.number]
    assert commit.get_check_runs(filter="all").totalCount == 3
    assert [r.conclusion for r in commit.get_check_runs(check_name="smoke", filter="all")] == ["success", "failure"]
    assert repo.get_check_run(created.id).output.title == "verify"
    with pytest.raises(GithubException) as bad:
        repo.create_check_run(name="x", head_sha=pull.head.sha, status="completed")  # needs a conclusion
    assert bad.value.status == 422


def combined_state(commit: Any) -> tuple[str, int]:
    combined = commit.get_combined_status()
    return combined.state, combined.total_count


def test_labels_and_comments(world: World) -> None:
    pull = world.open("promoflow/dev/web/r1")
    pull.add_to_labels("promotion", "env:dev")
    pull.add_to_labels("promotion")
    assert [label.name for label in pull.get_labels()] == ["promotion", "env:dev"]
    pull.remove_from_labels("env:dev")
    assert [label.name for label in world.repo.get_pull(pull.number).labels] == ["promotion"]

    pull.create_issue_comment("Promotion p-1 waits for approval.")
    alice = world.client("alice-token").get_repo(REPO).get_pull(pull.number)
    assert alice.create_issue_comment("Looks good.").user.login == "alice"
    assert [(c.user.login, c.body) for c in pull.get_issue_comments()] == [
        ("promoflow", "Promotion p-1 waits for approval."),
        ("alice", "Looks good."),
    ]
    assert world.repo.get_pull(pull.number).comments == 2


@pytest.mark.parametrize("method", ["merge", "squash", "rebase"])
def test_each_merge_method_moves_the_real_branch(world: World, method: str) -> None:
    branch = "promoflow/dev/web/r1"
    world.push(branch, {"clusters/dev/web.yaml": "image: web:1.1\nreplicas: 1\n"}, "Promote web 1.1")
    head = world.push(branch, {"clusters/dev/notes.txt": "r1\n"}, "Add notes")
    base = world.push("main", {"README.md": "environments\n"}, "Unrelated change on main")
    pull = world.repo.create_pull(base="main", head=branch, title="Promote web 1.1", body="Release r1")
    assert not pull.is_merged()

    result = pull.merge(merge_method=method, sha=head, commit_title=f"{method}: Promote web 1.1")
    tip = world.sha("main")
    assert (result.merged, result.sha) == (True, tip)
    parents = git(world.bare, "rev-list", "--parents", "-n1", tip).split()[1:]
    tree = git(world.bare, "ls-tree", "-r", "--name-only", tip).split()
    assert tree == ["README.md", "clusters/dev/notes.txt", "clusters/dev/web.yaml"]
    if method == "merge":
        assert parents == [base, head]
        assert git(world.bare, "log", "-1", "--format=%s|%an|%cn", tip) == "merge: Promote web 1.1|promoflow|GitHub"
    elif method == "squash":
        assert parents == [base]
        assert git(world.bare, "log", "-1", "--format=%s%n%b", tip) == "squash: Promote web 1.1\nRelease r1"
    else:  # replayed commits: new shas on top of main, original authors, GitHub as committer
        assert git(world.bare, "rev-parse", f"{tip}~2") == base
        log = git(world.bare, "log", "-2", "--format=%s|%an|%cn", tip).splitlines()
        assert log == ["Add notes|Dev Eloper|GitHub", "Promote web 1.1|Dev Eloper|GitHub"]
        assert tip != head

    pull = world.repo.get_pull(pull.number)
    assert pull.is_merged() and pull.merged and pull.state == "closed"
    assert (pull.merged_by.login, pull.merge_commit_sha, pull.head.sha) == ("promoflow", tip, head)
    assert world.repo.get_pulls(state="closed", head=f"acme:{branch}").totalCount == 1
    with pytest.raises(GithubException) as again:
        pull.merge(merge_method=method)
    assert again.value.status == 405


def test_merge_refuses_conflicts_405_and_a_moved_head_409(world: World) -> None:
    conflicting = world.open("conflict", {"clusters/dev/web.yaml": "image: web:2.0\n"})
    world.push("main", {"clusters/dev/web.yaml": "image: web:1.5\n"}, "Hotfix on main")
    conflicting = world.repo.get_pull(conflicting.number)
    assert (conflicting.mergeable, conflicting.mergeable_state) == (False, "dirty")
    main = world.sha("main")
    for method in ("merge", "squash", "rebase"):
        with pytest.raises(GithubException) as refused:
            conflicting.merge(merge_method=method)
        assert refused.value.status == 405
    assert world.sha("main") == main

    pull = world.open("promoflow/dev/web/r1")
    seen = pull.head.sha
    world.push("promoflow/dev/web/r1", {"late.txt": "late\n"}, "A late push")
    with pytest.raises(GithubException) as moved:
        pull.merge(sha=seen)  # the head approved is no longer the head
    assert moved.value.status == 409
    assert world.sha("main") == main and not pull.is_merged()
    assert pull.merge(sha=world.sha("promoflow/dev/web/r1")).merged


def test_server_errors_are_retried_with_github_retry(world: World) -> None:
    pull = world.open("promoflow/dev/web/r1")
    fault = world.standin.inject(r"/pulls/\d+$", 502, count=2)
    retrying = world.client(retry=GithubRetry(total=3, backoff_factor=0)).get_repo(REPO)
    assert retrying.get_pull(pull.number).number == pull.number
    assert (fault.hits, fault.remaining) == (2, 0)

    world.standin.inject(r"/pulls/\d+$", 502, method="GET")
    with pytest.raises(GithubException) as failed:
        world.client(retry=None).get_repo(REPO).get_pull(pull.number)
    assert failed.value.status == 502


def test_secondary_rate_limit_waits_for_retry_after(world: World) -> None:
    world.push("promoflow/dev/web/r1", {"a.txt": "a\n"}, "change")
    fault = world.standin.inject(r"/pulls$", 403, headers={"Retry-After": "1"}, method="POST")
    repo = world.client(retry=GithubRetry(total=3)).get_repo(REPO)
    started = time.monotonic()
    pull = repo.create_pull(base="main", head="promoflow/dev/web/r1", title="Promote")
    assert time.monotonic() - started >= 1.0
    assert fault.hits == 1 and pull.number == 1
    assert repo.get_pulls(state="all").totalCount == 1  # the refused POST created nothing


def test_authentication_and_rate_limit_headers(world: World) -> None:
    url = f"{world.standin.url}/repos/{REPO}"
    with httpx.Client() as http:
        anonymous = http.get(url)
        assert anonymous.status_code == 401 and anonymous.json()["message"] == "Requires authentication"
        first = http.get(url, headers={"Authorization": "token x"})
        second = http.get(url, headers={"Authorization": "Bearer y"})
        assert first.status_code == second.status_code == 200
        assert first.headers["x-ratelimit-limit"] == "5000" and first.headers["x-ratelimit-resource"] == "core"
        assert int(second.headers["x-ratelimit-remaining"]) == int(first.headers["x-ratelimit-remaining"]) - 1
        assert int(second.headers["x-ratelimit-used"]) == int(first.headers["x-ratelimit-used"]) + 1
        assert int(first.headers["x-ratelimit-reset"]) > time.time()
        assert http.get(url + "/nothing", headers={"Authorization": "token x"}).status_code == 404
        broken = http.post(url + "/pulls", content=b"{", headers={"Authorization": "token x"})
        assert broken.status_code == 400
    gh = world.client()
    gh.get_repo(REPO)
    remaining, limit = gh.rate_limiting
    assert limit == 5000 and 0 < remaining < 5000


def test_serve_runs_until_sigterm(world: World) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "promoflow.sandbox.github", "--repo", f"{REPO}={world.bare}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/api/v3", line)
        assert url, line
        response = httpx.get(f"{url.group(0)}/repos/{REPO}", headers={"Authorization": "token x"})
        assert response.status_code == 200
        validate(response.json(), schema_for("GET", f"/repos/{REPO}", 200))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_main_rejects_what_is_not_a_bare_repository(tmp_path: Path) -> None:
    from promoflow.sandbox import github

    with pytest.raises(SystemExit) as exit_:
        github.main(["--repo", f"{REPO}={tmp_path}"])
    assert exit_.value.code == 2
    with pytest.raises(ValueError, match="OWNER/NAME"):
        GitHubStandIn({"deploy": tmp_path})
