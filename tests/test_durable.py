"""Durable promotions: waits hold no process, and any promoflow process may die at any moment.

Real parts only: the session's Prefect server, `python -m deployments.serve` and the CLI as processes killed by
signal, a real git repository. After every restart the records, Prefect's run states and `promoflow status`
agree, and nothing is done twice (one request branch and one merge commit per environment).
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import queue
import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from promoflow.forges.github import EVENT_PREFIX
from promoflow.sandbox.github import GitHubStandIn
from promoflow.server import free_port
from promoflow.webhooks import create_app
from tests.conftest import Sandbox
from tests.helpers import (
    OFTEN,
    RARELY,
    REQUESTER,
    Receiving,
    awaiting,
    flow_run,
    history,
    merges,
    promotion,
    receiving,
    registry_for_web,
    request_branches,
    run_state,
    served,
    start_cli,
    status_of,
    wait_for,
)
from tests.registry_fixtures import Pushed, notifying, push_index, start_registry
from tests.test_github_flow import PEOPLE, REPO, TOKENS, configure, github_section, merged, pulls
from tests.test_webhooks import github_headers
from tests.test_window_restarts import completed_once, held_by_the_window, opened, says_it_waits_for, window_opening

# Served deployments are named the same in every test: tests that serve them share one xdist worker.
pytestmark = [pytest.mark.prefect, pytest.mark.xdist_group("served")]
WEBHOOK_SECRET = "durable-webhook-secret-0c41f9"


@pytest.fixture(autouse=True)
def _server(prefect_api: str) -> None:
    """Every test here talks to the session's Prefect server."""


def suspended_waiting(sandbox: Sandbox, env: str) -> dict[str, Any] | None:
    """The promotion into `env` waiting for approval, once its run is suspended (no process holds it)."""
    found = awaiting(sandbox, env)
    if found and run_state(found["flow_run_id"]) == ("PAUSED", "Suspended"):
        return found
    return None


# dev requires GitHub's ci/test on the request; then staging, which no approval holds (a window may)
DEV_CHECKED = "\n  - name: dev\n    branch: env/dev\n    checks: [ci/test]\n"
THEN_STAGING = DEV_CHECKED + "  - name: staging\n    branch: env/staging\n"


def waits_for_its_check(sandbox: Sandbox, github: GitHubStandIn, dev: int) -> Any:
    """The records and `promoflow status` say promotion `dev` waits for ci/test, not green and not merged; then
    ci/test turns green on its pull request (returned), the only one."""
    assert promotion(sandbox, dev)["state"] == "awaiting_approval"
    (waiting,) = status_of(sandbox, "dev")["waiting"]
    assert (waiting["promotion"], waiting["gate"]) == (dev, "checks")
    assert list(waiting["checks"]) == ["ci/test"] and waiting["checks"]["ci/test"] != "success"
    (pull,) = pulls(github)
    assert not merged(github, pull.number)
    github.set_status(REPO, pull.head.sha, "success", context="ci/test")
    return pull


def paused_waiting(sandbox: Sandbox, env: str) -> dict[str, Any] | None:
    """The promotion into `env` waiting for approval, once its run is paused in the process holding it."""
    found = awaiting(sandbox, env)
    if found and run_state(found["flow_run_id"]) == ("PAUSED", "Paused"):
        return found
    return None


def hosted_by(run_id: str, receiver: Receiving) -> bool:
    """Prefect names the receiver's process as the one running the flow run."""
    return bool(flow_run(run_id)["infrastructure_pid"] == f"{socket.gethostname()}:{receiver.pid}")


