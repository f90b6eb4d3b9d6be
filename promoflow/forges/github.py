"""The github forge: a promotion request is a pull request; reviews are approvals, statuses and checks are gates.

Talks to GitHub (or GitHub Enterprise, or the stand-in in ``promoflow.sandbox.github``) through PyGithub.
Every public method maps PyGithub's failures onto promoflow's errors: ``TerminalError`` for what a person
must fix (a bad token, a missing permission, an unmergeable pull request), ``NotFound`` for a repository or
pull request that is not there, ``TransientError`` for what a retry can fix (5xx, rate limits, timeouts).
The token never appears in a message.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from promoflow import links
from promoflow.approvals import Decided, identity, judge, tally
from promoflow.config import ApprovalPolicy
from promoflow.errors import NotFound, TerminalError, TransientError
from promoflow.forges import ContextState, GateContext, GateStatus, Look, Request, ReviewDecision, StatusState, register
from promoflow.redact import redact

if TYPE_CHECKING:
    from github import Github
    from github.PullRequest import PullRequest
    from github.Repository import Repository

    from promoflow.project import Project
    from promoflow.records import Promotion

MergeMethod = Literal["merge", "squash", "rebase"]

# Client settings, chosen rather than inherited from PyGithub's defaults:
# - Retries: 5 at most, with exponential backoff (0, 1, 2, 4, 8 s), on 5xx and on rate limits that say when
#   to come back; a primary rate limit further away than RATE_LIMIT_WAIT_SECONDS is raised (as transient)
#   instead of blocking a worker until the hourly reset. PyGithub's default retries 10 times without delay.
# - Throttling: GitHub asks integrations not to burst writes. A promotion makes a handful of requests, so a
#   short pause costs nothing; PyGithub's defaults (0.25 s per request, 1 s per write) cost seconds each.
RETRY_TOTAL = 5
RETRY_BACKOFF_FACTOR = 0.5
RETRY_STATUSES = (500, 502, 503, 504)
RATE_LIMIT_WAIT_SECONDS = 120
SECONDS_BETWEEN_REQUESTS = 0.05
SECONDS_BETWEEN_WRITES = 0.25
TIMEOUT_SECONDS = 15
PER_PAGE = 100
GITHUB_API = "https://api.github.com"
# Prefect events the webhook receiver emits for reviews, statuses and check runs of a repository (resource
# `promoflow.github.OWNER/NAME`); a promotion waiting on that repository looks again when one arrives.
EVENT_PREFIX = "promoflow.github."
HOLD_CONTEXT = "promoflow/window"  # the commit status of a pull request held by a freeze, a window or soak

# What the token needs, for the message when GitHub refuses it.
PERMISSIONS = (
    "contents: write, pull requests: write, commit statuses: write, checks: read (and members: read for teams)"
)


@dataclass(frozen=True)
class ForgeVerdict:
    """The reviews on a pull request judged against an environment's approval policy."""

    outcome: Literal["approved", "rejected", "waiting"]
    head_sha: str  # the head the approvals were counted on: merge with exactly this
    approvers: tuple[str, ...]
    missing: int
    rejected_by: str | None
    reviews: tuple[ReviewDecision, ...]


@dataclass(frozen=True)
class PullRequestRef:
    number: int
    url: str
    head_sha: str
    created: bool  # False: an open pull request for the same head and base already existed


_DECISIONS = {"APPROVED": "approve", "CHANGES_REQUESTED": "reject"}
_DECIDING = ("APPROVED", "CHANGES_REQUESTED", "DISMISSED")  # what a reviewer's latest review can be: comments are not
_STATUS_STATES: dict[str, ContextState] = {"success": "success", "pending": "pending"}  # error, failure: failure
_PASSING_CONCLUSIONS = ("success", "neutral", "skipped")
_SEVERITY: tuple[ContextState, ...] = ("failure", "missing", "pending", "success")


