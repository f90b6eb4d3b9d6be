"""Approval policy on names as people type them: identities are trimmed and compared without case (GitHub logins
are case-insensitive), for the requester, the allowed approvers and the quorum."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from uuid import UUID

import pytest

from promoflow.approvals import judge, same_person, tally
from promoflow.config import ApprovalPolicy
from tests.conftest import Sandbox
from tests.helpers import history, start_cli, wait_for


@dataclass
class Decision:
    approver: str
    decision: str = "approve"
    counted: bool | None = True


def test_the_requester_cannot_approve_under_another_spelling() -> None:
    policy = ApprovalPolicy(required=1)
    for spelling in ("carol", "Carol", "carol ", " CAROL\t"):
        verdict = judge(policy, "carol", spelling, "cli")
        assert not verdict.counted and "requested this promotion" in verdict.reason, spelling
    assert judge(policy, "Carol ", "carol", "ui").counted is False
    assert judge(policy, "carol", "caroline", "ui").counted is True


def test_allowed_approvers_match_whatever_the_case() -> None:
    policy = ApprovalPolicy(required=1, approvers=["Alice", "bob"])
    assert judge(policy, "rita", "alice", "ui").counted
    assert judge(policy, "rita", " BOB ", "cli").counted
    assert not judge(policy, "rita", "mallory", "cli").counted


def test_one_person_counts_once_towards_a_quorum_however_often_and_however_spelled() -> None:
    policy = ApprovalPolicy(required=2)
    count = tally(policy, [Decision("alice"), Decision("Alice"), Decision("alice ")])
    assert (count.outcome, count.approvers, count.missing) == ("waiting", ("alice",), 1)
    count = tally(policy, [Decision("alice"), Decision("ALICE"), Decision("bob")])
    assert (count.outcome, count.approvers, count.missing) == ("approved", ("alice", "bob"), 0)
    assert same_person("  Alice", "alice") and not same_person("alice", "alicia")


def test_a_repeated_decision_of_one_person_is_judged_a_repeat() -> None:
    policy = ApprovalPolicy(required=2)
    verdict = judge(policy, "rita", "Alice ", "ui", "approve", [Decision("alice"), Decision("bob", counted=False)])
    assert (verdict.counted, verdict.reason) == (False, "alice approved it already")
    assert judge(policy, "rita", "alice", "ui", "reject", [Decision("alice")]).counted  # changing one's mind counts
    assert judge(policy, "rita", "bob", "cli", "approve", [Decision("alice"), Decision("bob", counted=False)]).counted


@pytest.mark.prefect
def test_through_the_cli_and_a_ui_resume_a_requester_never_approves_and_a_person_counts_once(
    sandbox: Sandbox, prefect_api: str
) -> None:
    sandbox.edit_config("      required: 1                 # one approval before the merge", "      required: 2")
    carol = {"PROMOFLOW_USER": "carol"}
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=carol).returncode == 0
    before = sandbox.git("rev-parse", "env/staging")
    running = start_cli(sandbox, "promote", "web", "--to", "staging", env=carol)
    db = sandbox.db()
    try:
        waiting = wait_for(lambda: sandbox.waiting("staging"), what="staging to wait")
        pid, run = waiting.id, waiting.flow_run_id
        for spelling in ("Carol", "carol "):
            refused = sandbox.cli("approve", str(pid), "--as", spelling)
            assert refused.returncode == 1
            assert refused.stderr == (
                f"error: {spelling} cannot decide promotion {pid}: "
                f"{spelling} requested this promotion and cannot approve it.\n"
            )
        approved = sandbox.cli("approve", str(pid), "--as", "alice")
        assert approved.returncode == 0, approved.stderr
        again = sandbox.cli("approve", str(pid), "--as", "ALICE")
        assert again.returncode == 1 and "alice approved it already" in again.stderr

        # the same person through the UI's Resume form: recorded, not counted again
        wait_for(lambda: paused(run) and db.approvals(pid)[0].counted, what="the run to pause again")
        asyncio.run(resume(run, "Alice "))
        wait_for(lambda: len(db.approvals(pid)) == 2 and paused(run), what="the UI decision and the next pause")
        decisions = [(a.approver, a.source, a.counted, a.reason) for a in db.approvals(pid)]
        assert decisions == [("alice", "cli", True, "counted"), ("Alice ", "ui", False, "alice approved it already")]
        assert db.promotion(pid).state == "awaiting_approval"
        assert sandbox.git("rev-parse", "env/staging") == before

        assert sandbox.cli("approve", str(pid), "--as", "bob").returncode == 0
        _, errors = running.communicate(timeout=120)
        assert running.returncode == 0, errors
    finally:
        if running.poll() is None:
            running.kill()
            running.communicate()
    (promotion,) = [p for p in history(sandbox) if p["environment"] == "staging" and p["kind"] == "promotion"]
    assert promotion["state"] == "succeeded"
    assert sorted(a["approver"] for a in promotion["approvals"] if a["counted"]) == ["alice", "bob"]
    merge = sandbox.git("log", "-1", "--format=%B", "env/staging")
    assert [line for line in merge.splitlines() if line.startswith("Approved-by")] == [
        "Approved-by: alice",
        "Approved-by: bob",
    ]


def paused(flow_run_id: str | None) -> bool:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    async def state() -> StateType | None:
        async with get_client() as client:
            run = await client.read_flow_run(UUID(str(flow_run_id)))
            return run.state.type if run.state else None

    return asyncio.run(state()) == StateType.PAUSED


async def resume(flow_run_id: str | None, approver: str) -> None:
    """As the Prefect UI's Resume form does: the run's input, validated by the server."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        await client.resume_flow_run(UUID(str(flow_run_id)), run_input={"decision": "approve", "approver": approver})