@pytest.mark.parametrize("crash", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_pipeline_waiting_for_approval_survives_its_serve_process(
    sandbox: Sandbox, tmp_path: Path, crash: signal.Signals
) -> None:
    sandbox.publish("1.2.0")
    log = tmp_path / "serve.log"
    with served(sandbox, log) as serving:
        submitted = sandbox.cli("pipeline", "web", "--no-wait", env=REQUESTER)
        assert submitted.returncode == 0, submitted.stderr
        staging = wait_for(lambda: suspended_waiting(sandbox, "staging"), timeout=240, what="staging to wait")
        wait_for(serving.idle, timeout=240, what="the suspended run's process to exit")  # else a stop cancels it
        serving.stop(crash)

    # Nothing runs now: the wait is in the records and in Prefect, and they agree.
    assert run_state(staging["flow_run_id"]) == ("PAUSED", "Suspended")
    assert [w["promotion"] for w in status_of(sandbox, "staging")["waiting"]] == [staging["id"]]

    # The approval is recorded even though no process can act on it yet; the run is put back on the schedule,
    # without importing Prefect (a second of the command's time).
    approved = sandbox.cli("approve", str(staging["id"]), "--as", "uma", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert approved.returncode == 0, approved.stderr[-3000:]
    assert "put back on the schedule" in approved.stdout
    imported = [line.split("|")[-1].strip() for line in approved.stderr.splitlines() if line.startswith("import time:")]
    assert "promoflow.decisions" in imported and not [m for m in imported if m.split(".")[0] == "prefect"]

    with served(sandbox, log) as serving:
        prod = wait_for(lambda: suspended_waiting(sandbox, "prod"), timeout=240, what="prod to wait")
        serving.stop(crash)
    with served(sandbox, log):
        approved = sandbox.cli("approve", str(prod["id"]), "--as", "uma")
        assert approved.returncode == 0, approved.stderr
        wait_for(
            lambda: (
                all(p["state"] == "succeeded" for p in history(sandbox, "web") if p["kind"] == "promotion")
                and len(history(sandbox, "web")) >= 4
            ),
            timeout=240,
            what="the pipeline to finish",
        )
        # The records name the run that finished prod: a new one when the kill caught the first still running.
        ended = promotion(sandbox, prod["id"])["flow_run_id"]
        wait_for(lambda: run_state(ended)[0] == "COMPLETED", timeout=240, what="prod's run to complete")

    for env in ("dev", "staging", "prod"):
        assert len(request_branches(sandbox, env)) == 1, env
        assert len(merges(sandbox, f"env/{env}")) == 1, env
        assert status_of(sandbox, env)["waiting"] == []
    decided = [a for p in history(sandbox, "web") for a in p["approvals"]]
    assert [(a["approver"], a["source"], a["counted"]) for a in decided] == [("uma", "cli", True)] * 2


def woken_while_nothing_serves(sandbox: Sandbox, log: Path) -> dict[str, Any]:
    """web's promotion into staging, suspended waiting for an approval, its serve process killed, then approved: its
    run is back on the schedule with no process to run it."""
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    with served(sandbox, log, env=RARELY) as serving:
        assert sandbox.cli("promote", "web", "--to", "staging", "--no-wait", env=REQUESTER).returncode == 0
        staging = wait_for(lambda: suspended_waiting(sandbox, "staging"), timeout=240, what="staging to wait")
        serving.stop(signal.SIGKILL)
    assert "put back on the schedule" in sandbox.cli("approve", str(staging["id"]), "--as", "uma").stdout
    return staging


def test_a_woken_run_is_not_carried_on_twice_before_it_reaches_its_promotion(sandbox: Sandbox, tmp_path: Path) -> None:
    """Approved while nothing serves it, a suspended run goes back on the schedule. The next serve process starts it;
    until the flow reaches the promotion, the records still name the process that suspended it, which has ended:
    a reconcile then must not take the run for gone and start a second one."""
    log = tmp_path / "serve.log"
    staging = woken_while_nothing_serves(sandbox, log)
    run = staging["flow_run_id"]
    set_state(run, "RUNNING", "Running")  # what a serve process starting the run does first

    from flows.reconcile import reconcile

    assert reconcile(config=str(sandbox.config)) == []
    assert promotion(sandbox, staging["id"])["flow_run_id"] == run

    set_state(run, "SCHEDULED", "Scheduled")  # back to the schedule: the next serve process runs it
    with served(sandbox, log, env=RARELY):
        wait_for(lambda: run_state(run)[0] == "COMPLETED", timeout=240, what="the run to complete")
    assert promotion(sandbox, staging["id"])["state"] == "succeeded"
    assert len(merges(sandbox, "env/staging")) == 1


def test_a_run_whose_worker_died_while_starting_it_is_carried_on_and_abandoned(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker took the woken run (Pending) and died before the run started: Prefect leaves it Pending for ever.
    Once it has been Pending longer than a start can take, reconcile carries the promotion on in a new run and ends
    the dead one, saying where its work went."""
    import flows.resume
    from flows.reconcile import reconcile

    log = tmp_path / "serve.log"
    staging = woken_while_nothing_serves(sandbox, log)
    run = staging["flow_run_id"]
    set_state(run, "PENDING", "Pending")  # what a worker taking the run does first
    assert reconcile(config=str(sandbox.config)) == []  # it may still start

    monkeypatch.setattr(flows.resume, "TAKE_OVER_SECONDS", 0)  # as if it had been Pending for minutes
    (said,) = reconcile(config=str(sandbox.config))
    carried = promotion(sandbox, staging["id"])["flow_run_id"]
    assert carried != run and said.endswith(f"it carries on in flow run {carried}")
    abandoned = flow_run(run)["state"]
    assert (abandoned["type"], abandoned["name"]) == ("CRASHED", "Abandoned")
    assert f"promotion {staging['id']} carries on in flow run {carried}" in abandoned["message"]
    with served(sandbox, log, env=RARELY):
        wait_for(lambda: run_state(carried)[0] == "COMPLETED", timeout=240, what="the new run to complete")
    assert promotion(sandbox, staging["id"])["state"] == "succeeded"
    assert len(merges(sandbox, "env/staging")) == 1 and len(request_branches(sandbox, "staging")) == 1


@pytest.mark.parametrize("crash", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_pipeline_the_webhook_receiver_hosts_survives_its_restarts(
    sandbox: Sandbox, tmp_path: Path, crash: signal.Signals
) -> None:
    """`promoflow webhook --watch-here` runs a push's pipeline in its own process. Killed while staging waits, the
    approval given meanwhile is recorded and the restarted receiver carries the pipeline on in the same flow run;
    killed again while prod waits, the next receiver takes the run over and sees the approval given to it."""
    port = free_port(0)
    registry = registry_for_web(sandbox, tmp_path, port, WEBHOOK_SECRET)
    try:
        log = tmp_path / "receiver.log"
        with receiving(sandbox, port, WEBHOOK_SECRET, log) as receiver:
            with httpx.Client(base_url=registry.url, timeout=10) as http:
                push_index(http, "demo/web", "1.6.0", ["linux/amd64"], Pushed())
            staging = wait_for(lambda: paused_waiting(sandbox, "staging"), timeout=240, what="staging to wait")
            run = staging["flow_run_id"]  # the pipeline's: every environment's promotion runs in it
            assert hosted_by(run, receiver)
            receiver.stop(crash)

        # Nothing runs it now; Prefect, the records and status say the same: staging waits for an approval.
        assert run_state(run) == ("PAUSED", "Paused")
        assert promotion(sandbox, staging["id"])["state"] == "awaiting_approval"
        assert [w["promotion"] for w in status_of(sandbox, "staging")["waiting"]] == [staging["id"]]
        approved = sandbox.cli("approve", str(staging["id"]), "--as", "uma")
        assert approved.returncode == 0, approved.stderr
        assert "goes on when `promoflow webhook --watch-here` starts again" in approved.stdout
        assert merges(sandbox, "env/staging") == []  # recorded, not acted on: the pipeline belongs to its receiver

        with receiving(sandbox, port, WEBHOOK_SECRET, log) as receiver:
            prod = wait_for(lambda: paused_waiting(sandbox, "prod"), timeout=240, what="prod to wait")
            assert prod["flow_run_id"] == run
            receiver.stop(crash)
        with receiving(sandbox, port, WEBHOOK_SECRET, log) as receiver:
            wait_for(
                lambda: hosted_by(run, receiver) and run_state(run)[0] == "PAUSED",
                timeout=240,
                what="the restarted receiver to take the run over",
            )
            approved = sandbox.cli("approve", str(prod["id"]), "--as", "uma")
            assert approved.returncode == 0, approved.stderr
            # the receiver's run reads the records every second: it may be done before the command looks
            said = approved.stdout
            assert "sees the decision within seconds" in said or f"promotion {prod['id']} is succeeded" in said, said
            wait_for(lambda: run_state(run)[0] == "COMPLETED", timeout=240, what="the pipeline run to complete")
    finally:
        registry.stop()

    promotions = [p for p in history(sandbox, "web") if p["kind"] == "promotion"]
    assert sorted(p["environment"] for p in promotions) == ["dev", "prod", "staging"]
    assert all(p["state"] == "succeeded" and p["flow_run_id"] == run for p in promotions)
    for env in ("dev", "staging", "prod"):
        assert len(request_branches(sandbox, env)) == 1, env
        assert len(merges(sandbox, f"env/{env}")) == 1, env
        assert status_of(sandbox, env)["waiting"] == []
    applies = [(p["environment"], s["outcome"]) for p in promotions for s in p["steps"] if s["name"] == "apply"]
    assert sorted(applies) == [("dev", "succeeded"), ("prod", "succeeded"), ("staging", "succeeded")]
    decided = [a for p in promotions for a in p["approvals"]]
    assert [(a["approver"], a["source"], a["counted"]) for a in decided] == [("uma", "cli", True)] * 2


@pytest.mark.parametrize(
    ("at_checks", "at_window"),
    [(signal.SIGTERM, signal.SIGKILL), (signal.SIGKILL, signal.SIGTERM)],
    ids=["term,kill-9", "kill-9,term"],
)
def test_a_pipeline_the_webhook_receiver_hosts_survives_its_restarts_while_it_waits_for_a_check_then_a_window(
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    at_checks: signal.Signals,
    at_window: signal.Signals,
) -> None:
    """`promoflow webhook --watch-here` hosts a push's pipeline, which waits for dev's required check on GitHub. The
    receiver is stopped (`at_checks`) and the check turns green meanwhile: the restarted receiver takes the run over
    and goes on to staging, where it waits for a window. Stopped there (`at_window`) and started again once the
    window is open, the receiver completes the run: one pull request, one merge and one apply per environment.
    Between the restarts the records, Prefect's run state and `promoflow status` say the same."""
    monkeypatch.setenv("PF_TEST_GITHUB_TOKEN", PEOPLE["PF_TEST_GITHUB_TOKEN"])  # the receiver's runs read it
    port = free_port(0)
    with GitHubStandIn({REPO: sandbox.repo}, tokens=TOKENS) as github:
        configure(sandbox, github_section(github.url), THEN_STAGING)
        registry = start_registry(tmp_path / "registry", tmp_path / "storage", notifying(port, WEBHOOK_SECRET))
        try:
            web_source = f"source: {{registry: '{registry.url}', repository: demo/web}}"
            sandbox.edit_config("source: {oci_layout: .promoflow/demo/oci/web}", web_source)
            log = tmp_path / "receiver.log"
            with receiving(sandbox, port, WEBHOOK_SECRET, log) as receiver:
                with httpx.Client(base_url=registry.url, timeout=10) as http:
                    push_index(http, "demo/web", "1.6.0", ["linux/amd64"], Pushed())
                dev = wait_for(lambda: awaiting(sandbox, "dev"), timeout=240, what="dev to wait for its check")
                run = dev["flow_run_id"]  # the pipeline's: both environments' promotions run in it
                assert hosted_by(run, receiver)
                receiver.stop(at_checks)

            # Nothing runs it; Prefect, the records and status say the same: it waits for ci/test.
            assert run_state(run)[0] == "PAUSED"
            waits_for_its_check(sandbox, github, dev["id"])
            # Staging gets a window while no receiver has read the configuration, opening after dev is through.
            opens = window_opening(sandbox, after=90, keep_approval=True)

            with receiving(sandbox, port, WEBHOOK_SECRET, log) as receiver:
                wait = wait_for(
                    lambda: held_by_the_window(sandbox, "RUNNING"), timeout=240, what="the window to hold it"
                )
                assert hosted_by(run, receiver)
                receiver.stop(at_window)
            assert promotion(sandbox, dev["id"])["state"] == "succeeded"
            staging = promotion(sandbox, wait["promotion"])
            assert staging["flow_run_id"] == run and staging["state"] == "pending"
            (wait,) = status_of(sandbox, "staging")["waiting"]
            says_it_waits_for(sandbox, wait, opens)
            assert merges(sandbox, "env/staging") == []

            wait_for(lambda: opened(opens), timeout=240, what="the window to open")
            with receiving(sandbox, port, WEBHOOK_SECRET, log) as receiver:
                wait_for(lambda: run_state(run)[0] == "COMPLETED", timeout=240, what="the pipeline run to complete")
                assert hosted_by(run, receiver)
        finally:
            registry.stop()
        assert [merged(github, p.number) for p in pulls(github)] == [True, True]

    done = completed_once(sandbox, staging["id"], opens)
    assert done["flow_run_id"] == run  # the same run went on in each receiver: no second one
    dev = promotion(sandbox, dev["id"])
    assert dev["state"] == "succeeded" and dev["flow_run_id"] == run
    assert len(request_branches(sandbox, "dev")) == 1 and len(merges(sandbox, "env/dev")) == 1
    assert [s["outcome"] for s in dev["steps"] if s["name"] == "apply"] == ["succeeded"]
    assert status_of(sandbox, "dev")["waiting"] == []


# each way of hearing of the check with one of the two ways the serve process ends
@pytest.mark.parametrize(("told", "crash"), [("webhook", signal.SIGKILL), ("poll", signal.SIGTERM)])
def test_a_wait_for_checks_survives_a_killed_serve_process(
    sandbox: Sandbox, tmp_path: Path, told: str, crash: signal.Signals
) -> None:
    """A pull request's required check has not passed: the promotion waits, its run suspended. The serve process is
    killed or stopped; the check turns green while nothing runs, and GitHub's delivery reaches the webhook receiver
    (or nobody tells, and the reconcile's poll of GitHub finds it); after the restart the promotion completes in the
    same run, once."""
    # Only the delivery can wake it (its poll is an hour away), or only the poll can (no delivery).
    poll = {"webhook": 3600, "poll": 12}[told]
    log = tmp_path / "serve.log"
    with GitHubStandIn({REPO: sandbox.repo}, tokens=TOKENS) as github:
        configure(sandbox, github_section(github.url, poll_seconds=poll), DEV_CHECKED)
        sandbox.publish("1.2.0")
        with served(sandbox, log, env={**PEOPLE, **RARELY}) as serving:
            submitted = sandbox.cli("promote", "web", "--to", "dev", "--no-wait", env=PEOPLE)
            assert submitted.returncode == 0, submitted.stderr
            dev = wait_for(lambda: suspended_waiting(sandbox, "dev"), timeout=240, what="dev to wait for its check")
            # nothing in progress when it dies: a watch killed mid-run would hold its deployment's one slot for 300 s
            wait_for(serving.idle, timeout=240, what="no run in progress")
            serving.stop(crash)

        # Nothing runs it; Prefect, the records and status say the same: it waits for ci/test.
        assert run_state(dev["flow_run_id"]) == ("PAUSED", "Suspended")
        pull = waits_for_its_check(sandbox, github, dev["id"])
        if told == "webhook":
            deliver_status(sandbox, pull.head.sha)
            # the delivery became the event whose trigger asks for a reconcile, to run when a process serves it
            wait_for(lambda: reconcile_runs_woken_by(f"{EVENT_PREFIX}status"), timeout=240, what="a reconcile run")
        restarted = {**PEOPLE, **(RARELY if told == "webhook" else OFTEN)}
        with served(sandbox, log, env=restarted):
            done = wait_for(
                lambda: (p := promotion(sandbox, dev["id"]))["state"] == "succeeded" and p,
                timeout=240,
                what="the promotion to complete",
            )
            wait_for(lambda: run_state(dev["flow_run_id"])[0] == "COMPLETED", timeout=240, what="its run to complete")

        assert done["flow_run_id"] == dev["flow_run_id"]  # the suspended run went on: no second one
        assert merged(github, pull.number) and len(pulls(github)) == 1
    assert len(request_branches(sandbox, "dev")) == 1 and len(merges(sandbox, "env/dev")) == 1
    assert [s["outcome"] for s in done["steps"] if s["name"] == "apply"] == ["succeeded"]
    assert status_of(sandbox, "dev")["waiting"] == []


@pytest.mark.parametrize("crash", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_terminal_promotion_killed_while_waiting_is_carried_on_by_approve(
    sandbox: Sandbox, crash: signal.Signals
) -> None:
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    running = start_cli(sandbox, "promote", "web", "--to", "staging")
    staging = wait_for(lambda: awaiting(sandbox, "staging"), what="staging to wait")
    assert run_state(staging["flow_run_id"])[0] == "PAUSED"
    running.send_signal(crash)
    running.wait(timeout=30)
    assert promotion(sandbox, staging["id"])["state"] == "awaiting_approval"
    (waiting,) = status_of(sandbox, "staging")["waiting"]
    assert (waiting["promotion"], waiting["gate"]) == (staging["id"], "approval")

    # Nothing serves the deployments: the approval carries the promotion on in the approving process.
    approved = sandbox.cli("approve", str(staging["id"]), "--as", "uma")
    assert approved.returncode == 0, approved.stderr
    assert "carried on in this process" in approved.stdout

    (done,) = [p for p in history(sandbox, "web", "--env", "staging") if p["kind"] == "promotion"]
    assert done["state"] == "succeeded" and done["id"] == staging["id"]
    assert len(request_branches(sandbox, "staging")) == 1
    assert len(merges(sandbox, "env/staging")) == 1
    assert run_state(done["flow_run_id"])[0] == "COMPLETED"


@pytest.mark.parametrize("crash", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_a_terminal_promotion_stopped_while_it_waits_for_a_check_is_carried_on_by_resume(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, crash: signal.Signals
) -> None:
    """`promoflow promote` waits in a terminal for dev's required check on GitHub and is stopped (SIGTERM, as a
    closing terminal or a CI job's timeout does, or kill -9). The check turns green meanwhile: `promoflow resume`
    carries the promotion on in its own process, once, and the stopped run ends saying where its work went."""
    monkeypatch.setenv("PF_TEST_GITHUB_TOKEN", PEOPLE["PF_TEST_GITHUB_TOKEN"])
    with GitHubStandIn({REPO: sandbox.repo}, tokens=TOKENS) as github:
        configure(sandbox, github_section(github.url), DEV_CHECKED)
        sandbox.publish("1.2.0")
        running = start_cli(sandbox, "promote", "web", "--to", "dev", env=PEOPLE)
        dev = wait_for(lambda: awaiting(sandbox, "dev"), timeout=120, what="dev to wait for its check")
        running.send_signal(crash)
        running.communicate(timeout=60)

        # Its process is gone; the records and status still say what it waits for.
        pull = waits_for_its_check(sandbox, github, dev["id"])

        resumed = sandbox.cli("resume", str(dev["id"]), env=PEOPLE)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert resumed.stdout.strip().endswith("it carried on in this process."), resumed.stdout
        assert merged(github, pull.number) and len(pulls(github)) == 1

    done = promotion(sandbox, dev["id"])
    assert done["state"] == "succeeded" and done["flow_run_id"] != dev["flow_run_id"]
    assert run_state(done["flow_run_id"]) == ("COMPLETED", "Completed")
    stopped = flow_run(dev["flow_run_id"])["state"]
    assert stopped["type"] in ("CRASHED", "CANCELLED"), stopped
    assert len(request_branches(sandbox, "dev")) == 1 and len(merges(sandbox, "env/dev")) == 1
    assert [s["outcome"] for s in done["steps"] if s["name"] == "apply"] == ["succeeded"]
    assert status_of(sandbox, "dev")["waiting"] == []


def test_cancelling_a_waiting_terminal_run_in_prefect_cancels_the_promotion(sandbox: Sandbox) -> None:
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    running = start_cli(sandbox, "promote", "web", "--to", "staging")
    staging = wait_for(lambda: awaiting(sandbox, "staging"), what="staging to wait")
    cancel_run(staging["flow_run_id"])  # what Cancel in the Prefect UI does

    _, errors = running.communicate(timeout=60)
    assert running.returncode == 1, errors
    cancelled = promotion(sandbox, staging["id"])
    assert cancelled["state"] == "cancelled" and "cancelled in Prefect" in cancelled["error"]
    assert run_state(staging["flow_run_id"]) == ("CANCELLED", "Cancelled")
    assert status_of(sandbox, "staging")["waiting"] == []
    assert merges(sandbox, "env/staging") == []
    # the slot is free: the next promotion of web into staging goes ahead
    retried = start_cli(sandbox, "promote", "web", "--to", "staging")
    wait_for(lambda: awaiting(sandbox, "staging"), what="the next promotion to wait")
    assert sandbox.cli("reject", str(awaiting(sandbox, "staging")["id"]), "--as", "uma").returncode == 0  # type: ignore[index]
    retried.communicate(timeout=60)


def test_a_rejection_is_a_decision_not_a_failure_in_prefect(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    with served(sandbox, tmp_path / "serve.log"):
        assert sandbox.cli("promote", "web", "--to", "staging", "--no-wait", env=REQUESTER).returncode == 0
        staging = wait_for(lambda: suspended_waiting(sandbox, "staging"), timeout=240, what="staging to wait")
        rejected = sandbox.cli("reject", str(staging["id"]), "--as", "uma", "--comment", "not today")
        assert rejected.returncode == 0, rejected.stderr
        wait_for(lambda: run_state(staging["flow_run_id"])[0] == "COMPLETED", timeout=240, what="the run to complete")
    assert promotion(sandbox, staging["id"])["state"] == "rejected"
    assert merges(sandbox, "env/staging") == []


def test_a_wait_expires_by_its_policy_while_no_process_holds_it(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.edit_config(
        "      sources: [ui, cli]          # from the Prefect UI form or `promoflow approve`",
        "      sources: [ui, cli]\n      timeout_seconds: 20",
    )
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    with served(sandbox, tmp_path / "serve.log", env=OFTEN):
        submitted = sandbox.cli("promote", "web", "--to", "staging", "--no-wait", "--json", env=REQUESTER)
        assert submitted.returncode == 0, submitted.stderr
        pid = json.loads(submitted.stdout)["promotion"]
        expired = wait_for(
            lambda: (p := promotion(sandbox, pid))["state"] == "expired" and p, timeout=240, what="it to expire"
        )
        wait_for(lambda: run_state(expired["flow_run_id"])[0] == "COMPLETED", timeout=240, what="its run to complete")
    assert "staging's approval timeout (20 s) ran out" in expired["error"]
    states = httpx.get(
        f"{os.environ['PREFECT_API_URL']}/flow_run_states/", params={"flow_run_id": expired["flow_run_id"]}, timeout=10
    ).json()
    assert "Suspended" in [s["name"] for s in states]  # no process held it while it waited
    assert status_of(sandbox, "staging")["waiting"] == [] and merges(sandbox, "env/staging") == []


def test_an_automation_tells_a_chat_channel_when_a_promotion_awaits_approval(sandbox: Sandbox) -> None:
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    with chat_channel() as (url, received):
        block = CustomWebhookNotificationBlock(name="chat", url=url, json_data={"text": "{{subject}}: {{body}}"})
        block_id = block.save(f"chat-{uuid.uuid4().hex[:8]}", overwrite=True)
        automation = Automation(
            name=f"promotions awaiting approval {uuid.uuid4().hex[:8]}",
            trigger=EventTrigger(
                expect={"promoflow.promotion.awaiting-approval"},
                match={"prefect.resource.id": "promoflow.promotion.*"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[
                SendNotification(
                    block_document_id=block_id,
                    subject="Promotion {{ event.payload.promotion }} awaits approval",
                    body="{{ event.payload.app }} {{ event.payload.release_label }} to {{ event.payload.environment }}",
                )
            ],
        ).create()
        try:
            sandbox.publish("1.2.0")
            assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
            running = start_cli(sandbox, "promote", "web", "--to", "staging")
            staging = wait_for(lambda: awaiting(sandbox, "staging"), what="staging to wait")
            message = received.get(timeout=60)
            assert message == {"text": f"Promotion {staging['id']} awaits approval: web 1.2.0 to staging"}
            assert sandbox.cli("reject", str(staging["id"]), "--as", "uma").returncode == 0
            running.communicate(timeout=60)
        finally:
            automation.delete()


def deliver_status(sandbox: Sandbox, sha: str) -> None:
    """GitHub's `status` delivery of a green ci/test, signed, to the webhook receiver's app (which tells Prefect)."""
    app = create_app(sandbox.config, WEBHOOK_SECRET)
    body = json.dumps({"sha": sha, "state": "success", "context": "ci/test", "repository": {"full_name": REPO}})
    headers = github_headers(body.encode(), "status", f"status-{uuid.uuid4()}", WEBHOOK_SECRET)

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver") as client:
            return await client.post("/hooks/github", content=body, headers=headers)

    answer = asyncio.run(post())
    assert answer.status_code == 200, answer.text


def reconcile_runs_woken_by(event: str) -> list[dict[str, Any]]:
    """The reconcile runs asked for by an `event`, to start by now (not the interval's next ones)."""
    due = {"expected_start_time": {"before_": datetime.now(UTC).isoformat()}}
    query = {"flows": {"name": {"any_": ["reconcile"]}}, "flow_runs": due, "sort": "EXPECTED_START_TIME_DESC"}
    runs = httpx.post(f"{os.environ['PREFECT_API_URL']}/flow_runs/filter", json=query, timeout=10).json()
    return [r for r in runs if r["parameters"].get("woken_by") == event]


def cancel_run(run_id: str) -> None:
    set_state(run_id, "CANCELLING", "Cancelling", force=False)  # as the UI does


def set_state(run_id: str, kind: str, name: str, force: bool = True) -> None:
    answer = httpx.post(
        f"{os.environ['PREFECT_API_URL']}/flow_runs/{run_id}/set_state",
        json={"state": {"type": kind, "name": name}, "force": force},
        timeout=10,
    )
    answer.raise_for_status()


@contextmanager
def chat_channel() -> Iterator[tuple[str, queue.Queue[Any]]]:
    """A local HTTP endpoint standing for a chat service's incoming webhook: it keeps each JSON body posted."""
    received: queue.Queue[Any] = queue.Queue()

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.put(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
