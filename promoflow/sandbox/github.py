"""GitHub's REST API, simulated: a stand-in for tests and the demo, backed by real bare git repositories.

GitHub cannot run on one machine, so this serves the part of its REST API that promoflow uses, closely
enough that PyGithub works unchanged with ``base_url=standin.url`` (``http://127.0.0.1:PORT/api/v3``, the
GitHub Enterprise URL shape). Pull requests, reviews, statuses, check runs, labels and comments live in
memory; everything git (branches, refs, commits, merges) lives in the bare repositories, so a merge really
moves the base branch, and a push made by any other git client moves an open pull request's ``head.sha``.

Who is calling: every request needs ``Authorization: token T`` (or ``Bearer T``), else 401 as on GitHub.
The caller is ``tokens[T]``, or ``default_user`` for any other token; an ``X-Standin-User: LOGIN`` header
overrides both, so one test can play the requester and several reviewers. Pull request authors cannot
approve or request changes on their own pull request (422, as on GitHub).

Routes (after ``/api/v3``; ``{repo}`` is ``OWNER/NAME``):
    GET    /user
    GET    /repos/{repo}
    GET    /repos/{repo}/branches/{branch}
    GET    /repos/{repo}/git/ref/{ref}            GET /repos/{repo}/git/matching-refs/{prefix}
    GET    /repos/{repo}/git/refs[/{ref}]         (the older route: one ref, or a folder of refs)
    POST   /repos/{repo}/git/refs                 PATCH, DELETE /repos/{repo}/git/refs/{ref}
    GET    /repos/{repo}/pulls?state=&head=OWNER:BRANCH&base=&sort=&direction=   (a head without
           ``OWNER:`` is ignored, as GitHub does)
    POST   /repos/{repo}/pulls                    GET, PATCH /repos/{repo}/pulls/{n}
    GET    /repos/{repo}/pulls/{n}/reviews        POST (events APPROVE, REQUEST_CHANGES, COMMENT)
    GET    /repos/{repo}/pulls/{n}/reviews/{id}   PUT  /repos/{repo}/pulls/{n}/reviews/{id}/dismissals
    GET    /repos/{repo}/pulls/{n}/merge          (204 merged, 404 not)
    PUT    /repos/{repo}/pulls/{n}/merge          (merge_method merge|squash|rebase; 409 when ``sha`` is
           not the head, 405 when not mergeable)
    GET    /repos/{repo}/commits/{ref}            GET /repos/{repo}/commits/{ref}/status
    GET    /repos/{repo}/commits/{ref}/check-runs?check_name=&status=&filter=latest|all
    POST   /repos/{repo}/statuses/{sha}           GET /repos/{repo}/statuses/{ref}
    POST   /repos/{repo}/check-runs               GET, PATCH /repos/{repo}/check-runs/{id}
    GET    /repos/{repo}/issues/{n}/labels        POST (a JSON list or ``{"labels": [...]}``)
    DELETE /repos/{repo}/issues/{n}/labels/{name}
    GET    /repos/{repo}/issues/{n}/comments      POST
Lists are paginated with ``per_page``/``page`` and a ``Link`` header; every answer carries GitHub's
``x-ratelimit-*`` headers. ``inject(path_regex, status, count, headers)`` answers the next ``count``
matching requests with an error (502, 403 + ``Retry-After`` for a secondary rate limit ...) before they
reach the API. Every JSON body sent is kept in ``exchanges`` for checking against GitHub's schemas.
A repository's ``clone_url`` is its bare repository as a ``file://`` URL, so clients can clone and push.

Needs git >= 2.38 (``merge-tree --write-tree``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
PREFIX = "/api/v3"
RATE_LIMIT = 5000
_DOCS = "https://docs.github.com/rest"
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_REVIEW_STATES = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED"}
_STATUS_STATES = ("error", "failure", "pending", "success")
_CHECK_STATUSES = ("queued", "in_progress", "completed", "waiting", "requested", "pending")
_CHECK_CONCLUSIONS = ("success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required")
_MERGE_METHODS = ("merge", "squash", "rebase")
_SECONDARY_LIMIT = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."


class GitHubError(Exception):
    """An API error as GitHub reports it: the HTTP status and the ``message`` (plus ``errors``) of the body."""

    def __init__(self, status: int, message: str, errors: list[Any] | None = None) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "documentation_url": _DOCS, "status": str(self.status)}
        if self.errors:
            body["errors"] = self.errors
        return body


def _invalid(resource: str, field_name: str, code: str = "invalid") -> GitHubError:
    return GitHubError(422, "Validation Failed", [{"resource": resource, "field": field_name, "code": code}])


def _custom(resource: str, message: str) -> GitHubError:
    return GitHubError(422, "Validation Failed", [{"resource": resource, "code": "custom", "message": message}])


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_id(kind: str, number: int) -> str:
    return base64.b64encode(f"{kind}:{number}".encode()).decode()


def _stable_id(name: str) -> int:
    """Users and repositories keep their ids across restarts of the stand-in."""
    return zlib.crc32(name.encode()) % 10**8 + 1


# --- git ---------------------------------------------------------------------------------------------


def _git(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # The stand-in plays GitHub: the caller's git settings (GIT_DIR, signing, hooks path ...) must not leak in.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    clean.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0", **(env or {}))
    return subprocess.run(["git", *args], cwd=cwd, env=clean, capture_output=True, text=True)


def _git_out(cwd: Path, *args: str) -> str:
    result = _git(cwd, *args)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {result.stderr.strip()}")
    return result.stdout


@dataclass(frozen=True)
class _Person:
    name: str
    email: str
    date: str

    def json(self) -> dict[str, str]:
        return {"name": self.name, "email": self.email, "date": self.date}


@dataclass(frozen=True)
class _CommitData:
    sha: str
    tree: str
    parents: list[str]
    author: _Person
    committer: _Person
    message: str


@dataclass(frozen=True)
class _FileChange:
    path: str
    blob: str
    status: str
    additions: int
    deletions: int


@dataclass(frozen=True)
class _Comparison:
    """What a pull request shows about ``base...head``."""

    mergeable: bool
    commits: int
    additions: int
    deletions: int
    changed_files: int


class _BareRepo:
    """Git plumbing on one bare repository; the git data behind a simulated GitHub repository."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._comparisons: dict[tuple[str, str], _Comparison] = {}

    def refs(self, prefix: str = "refs/") -> dict[str, tuple[str, str]]:
        """ref name -> (object sha, object type)."""
        out = _git_out(self.path, "for-each-ref", "--format=%(refname)%00%(objectname)%00%(objecttype)", prefix)
        rows = (line.split("\0") for line in out.splitlines())
        return {name: (sha, kind) for name, sha, kind in rows}

    def branches(self) -> dict[str, str]:
        return {name.removeprefix("refs/heads/"): sha for name, (sha, _) in self.refs("refs/heads/").items()}

    def default_branch(self) -> str:
        head = (self.path / "HEAD").read_text().strip()
        return head.removeprefix("ref: refs/heads/") if head.startswith("ref: refs/heads/") else "main"

    def resolve(self, rev: str) -> str | None:
        """The commit a sha, branch or tag names, or None."""
        if not rev or rev.startswith("-"):
            return None
        result = _git(self.path, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        return result.stdout.strip() if result.returncode == 0 else None

    def exists(self, sha: str) -> bool:
        return not sha.startswith("-") and _git(self.path, "cat-file", "-e", sha).returncode == 0

    def is_ancestor(self, old: str, new: str) -> bool:
        return _git(self.path, "merge-base", "--is-ancestor", old, new).returncode == 0

    def commit(self, sha: str) -> _CommitData:
        fields = "%H%x00%T%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B"
        out = _git_out(self.path, "show", "-s", f"--format={fields}", sha)
        sha, tree, parents, an, ae, ad, cn, ce, cd, message = out.split("\0", 9)
        return _CommitData(
            sha, tree, parents.split(), _Person(an, ae, _utc(ad)), _Person(cn, ce, _utc(cd)), message.rstrip("\n")
        )

    def changes(self, old: str, new: str) -> list[_FileChange]:
        raw = _git_out(self.path, "diff", "--no-renames", "-z", "--raw", old, new).split("\0")
        numstat = _git_out(self.path, "diff", "--no-renames", "-z", "--numstat", old, new).split("\0")
        counts: dict[str, tuple[int, int]] = {}
        for record in numstat:
            if record:
                added, deleted, path = record.split("\t", 2)
                counts[path] = (int(added) if added != "-" else 0, int(deleted) if deleted != "-" else 0)
        changes = []
        for meta, path in zip(raw[0::2], raw[1::2], strict=False):
            _, _, old_blob, new_blob, letter = meta.split()
            status = {"A": "added", "D": "removed", "M": "modified"}.get(letter, "changed")
            blob = old_blob if letter == "D" else new_blob
            changes.append(_FileChange(path, blob, status, *counts.get(path, (0, 0))))
        return changes

    def compare(self, base: str, head: str) -> _Comparison | None:
        """``base...head`` as a pull request shows it; None when the two have no history in common."""
        key = (base, head)
        if key not in self._comparisons:
            merge_base = _git(self.path, "merge-base", base, head)
            if merge_base.returncode != 0:
                return None
            merge = _git(self.path, "merge-tree", "--write-tree", "--no-messages", base, head)
            if merge.returncode not in (0, 1):  # 1: conflicts
                raise RuntimeError(f"git merge-tree failed in {self.path}: {merge.stderr.strip()}")
            commits = int(_git_out(self.path, "rev-list", "--count", f"{base}..{head}"))
            files = self.changes(merge_base.stdout.strip(), head)
            self._comparisons[key] = _Comparison(
                merge.returncode == 0,
                commits,
                sum(f.additions for f in files),
                sum(f.deletions for f in files),
                len(files),
            )
        return self._comparisons[key]

    def merge(self, base: str, base_sha: str, head_sha: str, method: str, message: str, merger: _Person) -> str:
        """Merge ``head_sha`` into branch ``base`` the way GitHub's merge button does; returns the new tip.

        Done with git itself in a throwaway clone, then pushed with a lease on ``base_sha``, so a
        branch moved meanwhile by another client is never overwritten.
        """
        committer = {"GIT_COMMITTER_NAME": "GitHub", "GIT_COMMITTER_EMAIL": "noreply@github.com"}
        author = {"GIT_AUTHOR_NAME": merger.name, "GIT_AUTHOR_EMAIL": merger.email}
        with tempfile.TemporaryDirectory(prefix="github-standin-merge-") as tmp:
            work = Path(tmp)
            _git_out(self.path, "clone", "-q", "--shared", "--no-checkout", str(self.path), tmp)
            steps: list[tuple[str, ...]]
            if method == "rebase":  # replayed commits keep their authors; GitHub becomes the committer
                _git_out(work, "checkout", "-q", "--detach", head_sha)
                steps = [("rebase", "-q", "--no-ff", base_sha)]
            else:
                _git_out(work, "checkout", "-q", "--detach", base_sha)
                if method == "merge":
                    steps = [("merge", "-q", "--no-ff", "--no-edit", "-m", message, head_sha)]
                else:
                    steps = [("merge", "-q", "--squash", head_sha), ("commit", "-q", "--allow-empty", "-m", message)]
            for step in steps:
                if _git(work, *step, env={**committer, **({} if method == "rebase" else author)}).returncode:
                    raise GitHubError(405, "Pull Request is not mergeable")
            tip = _git_out(work, "rev-parse", "HEAD").strip()
            lease = f"--force-with-lease=refs/heads/{base}:{base_sha}"
            if _git(work, "push", "-q", lease, "origin", f"HEAD:refs/heads/{base}").returncode:
                raise GitHubError(405, "Base branch was modified. Review and try the merge again.")
        return tip


# --- state -------------------------------------------------------------------------------------------


@dataclass
class _Review:
    id: int
    user: str
    body: str
    state: str
    commit_id: str
    submitted_at: str | None


@dataclass
class _Comment:
    id: int
    user: str
    body: str
    created_at: str


@dataclass
class _Label:
    id: int
    name: str
    color: str
    description: str | None


@dataclass
class _Pull:
    number: int
    id: int
    user: str
    title: str
    body: str | None
    head: str
    base: str
    draft: bool
    # Last seen tips: followed live while open, frozen once closed.
    head_sha: str
    base_sha: str
    created_at: str
    updated_at: str
    state: str = "open"
    closed_at: str | None = None
    merged_at: str | None = None
    merged_by: str | None = None
    merge_commit_sha: str | None = None
    labels: list[str] = field(default_factory=list)
    reviews: list[_Review] = field(default_factory=list)
    comments: list[_Comment] = field(default_factory=list)


@dataclass
class _Status:
    id: int
    sha: str
    state: str
    context: str
    description: str | None
    target_url: str | None
    creator: str
    created_at: str


@dataclass
class _CheckRun:
    id: int
    suite_id: int
    head_sha: str
    name: str
    status: str
    conclusion: str | None
    started_at: str | None
    completed_at: str | None
    details_url: str | None
    external_id: str | None
    output: dict[str, str | None]


@dataclass
class _Repo:
    owner: str
    name: str
    git: _BareRepo
    created_at: str
    pulls: dict[int, _Pull] = field(default_factory=dict)
    statuses: list[_Status] = field(default_factory=list)
    check_runs: list[_CheckRun] = field(default_factory=list)
    check_suites: dict[str, int] = field(default_factory=dict)
    labels: dict[str, _Label] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def id(self) -> int:
        return _stable_id(self.full_name)

    def pull(self, number: str | int) -> _Pull:
        pull = self.pulls.get(int(number))
        if pull is None:
            raise GitHubError(404, "Not Found")
        return pull

    def refresh(self) -> dict[str, str]:
        """Read the branches, moving open pull requests with them (other clients push); returns them."""
        branches = self.git.branches()
        for pull in self.pulls.values():
            if pull.state == "open":
                pull.head_sha = branches.get(pull.head, pull.head_sha)
                pull.base_sha = branches.get(pull.base, pull.base_sha)
        return branches


# --- response bodies ---------------------------------------------------------------------------------


class _View:
    """GitHub-shaped JSON for the state, with URLs on the host the client used (PyGithub asserts that)."""

    def __init__(self, web: str) -> None:
        self.web = web
        self.api = web + PREFIX

    def user(self, login: str) -> dict[str, Any]:
        number = _stable_id(login)
        url = f"{self.api}/users/{login}"
        return {
            "login": login,
            "id": number,
            "node_id": _node_id("User", number),
            "avatar_url": f"{self.web}/avatars/u/{number}",
            "gravatar_id": "",
            "url": url,
            "html_url": f"{self.web}/{login}",
            "followers_url": f"{url}/followers",
            "following_url": f"{url}/following{{/other_user}}",
            "gists_url": f"{url}/gists{{/gist_id}}",
            "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{url}/subscriptions",
            "organizations_url": f"{url}/orgs",
            "repos_url": f"{url}/repos",
            "events_url": f"{url}/events{{/privacy}}",
            "received_events_url": f"{url}/received_events",
            "type": "User",
            "site_admin": False,
            "user_view_type": "public",
        }

    def repo_url(self, repo: _Repo) -> str:
        return f"{self.api}/repos/{repo.full_name}"

    def repo(self, repo: _Repo) -> dict[str, Any]:
        """The full repository; a superset of the repository and minimal-repository shapes."""
        url = self.repo_url(repo)
        host = urlsplit(self.web).netloc
        open_pulls = sum(p.state == "open" for p in repo.pulls.values())
        links = {
            "archive_url": "/{archive_format}{/ref}",
            "assignees_url": "/assignees{/user}",
            "blobs_url": "/git/blobs{/sha}",
            "branches_url": "/branches{/branch}",
            "collaborators_url": "/collaborators{/collaborator}",
            "comments_url": "/comments{/number}",
            "commits_url": "/commits{/sha}",
            "compare_url": "/compare/{base}...{head}",
            "contents_url": "/contents/{+path}",
            "contributors_url": "/contributors",
            "deployments_url": "/deployments",
            "downloads_url": "/downloads",
            "events_url": "/events",
            "forks_url": "/forks",
            "git_commits_url": "/git/commits{/sha}",
            "git_refs_url": "/git/refs{/sha}",
            "git_tags_url": "/git/tags{/sha}",
            "hooks_url": "/hooks",
            "issue_comment_url": "/issues/comments{/number}",
            "issue_events_url": "/issues/events{/number}",
            "issues_url": "/issues{/number}",
            "keys_url": "/keys{/key_id}",
            "labels_url": "/labels{/name}",
            "languages_url": "/languages",
            "merges_url": "/merges",
            "milestones_url": "/milestones{/number}",
            "notifications_url": "/notifications{?since,all,participating}",
            "pulls_url": "/pulls{/number}",
            "releases_url": "/releases{/id}",
            "stargazers_url": "/stargazers",
            "statuses_url": "/statuses/{sha}",
            "subscribers_url": "/subscribers",
            "subscription_url": "/subscription",
            "tags_url": "/tags",
            "teams_url": "/teams",
            "trees_url": "/git/trees{/sha}",
        }
        return {
            "id": repo.id,
            "node_id": _node_id("Repository", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": self.user(repo.owner),
            "private": False,
            "html_url": f"{self.web}/{repo.full_name}",
            "description": None,
            "fork": False,
            "url": url,
            **{key: url + suffix for key, suffix in links.items()},
            "git_url": f"git://{host}/{repo.full_name}.git",
            "ssh_url": f"git@{host}:{repo.full_name}.git",
            "clone_url": repo.git.path.resolve().as_uri(),
            "svn_url": f"{self.web}/{repo.full_name}",
            "mirror_url": None,
            "homepage": None,
            "language": None,
            "forks_count": 0,
            "forks": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "watchers": 0,
            "subscribers_count": 0,
            "network_count": 0,
            "size": 0,
            "default_branch": repo.git.default_branch(),
            "open_issues_count": open_pulls,
            "open_issues": open_pulls,
            "is_template": False,
            "topics": [],
            "has_issues": True,
            "has_projects": False,
            "has_wiki": False,
            "has_pages": False,
            "has_downloads": True,
            "has_discussions": False,
            "archived": False,
            "disabled": False,
            "visibility": "public",
            "pushed_at": repo.created_at,
            "created_at": repo.created_at,
            "updated_at": repo.created_at,
            "permissions": {"admin": True, "maintain": True, "push": True, "triage": True, "pull": True},
            "allow_merge_commit": True,
            "allow_squash_merge": True,
            "allow_rebase_merge": True,
            "allow_auto_merge": False,
            "delete_branch_on_merge": False,
            "allow_forking": True,
            "web_commit_signoff_required": False,
            "license": None,
        }

    def association(self, repo: _Repo, login: str) -> str:
        return "OWNER" if login == repo.owner else "COLLABORATOR"

    def pull_url(self, repo: _Repo, pull: _Pull) -> str:
        return f"{self.repo_url(repo)}/pulls/{pull.number}"

    def pull(self, repo: _Repo, pull: _Pull, *, full: bool) -> dict[str, Any]:
        """A pull request: ``full`` for the single-item routes, else the pull-request-simple of lists."""
        url = self.pull_url(repo, pull)
        issue = f"{self.repo_url(repo)}/issues/{pull.number}"
        html = f"{self.web}/{repo.full_name}/pull/{pull.number}"
        review_comment = f"{self.repo_url(repo)}/pulls/comments{{/number}}"
        statuses = f"{self.repo_url(repo)}/statuses/{pull.head_sha}"
        repo_json = self.repo(repo)

        def end(branch: str, sha: str) -> dict[str, Any]:
            owner = self.user(repo.owner)
            return {"label": f"{repo.owner}:{branch}", "ref": branch, "sha": sha, "user": owner, "repo": repo_json}

        body: dict[str, Any] = {
            "url": url,
            "id": pull.id,
            "node_id": _node_id("PullRequest", pull.id),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": issue,
            "commits_url": f"{url}/commits",
            "review_comments_url": f"{url}/comments",
            "review_comment_url": review_comment,
            "comments_url": f"{issue}/comments",
            "statuses_url": statuses,
            "number": pull.number,
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "user": self.user(pull.user),
            "body": pull.body,
            "labels": [self.label(repo, repo.labels[name]) for name in pull.labels],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": pull.created_at,
            "updated_at": pull.updated_at,
            "closed_at": pull.closed_at,
            "merged_at": pull.merged_at,
            "merge_commit_sha": pull.merge_commit_sha,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [],
            "requested_teams": [],
            "head": end(pull.head, pull.head_sha),
            "base": end(pull.base, pull.base_sha),
            "_links": {
                "self": {"href": url},
                "html": {"href": html},
                "issue": {"href": issue},
                "comments": {"href": f"{issue}/comments"},
                "review_comments": {"href": f"{url}/comments"},
                "review_comment": {"href": review_comment},
                "commits": {"href": f"{url}/commits"},
                "statuses": {"href": statuses},
            },
            "author_association": self.association(repo, pull.user),
            "auto_merge": None,
            "draft": pull.draft,
        }
        if full:
            # A head force-pushed onto unrelated history compares as nothing, and cannot merge.
            comparison = repo.git.compare(pull.base_sha, pull.head_sha) or _Comparison(False, 0, 0, 0, 0)
            if pull.state == "open":
                mergeable: bool | None = comparison.mergeable
                state = "draft" if pull.draft else ("clean" if comparison.mergeable else "dirty")
            else:
                mergeable, state = None, "unknown"
            body.update(
                merged=pull.merged_at is not None,
                mergeable=mergeable,
                rebaseable=mergeable,
                mergeable_state=state,
                merged_by=self.user(pull.merged_by) if pull.merged_by else None,
                comments=len(pull.comments),
                review_comments=0,
                maintainer_can_modify=False,
                commits=comparison.commits,
                additions=comparison.additions,
                deletions=comparison.deletions,
                changed_files=comparison.changed_files,
            )
        return body

    def review(self, repo: _Repo, pull: _Pull, review: _Review) -> dict[str, Any]:
        html = f"{self.web}/{repo.full_name}/pull/{pull.number}#pullrequestreview-{review.id}"
        body = {
            "id": review.id,
            "node_id": _node_id("PullRequestReview", review.id),
            "user": self.user(review.user),
            "body": review.body,
            "state": review.state,
            "html_url": html,
            "pull_request_url": self.pull_url(repo, pull),
            "_links": {"html": {"href": html}, "pull_request": {"href": self.pull_url(repo, pull)}},
            "commit_id": review.commit_id,
            "author_association": self.association(repo, review.user),
        }
        if review.submitted_at:
            body["submitted_at"] = review.submitted_at
        return body

    def status(self, repo: _Repo, status: _Status, *, creator: bool = True) -> dict[str, Any]:
        body = {
            "url": f"{self.repo_url(repo)}/statuses/{status.sha}",
            "avatar_url": f"{self.web}/avatars/u/{_stable_id(status.creator)}",
            "id": status.id,
            "node_id": _node_id("StatusContext", status.id),
            "state": status.state,
            "description": status.description,
            "target_url": status.target_url,
            "context": status.context,
            "created_at": status.created_at,
            "updated_at": status.created_at,
        }
        if creator:
            body["creator"] = self.user(status.creator)
        return body

    def combined_status(self, repo: _Repo, sha: str) -> dict[str, Any]:
        latest: dict[str, _Status] = {}
        for status in repo.statuses:  # oldest first, so the newest per context wins
            if status.sha == sha:
                latest[status.context] = status
        states = {s.state for s in latest.values()}
        if states & {"error", "failure"}:
            state = "failure"
        elif not states or "pending" in states:
            state = "pending"
        else:
            state = "success"
        return {
            "state": state,
            "statuses": [self.status(repo, s, creator=False) for s in latest.values()],
            "sha": sha,
            "total_count": len(latest),
            "repository": self.repo(repo),
            "commit_url": f"{self.repo_url(repo)}/commits/{sha}",
            "url": f"{self.repo_url(repo)}/commits/{sha}/status",
        }

    def app(self) -> dict[str, Any]:
        return {
            "id": 1,
            "slug": "github-standin",
            "node_id": _node_id("App", 1),
            "owner": self.user("github-standin"),
            "name": "GitHub stand-in",
            "description": "Check runs reported to the simulated GitHub",
            "external_url": self.web,
            "html_url": f"{self.web}/apps/github-standin",
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "permissions": {"checks": "write", "metadata": "read", "statuses": "write"},
            "events": ["check_run", "check_suite"],
        }

    def check_run(self, repo: _Repo, run: _CheckRun) -> dict[str, Any]:
        url = f"{self.repo_url(repo)}/check-runs/{run.id}"

        def end(branch: str, sha: str) -> dict[str, Any]:
            return {"ref": branch, "sha": sha, "repo": {"id": repo.id, "url": self.repo_url(repo), "name": repo.name}}

        pulls = [
            {
                "id": p.id,
                "number": p.number,
                "url": self.pull_url(repo, p),
                "head": end(p.head, p.head_sha),
                "base": end(p.base, p.base_sha),
            }
            for p in repo.pulls.values()
            if p.state == "open" and p.head_sha == run.head_sha
        ]
        return {
            "id": run.id,
            "head_sha": run.head_sha,
            "node_id": _node_id("CheckRun", run.id),
            "external_id": run.external_id,
            "url": url,
            "html_url": f"{self.web}/{repo.full_name}/runs/{run.id}",
            "details_url": run.details_url,
            "status": run.status,
            "conclusion": run.conclusion,
            "started_at": run.started_at,
            "completed_at": run.completed_at,
            "output": {
                "title": run.output.get("title"),
                "summary": run.output.get("summary"),
                "text": run.output.get("text"),
                "annotations_count": 0,
                "annotations_url": f"{url}/annotations",
            },
            "name": run.name,
            "check_suite": {"id": run.suite_id},
            "app": self.app(),
            "pull_requests": pulls,
        }

    def label(self, repo: _Repo, label: _Label) -> dict[str, Any]:
        return {
            "id": label.id,
            "node_id": _node_id("Label", label.id),
            "url": f"{self.repo_url(repo)}/labels/{quote(label.name)}",
            "name": label.name,
            "description": label.description,
            "color": label.color,
            "default": False,
        }

    def comment(self, repo: _Repo, pull: _Pull, comment: _Comment) -> dict[str, Any]:
        return {
            "id": comment.id,
            "node_id": _node_id("IssueComment", comment.id),
            "url": f"{self.repo_url(repo)}/issues/comments/{comment.id}",
            "html_url": f"{self.web}/{repo.full_name}/pull/{pull.number}#issuecomment-{comment.id}",
            "body": comment.body,
            "user": self.user(comment.user),
            "created_at": comment.created_at,
            "updated_at": comment.created_at,
            "issue_url": f"{self.repo_url(repo)}/issues/{pull.number}",
            "author_association": self.association(repo, comment.user),
            "performed_via_github_app": None,
        }

    def ref(self, repo: _Repo, name: str, sha: str, kind: str) -> dict[str, Any]:
        plural = {"commit": "commits", "tag": "tags", "tree": "trees", "blob": "blobs"}[kind]
        return {
            "ref": name,
            "node_id": _node_id("Ref", _stable_id(f"{repo.full_name}:{name}")),
            "url": f"{self.repo_url(repo)}/git/{quote(name)}",
            "object": {"type": kind, "sha": sha, "url": f"{self.repo_url(repo)}/git/{plural}/{sha}"},
        }

    def commit(self, repo: _Repo, sha: str) -> dict[str, Any]:
        data = repo.git.commit(sha)
        url = f"{self.repo_url(repo)}/commits/{sha}"
        files = repo.git.changes(data.parents[0] if data.parents else _EMPTY_TREE, sha)
        additions, deletions = sum(f.additions for f in files), sum(f.deletions for f in files)
        return {
            "sha": sha,
            "node_id": _node_id("Commit", _stable_id(sha)),
            "url": url,
            "html_url": f"{self.web}/{repo.full_name}/commit/{sha}",
            "comments_url": f"{url}/comments",
            "commit": {
                "url": f"{self.repo_url(repo)}/git/commits/{sha}",
                "author": data.author.json(),
                "committer": data.committer.json(),
                "message": data.message,
                "tree": {"sha": data.tree, "url": f"{self.repo_url(repo)}/git/trees/{data.tree}"},
                "comment_count": 0,
                "verification": {
                    "verified": False,
                    "reason": "unsigned",
                    "signature": None,
                    "payload": None,
                    "verified_at": None,
                },
            },
            # Git identities are not GitHub accounts here.
            "author": None,
            "committer": None,
            "parents": [
                {
                    "sha": p,
                    "url": f"{self.repo_url(repo)}/commits/{p}",
                    "html_url": f"{self.web}/{repo.full_name}/commit/{p}",
                }
                for p in data.parents
            ],
            "stats": {"additions": additions, "deletions": deletions, "total": additions + deletions},
            "files": [
                {
                    "sha": f.blob,
                    "filename": f.path,
                    "status": f.status,
                    "additions": f.additions,
                    "deletions": f.deletions,
                    "changes": f.additions + f.deletions,
                    "blob_url": f"{self.web}/{repo.full_name}/blob/{sha}/{quote(f.path)}",
                    "raw_url": f"{self.web}/{repo.full_name}/raw/{sha}/{quote(f.path)}",
                    "contents_url": f"{self.repo_url(repo)}/contents/{quote(f.path)}?ref={sha}",
                }
                for f in files
            ],
        }

    def branch(self, repo: _Repo, name: str, sha: str) -> dict[str, Any]:
        url = f"{self.repo_url(repo)}/branches/{quote(name)}"
        return {
            "name": name,
            "commit": self.commit(repo, sha),
            "_links": {"self": url, "html": f"{self.web}/{repo.full_name}/tree/{quote(name)}"},
            "protected": False,
            "protection": {
                "enabled": False,
                "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []},
            },
            "protection_url": f"{url}/protection",
        }


# --- routing -----------------------------------------------------------------------------------------


@dataclass
class _Call:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    user: str
    view: _View
    repo: _Repo
    branches: dict[str, str]  # read once per call; open pull requests follow them


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Exchange:
    """One answer the stand-in sent over HTTP (path after ``/api/v3``, without the query)."""

    method: str
    path: str
    status: int
    body: Any


@dataclass
class Fault:
    """An injected failure; ``remaining`` counts down as matching requests receive it."""

    pattern: re.Pattern[str]
    status: int
    remaining: int
    headers: dict[str, str]
    body: dict[str, Any]
    method: str | None = None
    hits: int = 0


_Handler = Callable[["GitHubStandIn", _Call], _Reply]
_H = TypeVar("_H", bound=_Handler)
_ROUTES: list[tuple[str, re.Pattern[str], _Handler]] = []


def _route(method: str, pattern: str) -> Callable[[_H], _H]:
    """Register a ``/repos/OWNER/NAME...`` route; the first matching route wins."""
    regex = re.compile("/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)" + pattern + "$")

    def register(handler: _H) -> _H:
        _ROUTES.append((method, regex, handler))
        return handler

    return register


def _required(body: Any, key: str, resource: str) -> Any:
    if not isinstance(body, dict) or body.get(key) in (None, ""):
        raise _invalid(resource, key, "missing_field")
    return body[key]


def _int(text: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(text), low), high) if text is not None else default
    except ValueError:
        return default


class GitHubStandIn:
    """The simulated GitHub REST API for ``repos`` (``{"OWNER/NAME": bare_repo_path}``) on 127.0.0.1.

    Use as a context manager, or ``start()``/``stop()``; ``url`` is the ``base_url`` for clients.
    ``tokens`` maps a token to the login it stands for; other tokens are ``default_user``.
    """

    def __init__(
        self,
        repos: Mapping[str, Path],
        port: int = 0,
        *,
        tokens: Mapping[str, str] | None = None,
        default_user: str = "promoflow",
    ) -> None:
        self._repos: dict[str, _Repo] = {}
        started = _now()
        for full_name, path in repos.items():
            owner, _, name = full_name.partition("/")
            if not owner or not name or "/" in name:
                raise ValueError(f"repository names are OWNER/NAME, not {full_name!r}")
            bare = _git(Path(path), "rev-parse", "--is-bare-repository")
            if bare.returncode != 0 or bare.stdout.strip() != "true":
                raise ValueError(f"{path} is not a bare git repository")
            self._repos[full_name.lower()] = _Repo(owner, name, _BareRepo(Path(path)), started)
        self._port = port
        self._tokens = dict(tokens or {})
        self._default_user = default_user
        self._lock = threading.RLock()
        self._ids = itertools.count(1001)
        self._faults: list[Fault] = []
        self._used = 0
        self._reset = int(time.time()) + 3600
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.exchanges: list[Exchange] = []

    # lifecycle

    def start(self) -> GitHubStandIn:
        server = _Server((HOST, self._port), self)
        self._server, self._port = server, server.server_address[1]
        # A short poll interval, as stop() waits for the serving loop to notice.
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="github-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> GitHubStandIn:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._port}{PREFIX}"

    # faults

    def inject(
        self,
        path_regex: str,
        status: int,
        count: int = 1,
        headers: Mapping[str, str] | None = None,
        *,
        method: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> Fault:
        """Answer the next ``count`` requests whose path (after ``/api/v3``) matches with ``status``.

        The default body is GitHub's for that failure: a 403 or 429 reads as a secondary rate limit
        (PyGithub retries those; add ``Retry-After`` to say when), or a primary one when
        ``x-ratelimit-remaining`` is ``0``.
        """
        headers = dict(headers or {})
        if body is None:
            if status in (403, 429):
                primary = any(k.lower() == "x-ratelimit-remaining" and v == "0" for k, v in headers.items())
                message = "API rate limit exceeded for user ID 1." if primary else _SECONDARY_LIMIT
            else:
                message = HTTPStatus(status).phrase
            body = {"message": message, "documentation_url": _DOCS, "status": str(status)}
        fault = Fault(re.compile(path_regex), status, count, headers, body, method.upper() if method else None)
        with self._lock:
            self._faults.append(fault)
        return fault

    # acting as people on GitHub (tests and the demo)

    def review(
        self, owner_repo: str, number: int, user: str, event: str, body: str = "", commit_id: str | None = None
    ) -> dict[str, Any]:
        """Submit a review as ``user`` (event APPROVE, REQUEST_CHANGES or COMMENT); returns its JSON."""
        data: dict[str, Any] = {"event": event, "body": body}
        if commit_id:
            data["commit_id"] = commit_id
        return self._act("POST", f"/repos/{owner_repo}/pulls/{number}/reviews", data, user)

    def set_status(
        self,
        owner_repo: str,
        sha: str,
        state: str,
        context: str = "default",
        description: str | None = None,
        target_url: str | None = None,
        user: str = "ci",
    ) -> dict[str, Any]:
        """Report a commit status (error, failure, pending, success) as ``user``; returns its JSON."""
        data = {"state": state, "context": context, "description": description, "target_url": target_url}
        return self._act("POST", f"/repos/{owner_repo}/statuses/{sha}", data, user)

    def add_check_run(
        self,
        owner_repo: str,
        head_sha: str,
        name: str,
        status: str = "completed",
        conclusion: str | None = "success",
        details_url: str | None = None,
        summary: str | None = None,
    ) -> dict[str, Any]:
        """Report a check run on ``head_sha``; returns its JSON."""
        data: dict[str, Any] = {"name": name, "head_sha": head_sha, "status": status, "details_url": details_url}
        if conclusion is not None:
            data["conclusion"] = conclusion
        if summary is not None:
            data["output"] = {"title": name, "summary": summary}
        return self._act("POST", f"/repos/{owner_repo}/check-runs", data, "github-standin")

    def _act(self, method: str, path: str, data: Any, user: str) -> dict[str, Any]:
        reply = self._dispatch(method, path, {}, data, user, _View(f"http://{HOST}:{self._port}"))
        if reply.status >= 400:
            raise GitHubError(reply.status, reply.body["message"], reply.body.get("errors"))
        result: dict[str, Any] = reply.body
        return result

    # HTTP

    def _respond(self, method: str, target: str, headers: Message, raw: bytes) -> _Reply:
        split = urlsplit(target)
        path = split.path.removeprefix(PREFIX) if split.path.startswith(PREFIX + "/") else None
        with self._lock:
            now = int(time.time())
            if now >= self._reset:
                self._used, self._reset = 0, now + 3600
            self._used += 1
            request_id = f"{self._used:08X}"
            rate = {
                "x-ratelimit-limit": str(RATE_LIMIT),
                "x-ratelimit-remaining": str(max(RATE_LIMIT - self._used, 0)),
                "x-ratelimit-reset": str(self._reset),
                "x-ratelimit-used": str(self._used),
                "x-ratelimit-resource": "core",
            }
            fault = self._take_fault(method, path) if path is not None else None
        if fault is not None:
            reply = _Reply(fault.status, fault.body, dict(fault.headers))
        else:
            reply = self._authorized(method, path, split.query, headers, raw)
        reply.headers = {
            **rate,
            "x-github-media-type": "github.v3; format=json",
            "x-github-request-id": request_id,
            **{name.lower(): value for name, value in reply.headers.items()},  # a fault's may override
        }
        if reply.body is not None:
            with self._lock:
                self.exchanges.append(Exchange(method, path or split.path, reply.status, reply.body))
        return reply

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.method in (None, method) and fault.pattern.search(path):
                fault.remaining -= 1
                fault.hits += 1
                return fault
        return None

    def _authorized(self, method: str, path: str | None, query: str, headers: Message, raw: bytes) -> _Reply:
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        try:
            if path is None:
                raise GitHubError(404, "Not Found")
            if not token.strip():
                raise GitHubError(401, "Requires authentication")
            if scheme.lower() not in ("token", "bearer"):
                raise GitHubError(401, "Bad credentials")
            user = headers.get("X-Standin-User") or self._tokens.get(token.strip(), self._default_user)
            try:
                body = json.loads(raw) if raw.strip() else None
            except ValueError:
                raise GitHubError(400, "Problems parsing JSON") from None
            view = _View(f"http://{headers.get('Host') or f'{HOST}:{self._port}'}")
            return self._dispatch(method, path, dict(parse_qsl(query)), body, user, view)
        except GitHubError as error:
            return _Reply(error.status, error.body())

    def _dispatch(self, method: str, path: str, query: dict[str, str], body: Any, user: str, view: _View) -> _Reply:
        try:
            if method == "GET" and path == "/user":
                return _Reply(200, view.user(user))
            for route_method, regex, handler in _ROUTES:
                match = regex.match(path)
                if match and route_method == method:
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    repo = self._repos.get(f"{params['owner']}/{params['name']}".lower())
                    if repo is None:
                        break
                    with self._lock:
                        branches = repo.refresh()
                        return handler(self, _Call(method, path, params, query, body, user, view, repo, branches))
            raise GitHubError(404, "Not Found")
        except GitHubError as error:
            return _Reply(error.status, error.body())
        except Exception:
            log.exception("GitHub stand-in failed on %s %s", method, path)
            return _Reply(500, {"message": "Server Error", "documentation_url": _DOCS, "status": "500"})

    def _page(
        self, call: _Call, items: Sequence[Any], build: Callable[[Any], Any], wrap: Callable[[list[Any]], Any] = list
    ) -> _Reply:
        """One page of ``items`` with GitHub's ``Link`` header (next/last, first/prev)."""
        per_page = _int(call.query.get("per_page"), 30, 1, 100)
        last = max(1, math.ceil(len(items) / per_page))
        page = _int(call.query.get("page"), 1, 1, 1_000_000)

        def link(number: int, rel: str) -> str:
            query = urlencode({**call.query, "per_page": per_page, "page": number})
            return f'<{call.view.api}{call.path}?{query}>; rel="{rel}"'

        links = []
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first"), link(min(page - 1, last), "prev")]
        chunk = [build(item) for item in items[(page - 1) * per_page : page * per_page]]
        return _Reply(200, wrap(chunk), {"Link": ", ".join(links)} if links else {})

    def _next_id(self) -> int:
        return next(self._ids)

    # repository, branches, refs

    @_route("GET", "")
    def _get_repo(self, call: _Call) -> _Reply:
        return _Reply(200, call.view.repo(call.repo))

    @_route("GET", "/branches/(?P<branch>.+)")
    def _get_branch(self, call: _Call) -> _Reply:
        sha = call.branches.get(call.params["branch"])
        if sha is None:
            raise GitHubError(404, "Branch not found")
        return _Reply(200, call.view.branch(call.repo, call.params["branch"], sha))

    @_route("GET", "/git/ref/(?P<ref>.+)")
    def _get_ref(self, call: _Call) -> _Reply:
        name = "refs/" + call.params["ref"]
        found = call.repo.git.refs(name).get(name)
        if found is None:
            raise GitHubError(404, "Not Found")
        return _Reply(200, call.view.ref(call.repo, name, *found))

    @_route("GET", "/git/matching-refs/(?P<prefix>.*)")
    def _matching_refs(self, call: _Call) -> _Reply:
        prefix = "refs/" + call.params["prefix"]
        refs = [(name, *value) for name, value in call.repo.git.refs().items() if name.startswith(prefix)]
        return self._page(call, refs, lambda ref: call.view.ref(call.repo, *ref))

    @_route("GET", "/git/refs(?:/(?P<prefix>.+))?")
    def _list_refs(self, call: _Call) -> _Reply:
        """GitHub's older route: an exact ref answers as one object, a folder of refs as a list."""
        prefix = "refs/" + call.params.get("prefix", "")
        refs = call.repo.git.refs()
        if prefix in refs:
            return _Reply(200, call.view.ref(call.repo, prefix, *refs[prefix]))
        matches = [(name, *value) for name, value in refs.items() if name.startswith(prefix.rstrip("/") + "/")]
        if not matches:
            raise GitHubError(404, "Not Found")
        return self._page(call, matches, lambda ref: call.view.ref(call.repo, *ref))

    @_route("POST", "/git/refs")
    def _create_ref(self, call: _Call) -> _Reply:
        name = _required(call.body, "ref", "Reference")
        sha = _required(call.body, "sha", "Reference")
        if not isinstance(name, str) or not name.startswith("refs/") or name.count("/") < 2:
            raise GitHubError(422, "Reference name must start with 'refs/' and have at least two slashes.")
        git = call.repo.git
        if _git(git.path, "check-ref-format", name).returncode != 0:
            raise GitHubError(422, f"{name} is not a valid ref name.")
        if not isinstance(sha, str) or not git.exists(sha):
            raise GitHubError(422, "Object does not exist")
        # An empty old value makes the creation atomic against other clients.
        if _git(git.path, "update-ref", name, sha, "").returncode != 0:
            raise GitHubError(422, "Reference already exists")
        return _Reply(201, call.view.ref(call.repo, name, *git.refs(name)[name]))

    @_route("PATCH", "/git/refs/(?P<ref>.+)")
    def _update_ref(self, call: _Call) -> _Reply:
        name, git = "refs/" + call.params["ref"], call.repo.git
        sha = _required(call.body, "sha", "Reference")
        old = git.refs(name).get(name)
        if old is None:
            raise GitHubError(422, "Reference does not exist")
        if not isinstance(sha, str) or not git.exists(sha):
            raise GitHubError(422, "Object does not exist")
        if not call.body.get("force") and not git.is_ancestor(old[0], sha):
            raise GitHubError(422, "Update is not a fast forward")
        if _git(git.path, "update-ref", name, sha, old[0]).returncode != 0:
            raise GitHubError(422, "Reference cannot be updated")
        return _Reply(200, call.view.ref(call.repo, name, *git.refs(name)[name]))

    @_route("DELETE", "/git/refs/(?P<ref>.+)")
    def _delete_ref(self, call: _Call) -> _Reply:
        name, git = "refs/" + call.params["ref"], call.repo.git
        old = git.refs(name).get(name)
        if old is None or _git(git.path, "update-ref", "-d", name, old[0]).returncode != 0:
            raise GitHubError(422, "Reference does not exist")
        return _Reply(204)

    # pull requests

    @_route("GET", "/pulls")
    def _list_pulls(self, call: _Call) -> _Reply:
        repo, query = call.repo, call.query
        state = query.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise _invalid("PullRequest", "state")
        pulls = [p for p in repo.pulls.values() if state in ("all", p.state)]
        owner, colon, head = query.get("head", "").partition(":")
        if colon:  # GitHub ignores a head filter without its OWNER: part
            pulls = [p for p in pulls if owner.lower() == repo.owner.lower() and p.head == head]
        if query.get("base"):
            pulls = [p for p in pulls if p.base == query["base"]]
        sort = query.get("sort", "created")
        direction = query.get("direction", "desc" if sort == "created" else "asc")
        if sort == "updated":
            pulls.sort(key=lambda p: (p.updated_at, p.number))
        else:
            pulls.sort(key=lambda p: p.number)
        if direction == "desc":
            pulls.reverse()
        return self._page(call, pulls, lambda p: call.view.pull(repo, p, full=False))

    @_route("POST", "/pulls")
    def _create_pull(self, call: _Call) -> _Reply:
        repo, body = call.repo, call.body
        title = _required(body, "title", "PullRequest")
        head, base = _required(body, "head", "PullRequest"), _required(body, "base", "PullRequest")
        owner, colon, branch = str(head).rpartition(":")
        if colon and owner.lower() != repo.owner.lower():
            raise _invalid("PullRequest", "head")  # no forks here
        branches = call.branches
        if base not in branches:
            raise _invalid("PullRequest", "base")
        if branch not in branches:
            raise _invalid("PullRequest", "head")
        for pull in repo.pulls.values():
            if pull.state == "open" and pull.head == branch and pull.base == base:
                raise _custom("PullRequest", f"A pull request already exists for {repo.owner}:{branch}.")
        comparison = repo.git.compare(branches[base], branches[branch])
        if comparison is None:
            raise _custom("PullRequest", f"The {branch} branch has no history in common with {base}")
        if not comparison.commits:
            raise _custom("PullRequest", f"No commits between {base} and {branch}")
        now = _now()
        number = max(repo.pulls, default=0) + 1
        pull = _Pull(
            number=number,
            id=self._next_id(),
            user=call.user,
            title=str(title),
            body=body.get("body"),
            head=branch,
            base=str(base),
            draft=bool(body.get("draft", False)),
            head_sha=branches[branch],
            base_sha=branches[base],
            created_at=now,
            updated_at=now,
        )
        repo.pulls[number] = pull
        return _Reply(201, call.view.pull(repo, pull, full=True))

    @_route("GET", r"/pulls/(?P<number>\d+)")
    def _get_pull(self, call: _Call) -> _Reply:
        return _Reply(200, call.view.pull(call.repo, call.repo.pull(call.params["number"]), full=True))

    @_route("PATCH", r"/pulls/(?P<number>\d+)")
    def _update_pull(self, call: _Call) -> _Reply:
        repo, body = call.repo, call.body if isinstance(call.body, dict) else {}
        pull = repo.pull(call.params["number"])
        state = body.get("state", pull.state)
        if state not in ("open", "closed"):
            raise _invalid("PullRequest", "state")
        if "base" in body and body["base"] not in call.branches:
            raise _invalid("PullRequest", "base")
        if state == "open" and pull.state == "closed" and (pull.merged_at or pull.head not in call.branches):
            raise _custom("PullRequest", "This pull request cannot be reopened.")
        for key in ("title", "body", "base"):
            if key in body:
                setattr(pull, key, body[key])
        if state != pull.state:
            pull.state, pull.closed_at = state, _now() if state == "closed" else None
        pull.updated_at = _now()
        repo.refresh()  # a reopened pull request or a new base follows the branches again
        return _Reply(200, call.view.pull(repo, pull, full=True))

    # reviews

    @_route("GET", r"/pulls/(?P<number>\d+)/reviews")
    def _list_reviews(self, call: _Call) -> _Reply:
        pull = call.repo.pull(call.params["number"])
        return self._page(call, pull.reviews, lambda r: call.view.review(call.repo, pull, r))

    @_route("GET", r"/pulls/(?P<number>\d+)/reviews/(?P<review>\d+)")
    def _get_review(self, call: _Call) -> _Reply:
        pull = call.repo.pull(call.params["number"])
        return _Reply(200, call.view.review(call.repo, pull, self._review_of(pull, call.params["review"])))

    @_route("POST", r"/pulls/(?P<number>\d+)/reviews")
    def _create_review(self, call: _Call) -> _Reply:
        repo, body = call.repo, call.body if isinstance(call.body, dict) else {}
        pull = repo.pull(call.params["number"])
        event = body.get("event")
        if event is not None and event not in _REVIEW_STATES:
            raise _invalid("PullRequestReview", "event")
        text = body.get("body") or ""
        if call.user == pull.user and event in ("APPROVE", "REQUEST_CHANGES"):
            verb = "approve" if event == "APPROVE" else "request changes on"
            raise GitHubError(422, "Unprocessable Entity", [f"Review Can not {verb} your own pull request"])
        if event in ("REQUEST_CHANGES", "COMMENT") and not text:
            raise GitHubError(422, "Unprocessable Entity", [f"Review body is required for {event}"])
        commit_id = body.get("commit_id") or pull.head_sha
        if repo.git.resolve(commit_id) != commit_id:
            raise _invalid("PullRequestReview", "commit_id")
        review = _Review(
            id=self._next_id(),
            user=call.user,
            body=text,
            state=_REVIEW_STATES[event] if event else "PENDING",
            commit_id=commit_id,
            submitted_at=_now() if event else None,
        )
        pull.reviews.append(review)
        pull.updated_at = _now()
        return _Reply(200, call.view.review(repo, pull, review))

    @_route("PUT", r"/pulls/(?P<number>\d+)/reviews/(?P<review>\d+)/dismissals")
    def _dismiss_review(self, call: _Call) -> _Reply:
        pull = call.repo.pull(call.params["number"])
        review = self._review_of(pull, call.params["review"])
        _required(call.body, "message", "PullRequestReview")
        if review.state not in ("APPROVED", "CHANGES_REQUESTED"):
            raise GitHubError(422, "Unprocessable Entity", [f"Can not dismiss a {review.state.lower()} review"])
        review.state = "DISMISSED"
        pull.updated_at = _now()
        return _Reply(200, call.view.review(call.repo, pull, review))

    @staticmethod
    def _review_of(pull: _Pull, review_id: str) -> _Review:
        for review in pull.reviews:
            if review.id == int(review_id):
                return review
        raise GitHubError(404, "Not Found")

    # merging

    @_route("GET", r"/pulls/(?P<number>\d+)/merge")
    def _is_merged(self, call: _Call) -> _Reply:
        if call.repo.pull(call.params["number"]).merged_at is None:
            raise GitHubError(404, "Not Found")
        return _Reply(204)

    @_route("PUT", r"/pulls/(?P<number>\d+)/merge")
    def _merge(self, call: _Call) -> _Reply:
        repo, body = call.repo, call.body if isinstance(call.body, dict) else {}
        branches = call.branches
        pull = repo.pull(call.params["number"])
        method = body.get("merge_method", "merge")
        if method not in _MERGE_METHODS:
            raise _invalid("PullRequest", "merge_method")
        if pull.state != "open" or pull.head not in branches:
            raise GitHubError(405, "Pull Request is not mergeable")
        if body.get("sha") and body["sha"] != pull.head_sha:
            raise GitHubError(409, "Head branch was modified. Review and try the merge again.")
        if pull.draft:
            raise GitHubError(405, "Pull Request is still a draft")
        comparison = repo.git.compare(pull.base_sha, pull.head_sha)
        if comparison is None or not comparison.mergeable:
            raise GitHubError(405, "Pull Request is not mergeable")
        if method == "merge":
            title = body.get("commit_title") or f"Merge pull request #{pull.number} from {repo.owner}/{pull.head}"
            message = f"{title}\n\n{body.get('commit_message') or pull.title}"
        else:
            title = body.get("commit_title") or f"{pull.title} (#{pull.number})"
            message = f"{title}\n\n{body.get('commit_message') or pull.body or ''}".rstrip()
        merger = _Person(call.user, f"{_stable_id(call.user)}+{call.user}@users.noreply.github.com", _now())
        tip = repo.git.merge(pull.base, pull.base_sha, pull.head_sha, method, message, merger)
        now = _now()
        pull.state, pull.closed_at, pull.merged_at, pull.updated_at = "closed", now, now, now
        pull.merged_by, pull.merge_commit_sha = call.user, tip
        return _Reply(200, {"sha": tip, "merged": True, "message": "Pull Request successfully merged"})

    # commits, statuses, check runs

    def _commit_of(self, call: _Call) -> str:
        sha = call.repo.git.resolve(call.params["ref"])
        if sha is None:
            raise GitHubError(422, f"No commit found for SHA: {call.params['ref']}")
        return sha

    @_route("GET", "/commits/(?P<ref>.+)/status")
    def _combined_status(self, call: _Call) -> _Reply:
        return _Reply(200, call.view.combined_status(call.repo, self._commit_of(call)))

    @_route("GET", "/commits/(?P<ref>.+)/check-runs")
    def _list_check_runs(self, call: _Call) -> _Reply:
        sha = self._commit_of(call)
        runs = [r for r in reversed(call.repo.check_runs) if r.head_sha == sha]
        if call.query.get("filter", "latest") == "latest":
            newest = {r.name: r for r in reversed(runs)}  # newest run of each name wins
            runs = [r for r in runs if newest[r.name] is r]
        if call.query.get("check_name"):
            runs = [r for r in runs if r.name == call.query["check_name"]]
        if call.query.get("status"):
            runs = [r for r in runs if r.status == call.query["status"]]
        return self._page(
            call,
            runs,
            lambda r: call.view.check_run(call.repo, r),
            lambda page: {"total_count": len(runs), "check_runs": page},
        )

    @_route("GET", "/commits/(?P<ref>.+)")
    def _get_commit(self, call: _Call) -> _Reply:
        return _Reply(200, call.view.commit(call.repo, self._commit_of(call)))

    @_route("POST", "/statuses/(?P<ref>[^/]+)")
    def _create_status(self, call: _Call) -> _Reply:
        sha = self._commit_of(call)
        state = _required(call.body, "state", "Status")
        if state not in _STATUS_STATES:
            raise _invalid("Status", "state")
        status = _Status(
            id=self._next_id(),
            sha=sha,
            state=state,
            context=call.body.get("context") or "default",
            description=call.body.get("description"),
            target_url=call.body.get("target_url"),
            creator=call.user,
            created_at=_now(),
        )
        call.repo.statuses.append(status)
        return _Reply(201, call.view.status(call.repo, status))

    @_route("GET", "/statuses/(?P<ref>[^/]+)")
    def _list_statuses(self, call: _Call) -> _Reply:
        sha = self._commit_of(call)
        statuses = [s for s in reversed(call.repo.statuses) if s.sha == sha]
        return self._page(call, statuses, lambda s: call.view.status(call.repo, s))

    @_route("POST", "/check-runs")
    def _create_check_run(self, call: _Call) -> _Reply:
        name = _required(call.body, "name", "CheckRun")
        head_sha = _required(call.body, "head_sha", "CheckRun")
        if call.repo.git.resolve(head_sha) != head_sha:
            raise _invalid("CheckRun", "head_sha")
        suite = call.repo.check_suites.setdefault(head_sha, self._next_id())
        run = _CheckRun(self._next_id(), suite, head_sha, str(name), "queued", None, _now(), None, None, None, {})
        self._apply_check_run(run, call.body)
        call.repo.check_runs.append(run)
        return _Reply(201, call.view.check_run(call.repo, run))

    @_route("GET", r"/check-runs/(?P<run>\d+)")
    def _get_check_run(self, call: _Call) -> _Reply:
        return _Reply(200, call.view.check_run(call.repo, self._check_run_of(call)))

    @_route("PATCH", r"/check-runs/(?P<run>\d+)")
    def _update_check_run(self, call: _Call) -> _Reply:
        run = self._check_run_of(call)
        self._apply_check_run(run, call.body if isinstance(call.body, dict) else {})
        return _Reply(200, call.view.check_run(call.repo, run))

    @staticmethod
    def _check_run_of(call: _Call) -> _CheckRun:
        for run in call.repo.check_runs:
            if run.id == int(call.params["run"]):
                return run
        raise GitHubError(404, "Not Found")

    @staticmethod
    def _apply_check_run(run: _CheckRun, body: dict[str, Any]) -> None:
        status, conclusion = body.get("status", run.status), body.get("conclusion", run.conclusion)
        if conclusion is not None:
            status = "completed"  # as on GitHub: a conclusion completes the run
        if status not in _CHECK_STATUSES:
            raise _invalid("CheckRun", "status")
        if conclusion not in (None, *_CHECK_CONCLUSIONS) or (status == "completed" and conclusion is None):
            raise _invalid("CheckRun", "conclusion")
        run.status, run.conclusion = status, conclusion
        for key in ("name", "details_url", "external_id", "started_at", "completed_at"):
            if key in body:
                setattr(run, key, body[key])
        if status == "completed" and run.completed_at is None:
            run.completed_at = _now()
        output = body.get("output")
        if isinstance(output, dict):
            run.output = {k: output.get(k) for k in ("title", "summary", "text")}

    # labels and comments (a pull request is also an issue)

    @_route("GET", r"/issues/(?P<number>\d+)/labels")
    def _list_labels(self, call: _Call) -> _Reply:
        pull = call.repo.pull(call.params["number"])
        return self._page(call, pull.labels, lambda name: call.view.label(call.repo, call.repo.labels[name]))

    @_route("POST", r"/issues/(?P<number>\d+)/labels")
    def _add_labels(self, call: _Call) -> _Reply:
        repo, pull = call.repo, call.repo.pull(call.params["number"])
        names = call.body.get("labels") if isinstance(call.body, dict) else call.body
        if not isinstance(names, list):
            raise _invalid("Label", "labels")
        for item in names:
            name = item.get("name") if isinstance(item, dict) else item
            if not isinstance(name, str) or not name:
                raise _invalid("Label", "name")
            if name not in repo.labels:
                repo.labels[name] = _Label(self._next_id(), name, "ededed", None)
            if name not in pull.labels:
                pull.labels.append(name)
        pull.updated_at = _now()
        return _Reply(200, [call.view.label(repo, repo.labels[name]) for name in pull.labels])

    @_route("DELETE", r"/issues/(?P<number>\d+)/labels/(?P<label>.+)")
    def _remove_label(self, call: _Call) -> _Reply:
        repo, pull = call.repo, call.repo.pull(call.params["number"])
        if call.params["label"] not in pull.labels:
            raise GitHubError(404, "Label does not exist")
        pull.labels.remove(call.params["label"])
        pull.updated_at = _now()
        return _Reply(200, [call.view.label(repo, repo.labels[name]) for name in pull.labels])

    @_route("GET", r"/issues/(?P<number>\d+)/comments")
    def _list_comments(self, call: _Call) -> _Reply:
        pull = call.repo.pull(call.params["number"])
        return self._page(call, pull.comments, lambda c: call.view.comment(call.repo, pull, c))

    @_route("POST", r"/issues/(?P<number>\d+)/comments")
    def _create_comment(self, call: _Call) -> _Reply:
        pull = call.repo.pull(call.params["number"])
        comment = _Comment(self._next_id(), call.user, str(_required(call.body, "body", "IssueComment")), _now())
        pull.comments.append(comment)
        pull.updated_at = _now()
        return _Reply(201, call.view.comment(call.repo, pull, comment))


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], standin: GitHubStandIn) -> None:
        super().__init__(address, _RequestHandler)
        self.standin = standin
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End idle keep-alive connections so that their threads finish with the server."""
        with self._connections_lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):  # already closed by the client
                    connection.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients pool connections
    disable_nagle_algorithm = True  # without TCP_NODELAY each answer waits ~40 ms for the client's ACK
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        reply = self.server.standin._respond(self.command, self.path, self.headers, raw)
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def serve(repos: Mapping[str, Path], port: int = 0) -> None:
    """Serve the stand-in until SIGINT or SIGTERM (for ``promoflow sandbox github``); prints the URL."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with GitHubStandIn(repos, port) as standin:
            print(f"Simulated GitHub REST API for {', '.join(repos)} at {standin.url}", flush=True)
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="promoflow sandbox github",
        description="Serve a simulated GitHub REST API, backed by bare git repositories, until Ctrl-C or SIGTERM.",
    )
    parser.add_argument(
        "--repo",
        action="append",
        required=True,
        metavar="OWNER/NAME=BARE_REPO_PATH",
        help="a repository to serve, backed by a bare git repository (repeatable)",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)
    repos: dict[str, Path] = {}
    for spec in args.repo:
        name, equals, path = spec.partition("=")
        if not equals or not path:
            parser.error(f"--repo takes OWNER/NAME=BARE_REPO_PATH, not {spec!r}")
        repos[name] = Path(path)
    try:
        serve(repos, args.port)
    except ValueError as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
