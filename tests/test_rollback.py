"""An emergency rollback takes its environment at once: a promotion waiting there for approval is superseded (its
run cancelled, its request closed), and nothing is marked rejected unless the rollback itself got to run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from typing import Any
from uuid import UUID

import pytest

from promoflow.records import Database
from tests.conftest import Sandbox
from tests.helpers import start_cli, status_of, wait_for

pytestmark = pytest.mark.prefect

RITA = {"PROMOFLOW_USER": "rita"}
APPROVAL = "      required: 1                 # one approval before the merge"


@pytest.fixture(autouse=True)
def _server(prefect_api: str) -> None:
    """Every test here talks to the session's Prefect server."""


def run_state(flow_run_id: str | None) -> str | None:
    from prefect.client.orchestration import get_client

    async def read() -> str | None:
        async with get_client() as client:
            run = await client.read_flow_run(UUID(str(flow_run_id)))
            return run.state.type.value if run.state else None

    return asyncio.run(read())


def promoted(sandbox: Sandbox, label: str, *envs: str) -> None:
    for env in envs:
        result = sandbox.cli("promote", "web", "--to", env, "--release", label, env=RITA)
        assert result.returncode == 0, result.stderr


def test_a_rollback_supersedes_a_promotion_waiting_for_approval_and_runs_at_once(
    sandbox: Sandbox, background: list[subprocess.Popen[str]]
) -> None:
    sandbox.edit_config(APPROVAL, "      required: 0  # for now")  # 1.2.0 reaches staging without anyone
    sandbox.publish("1.2.0")
    promoted(sandbox, "1.2.0", "dev", "staging")
    sandbox.edit_config("      required: 0  # for now", APPROVAL)
    sandbox.publish("1.3.0")
    promoted(sandbox, "1.3.0", "dev")
    waiter = start_cli(sandbox, "promote", "web", "--to", "staging", "--release", "1.3.0")
    background.append(waiter)
    db: Database = sandbox.db()
    waiting = wait_for(lambda: sandbox.waiting("staging"), what="1.3.0 to wait for approval in staging")
    wait_for(lambda: run_state(waiting.flow_run_id) == "PAUSED", what="its run to pause")

    started = time.monotonic()
    rolled = sandbox.cli("rollback", "web", "--env", "staging", "--reason", "pager", env=RITA, timeout=150)
    assert rolled.returncode == 0, rolled.stderr
    _, said = waiter.communicate(timeout=60)  # the waiting promotion's process ends too
    assert time.monotonic() - started < 150
    assert waiter.returncode == 1
    [error] = [line for line in said.splitlines() if line.startswith("error:")]
    assert error == (
        f"error: Promotion {waiting.id} was superseded (rollback {waiting.id + 1} took staging: pager): "
        "nothing was merged."
    )

    # records, Prefect and status agree
    superseded = db.promotion(waiting.id)
    assert superseded.state == "superseded" and superseded.slot is None and superseded.merge_commit is None
    assert [s.name for s in db.steps(waiting.id) if s.outcome in ("running", "succeeded")] == [
        "preflight",
        "prepare",
        "open_request",
    ]
    assert run_state(waiting.flow_run_id) == "CANCELLED"
    rollback = db.promotion(waiting.id + 1)
    assert (rollback.kind, rollback.state) == ("rollback", "succeeded")
    preflight = next(s for s in db.steps(rollback.id) if s.name == "preflight")  # type: ignore[arg-type]
    assert json.loads(preflight.detail)["superseded"] == [waiting.id]
    staging = status_of(sandbox, "staging")
    assert staging["current_release"]["label"] == "1.1.0" and staging["merging"] is None
    rejected = db.release("web", "1.2.0")
    assert rejected is not None and staging["rejected_releases"] == [rejected.id]  # 1.3.0 never ran there
    assert 'newTag: "1.1.0"' in sandbox.git("show", "env/staging:apps/web/kustomization.yaml")
    refused = sandbox.cli("approve", str(waiting.id), "--as", "uma")
    assert refused.returncode == 1 and "is not waiting for approval (it is superseded)" in refused.stderr


