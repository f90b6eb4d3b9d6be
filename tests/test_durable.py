"""Durable promotions: waits hold no process, and any promoflow process may die at any moment.

Real parts only: the session's Prefect server, `python -m deployments.serve` and the CLI as processes killed by
signal, a real git repository. After every restart the records, Prefect's run states and `promoflow status`
agree, and nothing is done twice (one request branch and one merge commit per environment).
"""

from __future__ import annotations

import http.server
import json
import os
import queue
import signal
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Sandbox
from tests.helpers import (
    REQUESTER,
    awaiting,
    history,
    promotion,
    run_state,
    served,
    start_cli,
    status_of,
    wait_for,
)

# Served deployments are named the same in every test: tests that serve them share one xdist worker.
pytestmark = [pytest.mark.prefect, pytest.mark.xdist_group("served")]


@pytest.fixture(autouse=True)
def _server(prefect_api: str) -> None:
    """Every test here talks to the session's Prefect server."""


def merges(sandbox: Sandbox, branch: str) -> list[str]:
    return sandbox.git("log", "--merges", "--format=%s", branch).splitlines()


def request_branches(sandbox: Sandbox, env: str) -> list[str]:
    return [b for b in sandbox.git("branch", "--list", f"promoflow/{env}/*").split() if b != "*"]


def suspended_waiting(sandbox: Sandbox, env: str) -> dict[str, Any] | None:
    """The promotion into `env` waiting for approval, once its run is suspended (no process holds it)."""
    found = awaiting(sandbox, env)
    if found and run_state(found["flow_run_id"]) == ("PAUSED", "Suspended"):
        return found
    return None


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

    # The approval is recorded even though no process can act on it yet; the run is put back on the schedule.
    approved = sandbox.cli("approve", str(staging["id"]), "--as", "uma")
    assert approved.returncode == 0, approved.stderr
    assert "put back on the schedule" in approved.stdout

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


def test_a_terminal_promotion_killed_while_waiting_is_carried_on_by_approve(sandbox: Sandbox) -> None:
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    running = start_cli(sandbox, "promote", "web", "--to", "staging")
    staging = wait_for(lambda: awaiting(sandbox, "staging"), what="staging to wait")
    assert run_state(staging["flow_run_id"])[0] == "PAUSED"
    running.send_signal(signal.SIGKILL)
    running.wait(timeout=30)

    # Nothing serves the deployments: the approval carries the promotion on in the approving process.
    approved = sandbox.cli("approve", str(staging["id"]), "--as", "uma")
    assert approved.returncode == 0, approved.stderr
    assert "carried on in this process" in approved.stdout

    (done,) = [p for p in history(sandbox, "web", "--env", "staging") if p["kind"] == "promotion"]
    assert done["state"] == "succeeded" and done["id"] == staging["id"]
    assert len(request_branches(sandbox, "staging")) == 1
    assert len(merges(sandbox, "env/staging")) == 1
    assert run_state(done["flow_run_id"])[0] == "COMPLETED"


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
    with served(sandbox, tmp_path / "serve.log", env={"PROMOFLOW_RECONCILE_INTERVAL": "2"}):
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


def cancel_run(run_id: str) -> None:
    answer = httpx.post(
        f"{os.environ['PREFECT_API_URL']}/flow_runs/{run_id}/set_state",
        json={"state": {"type": "CANCELLING", "name": "Cancelling"}},
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
