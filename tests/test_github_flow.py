"""The whole pipeline through the GitHub stand-in: real PyGithub, real HTTP, the stand-in merging in the real bare
repository promoflow clones; plus the directory layout and the branch mode, end to end, with both forges."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from github import Auth, Github

from promoflow.sandbox.github import GitHubStandIn
from tests.conftest import Sandbox
from tests.helpers import start_cli, wait_for

pytestmark = pytest.mark.prefect

REPO = "acme/deploy"
TOKEN = "ghp_promoflowFlowToken0123456789"
TOKENS = {TOKEN: "promoflow-bot"}
PEOPLE = {"PROMOFLOW_USER": "rita", "PF_TEST_GITHUB_TOKEN": TOKEN}

APP = """
apps:
  - name: web
    path: apps/web
    images:
      - name: registry.example.com/demo/web
        source: {oci_layout: .promoflow/demo/oci/web}
        policy: {semver: ">=1.0.0 <2"}
"""


def github_section(url: str, method: str = "merge", poll_seconds: int = 2) -> str:
    return f"""
  forge: github
  github:
    repository: {REPO}
    api_url: {url}
    token: env:PF_TEST_GITHUB_TOKEN
    merge_method: {method}
    poll_seconds: {poll_seconds}
"""


@pytest.fixture(autouse=True)
def _server(prefect_api: str) -> None:
    """Every test here talks to the session's Prefect server."""


@pytest.fixture
def github(sandbox: Sandbox) -> Iterator[GitHubStandIn]:
    with GitHubStandIn({REPO: sandbox.repo}, tokens=TOKENS) as standin:
        yield standin


def configure(sandbox: Sandbox, repository: str, environments: str) -> None:
    sandbox.config.write_text(
        f"version: 1\nrepository:\n  url: .promoflow/demo/repo.git\n{repository}\nenvironments:{environments}\n{APP}"
    )
    check = sandbox.cli("validate")
    assert check.returncode == 0, check.stdout + check.stderr