def test_a_rollback_that_never_got_its_environment_rejects_nothing(
    sandbox: Sandbox, background: list[subprocess.Popen[str]]
) -> None:
    """The rollback waits behind a promotion that is past its approvals (here: soaking in dev), and is killed
    before its turn: the release it would have rejected is not marked."""
    sandbox.publish("1.2.0")
    promoted(sandbox, "1.2.0", "dev")
    sandbox.edit_config("    retry: {attempts: 3, backoff_seconds: 1}", "    soak_seconds: 600")
    sandbox.publish("1.3.0")
    soaking = start_cli(sandbox, "promote", "web", "--to", "dev", "--release", "1.3.0")
    background.append(soaking)
    db: Database = sandbox.db()
    holder = wait_for(
        lambda: next((p for p in db.promotions("web", "dev") if p.state == "applied"), None),
        what="1.3.0 to soak in dev",
    )

    rollback = start_cli(sandbox, "rollback", "web", "--env", "dev")
    background.append(rollback)

    def waiting_rollback() -> Any:  # its preflight cannot end while the soaking promotion holds the slot
        found = next((p for p in db.promotions("web", "dev") if p.kind == "rollback"), None)
        return db.last_step(found.id, "preflight") if found and found.id else None

    wait_for(waiting_rollback, what="the rollback to wait for the soaking promotion")
    time.sleep(1)  # a moment in its wait (the slot is held for ten minutes)
    assert db.promotion(holder.id).slot is not None
    os.kill(rollback.pid, signal.SIGKILL)
    rollback.communicate()
    assert status_of(sandbox, "dev")["rejected_releases"] == []
    assert db.rejected("web", "dev") == {}


def test_on_github_the_superseded_pull_request_is_closed_with_a_comment(
    sandbox: Sandbox, background: list[subprocess.Popen[str]]
) -> None:
    """The waiting promotion only polls GitHub (reviews are its sole source): it notices the rollback in its records."""
    from promoflow.sandbox.github import GitHubStandIn
    from tests.test_github_flow import PEOPLE, REPO, TOKEN, configure, github_section, pulls

    with GitHubStandIn({REPO: sandbox.repo}, tokens={TOKEN: "promoflow-bot"}) as github:
        environments = "\n  - name: dev\n    branch: env/dev\n    approval: {required: %d, sources: [forge]}\n"
        configure(sandbox, github_section(github.url), environments % 0)
        sandbox.publish("1.2.0")
        assert sandbox.cli("promote", "web", "--to", "dev", env=PEOPLE).returncode == 0
        configure(sandbox, github_section(github.url), environments % 1)
        sandbox.publish("1.3.0")
        waiter = start_cli(sandbox, "promote", "web", "--to", "dev", "--release", "1.3.0", env=PEOPLE)
        background.append(waiter)
        db: Database = sandbox.db()
        waiting = wait_for(lambda: sandbox.waiting("dev"), what="1.3.0 to wait for a review")

        rolled = sandbox.cli("rollback", "web", "--env", "dev", env=PEOPLE, timeout=150)
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        _, said = waiter.communicate(timeout=60)
        assert waiter.returncode == 1 and f"error: Promotion {waiting.id} was superseded (rollback" in said
        first, second, third = pulls(github)
        assert (first.merged, second.state, second.merged, third.merged) == (True, "closed", False, True)
        assert "1.3.0" in second.title and "Roll back" in third.title
        comments = [c.body for c in second.get_issue_comments()]
        assert comments == [f"Superseded: rollback {waiting.id + 1} took dev: manual rollback. Nothing was merged."]
    assert db.promotion(waiting.id).state == "superseded"
    assert run_state(waiting.flow_run_id) == "CANCELLED"