class GitHubForge:
    """Promotion requests as pull requests in ``repository`` ("owner/name").

    ``base_url``: None for github.com, ``https://HOST/api/v3`` for GitHub Enterprise Server.
    """

    def __init__(self, repository: str, base_url: str | None, token: str) -> None:
        owner, _, name = repository.partition("/")
        if not owner or not name or "/" in name:
            raise TerminalError(f"GitHub repositories are named OWNER/NAME, not {repository!r}.")
        if not token:
            raise TerminalError(f"No GitHub token given for {repository}: set one with {PERMISSIONS}.")
        self.repository = repository
        self.owner = owner
        self._token = token
        self._client: Github | None = None
        self._base_url = base_url

    # --- promotion requests ------------------------------------------------------------------------

    def open_request(
        self, head: str, base: str, title: str, body: str, labels: list[str], head_sha: str | None = None
    ) -> PullRequestRef:
        """Find the open pull request from ``head`` into ``base``, or the one already merged at ``head_sha`` (the head
        promoflow prepared: a run that ended after GitHub merged it must not open a second), or open it; then make
        sure it has ``labels``."""
        with self._api(f"open a pull request from {head} into {base}"):
            repo = self._repo()
            pull = self._find_open(repo, head, base) or self._find_merged(repo, head, base, head_sha)
            created = pull is None
            if pull is None:
                pull = self._create(repo, head, base, title, body)
            if labels:
                pull.add_to_labels(*labels)  # adding a label it already has is a no-op on GitHub
            return PullRequestRef(pull.number, pull.html_url, pull.head.sha, created)

    def _find_open(self, repo: Repository, head: str, base: str) -> PullRequest | None:
        return next(iter(repo.get_pulls(state="open", head=f"{self.owner}:{head}", base=base)), None)

    def _find_merged(self, repo: Repository, head: str, base: str, head_sha: str | None) -> PullRequest | None:
        if head_sha is None:
            return None
        closed = repo.get_pulls(state="closed", head=f"{self.owner}:{head}", base=base)
        return next((p for p in closed if p.merged_at is not None and p.head.sha == head_sha), None)

    def _create(self, repo: Repository, head: str, base: str, title: str, body: str) -> PullRequest:
        from github import GithubException

        try:
            return repo.create_pull(base=base, head=head, title=title, body=body)
        except GithubException as error:
            # Lost a race with another run (or a retried POST that had gone through): use theirs.
            if error.status == 422 and (found := self._find_open(repo, head, base)) is not None:
                return found
            raise

    def comment(self, number: int, text: str) -> None:
        with self._api(f"comment on pull request #{number}"):
            self._repo().get_issue(number).create_comment(text)

    def close(self, number: int) -> None:
        """Close pull request ``number`` unmerged; one already closed or merged stays as it is."""
        with self._api(f"close pull request #{number}"):
            pull = self._repo().get_pull(number)
            if pull.state == "open":
                pull.edit(state="closed")

    # --- approvals ---------------------------------------------------------------------------------

    def reviews(self, number: int) -> list[ReviewDecision]:
        """Every review on the pull request, oldest first, not judged (see `evaluate`)."""
        with self._api(f"read the reviews of pull request #{number}"):
            return self._reviews(self._repo().get_pull(number))

    def evaluate(
        self,
        number: int,
        policy: ApprovalPolicy,
        requester: str,
        team_members: Mapping[str, set[str]] | None = None,
    ) -> ForgeVerdict:
        """Judge the reviews of pull request ``number`` under ``policy``; every review gets a reason.

        A reviewer's latest approval or change request is their decision (comments do not change it, a
        dismissal withdraws it). Approvals count only on the current head commit, from allowed approvers,
        not from ``requester``. A counted change request rejects until it is dismissed or superseded.
        Entries ``@org/team`` in ``policy.approvers`` stand for the team's members: from ``team_members``
        (keyed by the entry as written) when given there, else asked of GitHub.
        """
        with self._api(f"read the reviews of pull request #{number}"):
            pull = self._repo().get_pull(number)
            head = pull.head.sha
            reviews = self._reviews(pull)
            allowed = self._allowed(policy, team_members or {})
        latest = {identity(r.approver): r.review_id for r in reviews if r.state in _DECIDING}
        for review in reviews:
            review.counted, review.reason = _judge_review(review, latest, head, policy, requester, allowed)
        decided: list[Decided] = list(reviews)
        result = tally(policy, decided)
        return ForgeVerdict(result.outcome, head, result.approvers, result.missing, result.rejected_by, tuple(reviews))

    def _reviews(self, pull: PullRequest) -> list[ReviewDecision]:
        found = [
            ReviewDecision(
                review_id=r.id,
                approver=r.user.login if r.user is not None else "",
                state=r.state,
                decision=_DECISIONS.get(r.state, "none"),
                commit_id=r.commit_id,
                submitted_at=r.submitted_at,
            )
            for r in pull.get_reviews()
        ]
        return sorted(found, key=lambda r: r.review_id)

    def _allowed(self, policy: ApprovalPolicy, team_members: Mapping[str, set[str]]) -> set[str] | None:
        """Identities (`promoflow.approvals.identity`) of the logins allowed to approve, teams expanded; None when
        anyone may."""
        if not policy.approvers:
            return None
        allowed: set[str] = set()
        for entry in policy.approvers:
            if not entry.startswith("@"):
                allowed.add(identity(entry))
            elif entry in team_members:
                allowed |= {identity(login) for login in team_members[entry]}
            else:
                org, _, team = entry[1:].partition("/")
                if not org or not team:
                    raise TerminalError(f"Approver {entry!r} is neither a login nor a team written @org/team.")
                members = self._gh().get_organization(org).get_team_by_slug(team).get_members()
                allowed |= {identity(member.login) for member in members}
        return allowed

    # --- gates -------------------------------------------------------------------------------------

    def gates(self, sha: str, required_contexts: list[str]) -> GateStatus:
        """The required commit statuses and check runs on ``sha``: each one's state, and the overall outcome.

        A context may be a commit status context or a check run name; reported as both, the worse counts.
        """
        found: dict[str, list[GateContext]] = {}
        with self._api(f"read the statuses and checks of commit {sha[:12]}"):
            commit = self._repo().get_commit(sha)
            for status in commit.get_combined_status().statuses:  # the latest status of each context
                state = _STATUS_STATES.get(status.state, "failure")
                found.setdefault(status.context, []).append(
                    GateContext(status.context, state, "status", status.description, status.target_url)
                )
            if any(context not in found for context in required_contexts):
                for run in commit.get_check_runs():  # the latest run of each name
                    if run.status != "completed":
                        state = "pending"
                    else:
                        state = "success" if run.conclusion in _PASSING_CONCLUSIONS else "failure"
                    summary = run.output.summary if run.output is not None else None
                    found.setdefault(run.name, []).append(
                        GateContext(run.name, state, "check_run", summary, run.details_url or run.html_url)
                    )
        contexts = tuple(
            min(found[c], key=lambda g: _SEVERITY.index(g.state))
            if c in found
            else GateContext(c, "missing", None, None, None)
            for c in required_contexts
        )
        states = {g.state for g in contexts}
        outcome: Literal["passed", "pending", "failed"] = (
            "failed" if "failure" in states else "pending" if states - {"success"} else "passed"
        )
        return GateStatus(sha, outcome, contexts)

    def set_commit_status(
        self, sha: str, state: StatusState, context: str, description: str, target_url: str | None = None
    ) -> None:
        """Report promoflow's own status (context ``promoflow/<env>``) on ``sha``; GitHub keeps 140 characters."""
        from github.GithubObject import NotSet

        with self._api(f"set the commit status {context} on {sha[:12]}"):
            self._repo().get_commit(sha).create_status(
                state, target_url=target_url or NotSet, description=description[:140], context=context
            )

    # --- merging -----------------------------------------------------------------------------------

    def merge(self, number: int, method: MergeMethod, expected_head_sha: str, message: str) -> str:
        """Merge pull request ``number`` if its head is still ``expected_head_sha``; returns the merge commit.

        Idempotent: an already merged pull request returns the commit it was merged as.
        """
        from github import GithubException

        title, _, body = message.strip().partition("\n")
        with self._api(f"merge pull request #{number}"):
            pull = self._repo().get_pull(number)
            if pull.is_merged():
                return pull.merge_commit_sha
            if pull.state != "open":
                pull = self._repo().get_pull(number)  # merged since is_merged() asked (a bundle's other member)?
                if pull.is_merged():
                    return pull.merge_commit_sha
                raise TerminalError(f"Pull request #{number} in {self.repository} was closed without merging.")
            try:
                result = pull.merge(
                    merge_method=method, sha=expected_head_sha, commit_title=title, commit_message=body.strip()
                )
            except GithubException as error:
                if error.status == 405 and pull.is_merged():  # an earlier try got through before failing
                    return self._repo().get_pull(number).merge_commit_sha
                if error.status == 405:
                    raise TerminalError(
                        f"Pull request #{number} in {self.repository} is not mergeable: "
                        f"{self._clean(_message(error))}. "
                        "Resolve it on GitHub (conflicts, branch protection, draft), then re-run."
                    ) from None
                if error.status == 409:
                    raise TerminalError(
                        f"The pull request's head moved: #{number} in {self.repository} is no longer at "
                        f"{expected_head_sha[:12]}: re-run to re-check approvals on the new head."
                    ) from None
                raise
            return result.sha

    # --- the client and its errors -------------------------------------------------------------------

    def _gh(self) -> Github:
        if self._client is None:
            import github  # PyGithub is only loaded by pipelines that use this forge

            self._client = github.Github(
                base_url=self._base_url or GITHUB_API,
                auth=github.Auth.Token(self._token),
                retry=github.GithubRetry(
                    total=RETRY_TOTAL,
                    backoff_factor=RETRY_BACKOFF_FACTOR,
                    status_forcelist=list(RETRY_STATUSES),
                    max_rate_limit_wait=RATE_LIMIT_WAIT_SECONDS,
                ),
                timeout=TIMEOUT_SECONDS,
                per_page=PER_PAGE,
                seconds_between_requests=SECONDS_BETWEEN_REQUESTS,
                seconds_between_writes=SECONDS_BETWEEN_WRITES,
                lazy=True,  # no GET for objects we only act on
            )
        return self._client

    def _repo(self) -> Repository:
        return self._gh().get_repo(self.repository)

    def _clean(self, text: str) -> str:
        return redact(text).replace(self._token, "***")

    @contextmanager
    def _api(self, doing: str) -> Iterator[None]:
        """Turn what PyGithub and requests raise while ``doing`` into promoflow's errors."""
        import requests
        from github import GithubException, RateLimitExceededException

        where = f"GitHub ({self.repository})"
        try:
            yield
        except GithubException as error:
            status, detail = error.status, self._clean(_message(error))
            if isinstance(error, RateLimitExceededException) or status == 429:
                raise TransientError(f"Could not {doing}: {where} rate limit reached ({detail}).") from None
            if status == 401:
                raise TerminalError(
                    f"Could not {doing}: {where} rejected the token ({status} {detail}). "
                    f"Set a valid token with {PERMISSIONS}."
                ) from None
            if status == 403:
                raise TerminalError(
                    f"Could not {doing}: {where} refused it ({status} {detail}). "
                    f"The token needs access to {self.repository} with {PERMISSIONS}."
                ) from None
            if status == 404:
                raise NotFound(
                    f"Could not {doing}: {where} answered 404: the repository, pull request or commit does not "
                    "exist, or the token cannot see it."
                ) from None
            if status >= 500 or status == 409:
                raise TransientError(f"Could not {doing}: {where} answered {status} {detail}.") from None
            raise TerminalError(f"Could not {doing}: {where} answered {status} {detail}.") from None
        except requests.exceptions.RetryError as error:
            raise TransientError(f"Could not {doing}: {where} kept failing after retries ({error}).") from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as error:
            raise TransientError(f"Could not {doing}: {where} unreachable ({self._clean(str(error))}).") from None