def finish(process: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out + err


def repo(standin: GitHubStandIn) -> Any:
    gh = Github(base_url=standin.url, auth=Auth.Token(TOKEN), seconds_between_requests=0, seconds_between_writes=0)
    return gh.get_repo(REPO)


def pulls(standin: GitHubStandIn) -> list[Any]:
    return list(repo(standin).get_pulls(state="all", sort="created", direction="asc"))


def merged(standin: GitHubStandIn, number: int) -> bool:
    return bool(repo(standin).get_pull(number).merged)


def open_pull(standin: GitHubStandIn, base: str) -> Any:
    return wait_for(
        lambda: next((p for p in pulls(standin) if p.base.ref == base and p.state == "open" and p.labels), None),
        what=f"a pull request into {base}",
    )


def history(sandbox: Sandbox, env: str) -> list[dict[str, Any]]:
    data = sandbox.cli_json("history", "web", "--env", env)
    assert isinstance(data, list)
    return data


def state_of(sandbox: Sandbox, env: str) -> str:
    promotions = [p for p in history(sandbox, env) if p["kind"] == "promotion"]
    return promotions[0]["state"] if promotions else "none"


def test_pipeline_dev_staging_prod_through_github_reviews_and_checks(sandbox: Sandbox, github: GitHubStandIn) -> None:
    configure(
        sandbox,
        github_section(github.url),
        """
  - name: dev
    branch: env/dev
  - name: staging
    branch: env/staging
    approval: {required: 1, approvers: [alice, rita, mallory-not]}
    checks: [ci/test]
  - name: prod
    branch: env/prod
    approval: {required: 2, approvers: [alice, bob, carol], sources: [forge, cli]}
""",
    )
    sandbox.publish("1.2.0")
    pipeline = start_cli(sandbox, "pipeline", "web", env=PEOPLE)

    staging = open_pull(github, "env/staging")
    assert {label.name for label in staging.labels} == {"promotion", "env:staging"}
    assert "1.2.0" in staging.title and "sha256:" in staging.body and "```diff" in staging.body
    github.review(REPO, staging.number, "rita", "APPROVE")  # rita requested the promotion
    github.review(REPO, staging.number, "mallory", "APPROVE")  # not an allowed approver
    base = sandbox.git("rev-parse", "env/staging").strip()
    github.review(REPO, staging.number, "alice", "APPROVE", commit_id=base)  # on an older commit: stale
    wait_for(lambda: state_of(sandbox, "staging") == "awaiting_approval", what="staging to wait")

    def alices_review() -> dict[str, Any] | None:
        promotion = next((p for p in history(sandbox, "staging") if p["kind"] == "promotion"), None)
        return next((a for a in (promotion or {}).get("approvals", []) if a["approver"] == "alice"), None)

    # judged on its own (the missing check would also hold the merge): a stale approval does not count
    stale = wait_for(alices_review, what="alice's review of the older commit to be judged")
    assert (stale["counted"], stale["reason"].split(":")[0]) == (False, "stale"), stale
    assert not merged(github, staging.number)

    github.review(REPO, staging.number, "alice", "APPROVE")  # on the head: counts; the check is still missing

    def staging_waits_for_the_check() -> dict[str, Any] | None:
        rows = sandbox.cli_json("status")
        assert isinstance(rows, list)
        waiting = next(row for row in rows if row["environment"] == "staging")["waiting"]
        return waiting[0] if waiting and waiting[0]["approvals"] == {"counted": 1, "required": 1} else None

    wait = wait_for(staging_waits_for_the_check, what="status to show staging waiting for its check")
    assert wait["waiting_for"].startswith("approvals 1 of 1; checks ci/test") and "ci/test" in wait["checks"]
    assert wait["may_approve"] == "alice, mallory-not; from forge"
    assert wait["decide"] == [f"review at {staging.html_url}"]
    time.sleep(3)
    assert not merged(github, staging.number), "merged without the required check"
    github.set_status(REPO, staging.head.sha, "success", context="ci/test")

    prod = open_pull(github, "env/prod")
    assert merged(github, staging.number)
    github.review(REPO, prod.number, "carol", "REQUEST_CHANGES", body="not on a Friday")
    github.review(REPO, prod.number, "alice", "APPROVE")
    github.review(REPO, prod.number, "bob", "APPROVE")
    time.sleep(5)
    assert not merged(github, prod.number), "a change request must block"
    github.review(REPO, prod.number, "carol", "APPROVE")  # carol changes her mind: no longer blocking

    code, output = finish(pipeline)
    assert code == 0, output
    assert merged(github, prod.number)
    assert "TOKEN" not in output and TOKEN not in output

    staged = next(p for p in history(sandbox, "staging") if p["kind"] == "promotion")
    reasons = {(a["approver"], a["counted"]): a["reason"] for a in staged["approvals"] if a["source"] == "forge"}
    assert reasons[("rita", False)] == "rita requested this promotion and cannot approve it"
    assert "not an allowed approver" in reasons[("mallory", False)]
    assert reasons[("alice", False)].startswith("superseded") or reasons[("alice", False)].startswith("stale")
    assert reasons[("alice", True)] == "counted"
    merge_commit = staged["merge_commit"]
    assert sandbox.git("rev-parse", "env/staging").strip() == merge_commit
    statuses = repo(github).get_commit(merge_commit).get_combined_status().statuses
    assert {(s.context, s.state) for s in statuses} == {("promoflow/staging", "success")}

    released = next(p for p in history(sandbox, "prod") if p["kind"] == "promotion")
    assert released["state"] == "succeeded"
    counted = sorted(a["approver"] for a in released["approvals"] if a["counted"])
    assert counted == ["alice", "bob", "carol"]
    assert len(pulls(github)) == 3  # one per environment, none twice


def test_a_failing_required_check_ends_the_promotion_with_its_message(sandbox: Sandbox, github: GitHubStandIn) -> None:
    configure(
        sandbox,
        github_section(github.url),
        """
  - name: dev
    branch: env/dev
    checks: [ci/test]
""",
    )
    sandbox.publish("1.2.0")
    promote = start_cli(sandbox, "promote", "web", "--to", "dev", env=PEOPLE)
    pull = open_pull(github, "env/dev")
    github.set_status(REPO, pull.head.sha, "failure", context="ci/test", description="3 tests failed")
    code, output = finish(promote)
    assert code == 1
    assert "Required check ci/test failed on pull request" in output and "3 tests failed" in output
    assert "Traceback" not in output
    assert not merged(github, pull.number)
    comments = [c.body for c in repo(github).get_pull(pull.number).get_issue_comments()]
    assert comments and "Required check ci/test failed" in comments[-1]


@pytest.mark.parametrize("method", ["merge", "squash", "rebase"])
def test_each_merge_method_lands_the_release(sandbox: Sandbox, github: GitHubStandIn, method: str) -> None:
    configure(sandbox, github_section(github.url, method), "\n  - name: dev\n    branch: env/dev\n")
    sandbox.publish("1.2.0")
    before = sandbox.git("rev-parse", "env/dev").strip()
    result = sandbox.cli("promote", "web", "--to", "dev", env=PEOPLE)
    assert result.returncode == 0, result.stdout + result.stderr

    head = sandbox.git("rev-parse", "env/dev").strip()
    parents = sandbox.git("rev-list", "--parents", "-n", "1", head).split()[1:]
    assert len(parents) == (2 if method == "merge" else 1)
    if method != "merge":
        assert parents == [before]  # one new commit on top of the environment
    assert "1.2.0" in sandbox.git("show", f"{head}:apps/web/kustomization.yaml")
    (promotion,) = [p for p in history(sandbox, "dev") if p["kind"] == "promotion"]
    assert promotion["merge_commit"] == head and promotion["state"] == "succeeded"


def test_a_rerun_after_a_crash_reuses_the_pull_request(sandbox: Sandbox, github: GitHubStandIn) -> None:
    configure(sandbox, github_section(github.url), "\n  - name: dev\n    branch: env/dev\n")
    sandbox.publish("1.2.0")
    crashed = sandbox.cli("promote", "web", "--to", "dev", env={**PEOPLE, "PROMOFLOW_FAILPOINTS": "after-open-request"})
    assert crashed.returncode == -9, crashed.stderr
    assert len(pulls(github)) == 1

    rerun = sandbox.cli("promote", "web", "--to", "dev", env=PEOPLE)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    (pull,) = pulls(github)
    assert pull.merged
    (promotion,) = [p for p in history(sandbox, "dev") if p["kind"] == "promotion"]
    opened = [s for s in promotion["steps"] if s["name"] == "open_request"]
    assert [s["outcome"] for s in opened] == ["interrupted", "succeeded"]  # killed before its outcome was recorded
    assert (opened[1]["detail"]["created"], opened[1]["detail"]["number"]) == (False, pull.number)


def test_a_missing_token_says_where_to_put_it_and_opens_nothing(sandbox: Sandbox, github: GitHubStandIn) -> None:
    configure(sandbox, github_section(github.url), "\n  - name: dev\n    branch: env/dev\n")
    sandbox.publish("1.2.0")
    result = sandbox.cli("promote", "web", "--to", "dev", env={"PF_TEST_GITHUB_TOKEN": ""})
    assert result.returncode == 1
    assert "The GitHub token is missing: set the environment variable PF_TEST_GITHUB_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
    assert pulls(github) == []


# -- the directory layout and the branch mode ------------------------------------------------------------


def directories_repository(sandbox: Sandbox) -> None:
    """Rewrite the sandbox repository as one `main` branch with clusters/<env>/apps/web."""
    with tempfile.TemporaryDirectory() as work:
        tree = Path(work) / "tree"
        subprocess.run(["git", "clone", "-q", "-b", "main", str(sandbox.repo), str(tree)], check=True)
        for env in ("dev", "staging", "prod"):
            target = tree / "clusters" / env / "apps" / "web"
            target.mkdir(parents=True)
            for name in ("kustomization.yaml", "deployment.yaml", "service.yaml"):
                (target / name).write_text(sandbox.git("show", f"env/{env}:apps/web/{name}"))
        identity = ["-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
        subprocess.run(["git", "-C", str(tree), "add", "-A"], check=True)
        subprocess.run(["git", "-C", str(tree), *identity, "commit", "-qm", "environments as directories"], check=True)
        subprocess.run(["git", "-C", str(tree), "push", "-q", "origin", "main"], check=True)


@pytest.mark.parametrize("forge", ["local", "github"])
def test_directory_layout_promotes_each_environment_directory(
    sandbox: Sandbox, github: GitHubStandIn, forge: str
) -> None:
    directories_repository(sandbox)
    repository = "  layout: directories\n" + (github_section(github.url) if forge == "github" else "")
    configure(sandbox, repository, "\n  - name: dev\n  - name: staging\n")
    sandbox.publish("1.2.0")
    result = sandbox.cli("pipeline", "web", env=PEOPLE)
    assert result.returncode == 0, result.stdout + result.stderr

    for env in ("dev", "staging"):
        assert "1.2.0" in sandbox.git("show", f"main:clusters/{env}/apps/web/kustomization.yaml")
    assert "1.2.0" not in sandbox.git("show", "main:clusters/prod/apps/web/kustomization.yaml")
    for promotion in history(sandbox, "staging"):
        if promotion["kind"] == "promotion":
            changed = next(s for s in promotion["steps"] if s["name"] == "prepare")["detail"]["files"]
            assert changed and all(f.startswith("clusters/staging/apps/web/") for f in changed)  # its own only
    assert len(pulls(github)) == (2 if forge == "github" else 0)


@pytest.mark.parametrize("forge", ["local", "github"])
def test_branch_mode_merges_the_previous_environment_branch(
    sandbox: Sandbox, github: GitHubStandIn, forge: str
) -> None:
    # Branch mode is for environment branches that stay identical: start them so.
    sandbox.git("update-ref", "refs/heads/env/staging", sandbox.git("rev-parse", "env/dev").strip())
    repository = "  promote: branch\n" + (github_section(github.url) if forge == "github" else "")
    configure(sandbox, repository, "\n  - name: dev\n    branch: env/dev\n  - name: staging\n    branch: env/staging\n")
    sandbox.publish("1.2.0")
    result = sandbox.cli("pipeline", "web", env=PEOPLE)
    assert result.returncode == 0, result.stdout + result.stderr

    dev, staging = (sandbox.git("rev-parse", f"env/{e}").strip() for e in ("dev", "staging"))
    # staging took dev's branch as it was: dev's head is in staging, and their trees are the same
    subprocess.run(["git", "--git-dir", str(sandbox.repo), "merge-base", "--is-ancestor", dev, staging], check=True)
    assert sandbox.git("diff", "env/dev", "env/staging", "--", "apps") == ""
    (promotion,) = [p for p in history(sandbox, "staging") if p["kind"] == "promotion"]
    assert promotion["request_branch"] == "env/dev"
    if forge == "github":
        (_, into_staging) = pulls(github)
        assert (into_staging.head.ref, into_staging.base.ref, into_staging.merged) == ("env/dev", "env/staging", True)


# -- webhooks wake the wait -------------------------------------------------------------------------------


def test_a_review_webhook_becomes_the_event_that_wakes_waiting_promotions(sandbox: Sandbox) -> None:
    """The receiver turns a signed `pull_request_review` delivery into a Prefect event on the real server; the
    approval wait of that repository sees it (and the wait of another repository does not)."""
    import asyncio
    import hashlib
    import hmac
    import json

    import httpx

    from flows.driver import Wake
    from promoflow.forges.github import EVENT_PREFIX
    from promoflow.webhooks import create_app

    secret = "a-webhook-secret-of-some-length"
    app = create_app(sandbox.config, secret)
    ours, theirs = (Wake((EVENT_PREFIX,), (f"{EVENT_PREFIX}{repo}",)) for repo in (REPO, "acme/other"))
    since = ours.since
    assert not ours.arrived()
    body = json.dumps(
        {"action": "submitted", "repository": {"full_name": REPO}, "pull_request": {"number": 7}, "review": {}}
    ).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()

    async def deliver(signed: str, delivery: str = "delivery-1") -> httpx.Response:
        headers = {
            "x-github-event": "pull_request_review",
            "x-github-delivery": delivery,
            "x-hub-signature-256": signed,
            "content-type": "application/json",
        }
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver") as client:
            return await client.post("/hooks/github", content=body, headers=headers)

    # a forged delivery first (its own delivery id: were it acted on, its event would be a second one)
    assert asyncio.run(deliver("sha256=" + "0" * 64, "delivery-forged")).status_code == 401
    answer = asyncio.run(deliver(signature))
    assert answer.status_code == 200, answer.text
    assert asyncio.run(deliver(signature)).json()["duplicate"] is True
    wait_for(ours.arrived, timeout=20, what="the review event")
    assert not theirs.arrived()
    time.sleep(2)  # anything sent before the signed delivery has had time to arrive after it
    assert [str(e.id) for e in _events(EVENT_PREFIX, f"{EVENT_PREFIX}{REPO}", since)] == [answer.json()["event"]]


def _events(prefix: str, resource: str, since: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    event_filter = EventFilter(
        event=EventNameFilter(prefix=[prefix]),
        resource=EventResourceFilter(id=[resource]),
        occurred=EventOccurredFilter(since=since),
    )
    with get_client(sync_client=True) as client:
        return list(client.read_events(filter=event_filter, limit=50).events)


def test_a_review_webhook_wakes_a_waiting_promotion_long_before_its_next_poll(
    sandbox: Sandbox, github: GitHubStandIn
) -> None:
    """A promotion waiting for a review looks at GitHub every 10 minutes; the receiver's event of the review wakes
    it within seconds (catches issue 16, behaviour 9: the wait never woken by webhooks, only by polling)."""
    import asyncio
    import hashlib
    import hmac
    import json

    import httpx

    from promoflow.webhooks import create_app

    configure(
        sandbox,
        github_section(github.url).replace("poll_seconds: 2", "poll_seconds: 600"),
        """
  - name: dev
    branch: env/dev
    approval: {required: 1, approvers: [alice], sources: [forge]}
""",
    )
    sandbox.publish("1.2.0")
    promote = start_cli(sandbox, "promote", "web", "--to", "dev", env=PEOPLE)
    pull = open_pull(github, "env/dev")
    wait_for(lambda: state_of(sandbox, "dev") == "awaiting_approval", what="the promotion to wait")
    github.review(REPO, pull.number, "alice", "APPROVE")

    secret = "a-webhook-secret-of-some-length"
    app = create_app(sandbox.config, secret)
    body = json.dumps(
        {"action": "submitted", "repository": {"full_name": REPO}, "pull_request": {"number": pull.number}}
    ).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()

    async def deliver(delivery: str) -> int:
        headers = {
            "x-github-event": "pull_request_review",
            "x-github-delivery": delivery,
            "x-hub-signature-256": signature,
            "content-type": "application/json",
        }
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver") as client:
            return (await client.post("/hooks/github", content=body, headers=headers)).status_code

    # GitHub delivers once; here again every few seconds, so that a delivery racing the wait's start cannot be
    # the only one. 90 s is far below the 600 s poll: only an event can have woken it.
    deadline = time.monotonic() + 90
    attempt = 0
    try:
        while promote.poll() is None and time.monotonic() < deadline:
            attempt += 1
            assert asyncio.run(deliver(f"review-{attempt}")) == 200
            time.sleep(3)
        assert promote.poll() is not None, "the review's event did not wake the promotion"
    finally:
        if promote.poll() is None:
            promote.kill()
            promote.wait()
    code, output = finish(promote)
    assert code == 0, output
    assert merged(github, pull.number) and state_of(sandbox, "dev") == "succeeded"


def test_a_cli_approval_counts_alongside_a_review_where_the_policy_allows_both(
    sandbox: Sandbox, github: GitHubStandIn
) -> None:
    """The run waits paused with the approval form while it keeps looking at GitHub: `promoflow approve`
    resumes it with a decision, which counts together with the review on the pull request."""
    configure(
        sandbox,
        github_section(github.url),
        """
  - name: dev
    branch: env/dev
    approval: {required: 2, approvers: [alice, bob], sources: [forge, cli]}
""",
    )
    sandbox.publish("1.2.0")
    promote = start_cli(sandbox, "promote", "web", "--to", "dev", env=PEOPLE)
    pull = open_pull(github, "env/dev")
    github.review(REPO, pull.number, "alice", "APPROVE")
    waiting = wait_for(
        lambda: next((p for p in history(sandbox, "dev") if p["state"] == "awaiting_approval"), None),
        what="the promotion to wait",
    )
    approved = sandbox.cli("approve", str(waiting["id"]), "--as", "bob", env=PEOPLE)
    assert approved.returncode == 0, approved.stdout + approved.stderr

    code, output = finish(promote)
    assert code == 0, output
    assert merged(github, pull.number)
    (promotion,) = [p for p in history(sandbox, "dev") if p["kind"] == "promotion"]
    counted = sorted((a["approver"], a["source"]) for a in promotion["approvals"] if a["counted"])
    assert counted == [("alice", "forge"), ("bob", "cli")]


def test_a_pull_request_held_by_a_freeze_has_a_pending_window_status_until_it_is_lifted(
    sandbox: Sandbox, github: GitHubStandIn
) -> None:
    configure(sandbox, github_section(github.url), "\n  - name: dev\n    branch: env/dev\n")
    sandbox.publish("1.2.0")
    assert sandbox.cli("freeze", "dev", "--reason", "launch review", "--as", "olga").returncode == 0
    promote = start_cli(sandbox, "promote", "web", "--to", "dev", env=PEOPLE)
    pull = open_pull(github, "env/dev")

    def window() -> list[tuple[str, str]]:
        statuses = repo(github).get_commit(pull.head.sha).get_combined_status().statuses
        return [(s.state, s.description) for s in statuses if s.context == "promoflow/window"]

    held = wait_for(window, what="the window status on the held pull request")
    assert held == [("pending", "the freeze of dev to end: launch review (olga, until lifted)")]
    assert not merged(github, pull.number)
    assert sandbox.cli("unfreeze", "dev").returncode == 0
    code, output = finish(promote)
    assert code == 0, output
    assert merged(github, pull.number) and window() == [("success", "dev takes it now")]