def _message(error: object) -> str:
    """GitHub's own words from an error body: its message and any listed errors."""
    data = getattr(error, "data", None)
    if not isinstance(data, dict):
        return str(getattr(error, "message", None) or data or "no details")
    parts = [str(data.get("message") or "no details")]
    for item in data.get("errors") or []:
        parts.append(str(item.get("message") or item.get("code") or item) if isinstance(item, dict) else str(item))
    return "; ".join(parts)


def _judge_review(
    review: ReviewDecision,
    latest: Mapping[str, int],
    head: str,
    policy: ApprovalPolicy,
    requester: str,
    allowed: set[str] | None,
) -> tuple[bool, str]:
    if review.state not in _DECIDING:
        return False, f"{review.state.lower()}: not a decision"
    if latest.get(identity(review.approver)) != review.review_id:
        return False, f"superseded by {review.approver}'s later review {latest.get(identity(review.approver))}"
    if review.state == "DISMISSED":
        return False, "dismissed"
    # Team members are allowed approvers by name; `judge` checks the rest (sources, self-approval).
    effective = (
        policy
        if allowed is None or identity(review.approver) not in allowed
        else policy.model_copy(update={"approvers": []})
    )
    verdict = judge(effective, requester, review.approver, "forge")
    if not verdict.counted:
        return False, verdict.reason
    if review.decision == "approve" and review.commit_id != head:
        return False, f"stale: approved {review.commit_id[:12]}, the head is now {head[:12]}"
    return True, "counted"


@register("github")
class PullRequests:
    """The github forge: a promotion request is a pull request; reviews approve, statuses and check runs gate."""

    name = "github"
    wake_events = (EVENT_PREFIX,)

    def __init__(self, project: Project) -> None:
        settings = project.config.repository.github
        assert settings is not None  # the config model requires `github` with `forge: github`
        self.settings = settings
        self.client = project.github
        # the webhook receiver's events about this repository (promoflow.webhooks), not another's
        self.wake_resources = (f"{EVENT_PREFIX}{settings.repository}",)

    def open(self, promotion: Promotion, branch: str, base: str, head: str, title: str, description: str) -> Request:
        labels = ["promotion", f"env:{promotion.environment}"]
        pull = self.client.open_request(branch, base, title, description, labels, head)
        return Request(
            forge=self.name,
            branch=branch,
            base=base,
            head=head,
            title=title,
            description=f"Pull request: [#{pull.number}]({pull.url})\n\n{description}",
            number=pull.number,
            url=pull.url,
            created=pull.created,
        )

    def look(self, request: Request, policy: ApprovalPolicy, requester: str, checks: list[str]) -> Look:
        verdict = self.client.evaluate(_number(request), policy, requester)
        gates = self.client.gates(verdict.head_sha, checks) if checks else None
        return Look(verdict.head_sha, verdict.reviews, gates)

    def merge(self, promotion: Promotion, request: Request, message: str) -> str:
        return self.client.merge(_number(request), self.settings.merge_method, request.head, message)

    def report(self, promotion: Promotion, request: Request | None, state: StatusState, text: str) -> None:
        if promotion.merge_commit:
            context = f"promoflow/{promotion.environment}"
            self.client.set_commit_status(promotion.merge_commit, state, context, text, links.run_url(promotion))

    def hold(self, promotion: Promotion, request: Request, why: str | None) -> None:
        state: StatusState = "pending" if why else "success"
        said = why or f"{promotion.environment} takes it now"
        self.client.set_commit_status(request.head, state, HOLD_CONTEXT, said, links.run_url(promotion))

    def comment(self, request: Request, text: str) -> None:
        self.client.comment(_number(request), text)

    def close(self, request: Request, comment: str) -> None:
        self.client.comment(_number(request), comment)
        self.client.close(_number(request))


def _number(request: Request) -> int:
    if request.number is None:
        raise TerminalError(f"The request from {request.branch} has no pull request number on record: re-run it.")
    return request.number
