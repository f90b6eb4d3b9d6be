"""Approval policy (promoflow/approvals.py) and the approval step: who counts, how often, and when the quorum
is met. Each test names the deliberate bug it catches."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from promoflow.approvals import distinct, judge, tally
from promoflow.config import ApprovalPolicy
from promoflow.engine.results import Gate, Wait
from promoflow.engine.runner import advance
from tests.unit.world import World, review, staging


@dataclass
class Decision:
    approver: str
    decision: str = "approve"
    counted: bool | None = True


def test_judge_counts_a_person_once_per_decision_and_says_why_not() -> None:
    """Catches: a repeated approval of the same person counted again (issue 16, behaviour 1)."""
    policy = ApprovalPolicy(required=2)
    assert judge(policy, "rita", "alice", "cli") == judge(policy, "rita", "bob", "ui")  # counted, "counted"
    assert judge(policy, "rita", "alice", "cli").reason == "counted"
    again = judge(policy, "rita", "ALICE", "ui", "approve", [Decision("alice")])
    assert (again.counted, again.reason) == (False, "alice approved it already")
    rejected_twice = judge(policy, "rita", "alice", "cli", "reject", [Decision("alice", "reject")])
    assert (rejected_twice.counted, rejected_twice.reason) == (False, "alice rejected it already")
    # an earlier decision that did not count does not make this one a repeat; another decision is not a repeat
    assert judge(policy, "rita", "alice", "cli", "approve", [Decision("alice", counted=False)]).counted
    assert judge(policy, "rita", "alice", "cli", "approve", [Decision("alice", "reject")]).counted
    assert judge(policy, "rita", "alice", "cli", "approve", [Decision("bob")]).counted


def test_judge_refuses_each_kind_of_decision_the_policy_does_not_allow() -> None:
    policy = ApprovalPolicy(required=1, approvers=["alice", "bob"], sources=["cli"])
    assert judge(policy, "rita", "  ", "cli") == judge(policy, "rita", "", "cli")
    nameless, elsewhere = judge(policy, "rita", " ", "cli"), judge(policy, "rita", "alice", "ui")
    assert (nameless.counted, nameless.reason) == (False, "no approver name given")
    assert (elsewhere.counted, elsewhere.reason) == (False, "approvals from ui are not accepted here (allowed: cli)")
    assert judge(policy, "rita", "mallory", "cli").reason == "mallory is not an allowed approver (alice, bob)"
    assert judge(policy, "rita", "Bob", "cli").counted
    own = ApprovalPolicy(required=1)
    assert judge(own, "rita", "Rita", "cli").reason == "Rita requested this promotion and cannot approve it"
    assert judge(ApprovalPolicy(required=1, allow_self_approval=True), "rita", "rita", "cli").counted
    anyone = ApprovalPolicy(required=1, approvers=[])
    assert judge(anyone, "rita", "zoe", "cli").counted  # no list: anyone but the requester


def test_tally_counts_distinct_people_and_any_counted_rejection_ends_it() -> None:
    policy = ApprovalPolicy(required=2)
    waiting = tally(policy, [Decision("alice"), Decision("Alice "), Decision("bob", counted=False)])
    assert (waiting.outcome, waiting.approvers, waiting.missing) == ("waiting", ("alice",), 1)
    approved = tally(policy, [Decision("alice"), Decision("bob"), Decision("carol")])
    assert (approved.outcome, approved.approvers, approved.missing) == ("approved", ("alice", "bob", "carol"), 0)
    rejected = tally(policy, [Decision("alice"), Decision("bob", "reject"), Decision("carol")])
    assert (rejected.outcome, rejected.rejected_by, rejected.approvers) == ("rejected", "bob", ("alice",))
    late = tally(policy, [Decision("alice"), Decision("bob"), Decision("carol", "reject")])  # after the quorum
    assert (late.outcome, late.rejected_by, late.approvers) == ("rejected", "carol", ("alice", "bob"))
    ignored = tally(policy, [Decision("bob", "reject", counted=False), Decision("alice")])
    assert ignored.outcome == "waiting" and ignored.rejected_by is None
    assert tally(ApprovalPolicy(required=0), []).outcome == "approved"
    assert tally(ApprovalPolicy(required=1), []).missing == 1
    assert distinct(["Bob", "alice", "bob ", "ALICE"]) == ["Bob", "alice"]


def test_a_person_approving_on_the_forge_and_the_cli_counts_once(world: World) -> None:
    """Catches: the approval step adding the forge's approvers and the people's without counting people once."""
    world.use_github()
    world.configure("sources: [forge]", "sources: [forge, cli]")
    ctx = staging(world, "required: 2")
    assert isinstance(advance(ctx), Wait)
    head = str(ctx.promotion.request_head)
    world.forge.reviews = [review(1, "alice", "APPROVED", head)]
    world.decide(ctx, "Alice")  # the same person from the terminal
    waiting = advance(ctx)
    assert isinstance(waiting, Wait) and waiting.waiting.summary == "approvals 1 of 2"
    assert waiting.waiting.gate == Gate.APPROVAL and not world.merged(ctx)
    world.decide(ctx, "bob")
    assert advance(ctx) is None and world.merged(ctx)


def test_a_cli_quorum_of_three_waits_for_the_third_person(world: World) -> None:
    """Catches: the UI/CLI wait ending after the first approval whatever `required` says."""
    ctx = staging(world, "required: 3")
    for who, summary in (("alice", "approvals 1 of 3"), ("bob", "approvals 2 of 3")):
        world.decide(ctx, who)
        waiting = advance(ctx)
        assert isinstance(waiting, Wait) and waiting.waiting.summary == summary, who
        assert not world.merged(ctx)
    world.decide(ctx, "carol")
    assert advance(ctx) is None and world.merged(ctx)


def test_verdicts_and_tallies_are_values() -> None:
    verdict, count = judge(ApprovalPolicy(required=1), "rita", "alice", "cli"), tally(ApprovalPolicy(required=1), [])
    assert {verdict: 1, count: 2}[judge(ApprovalPolicy(required=1), "rita", "bob", "ui")] == 1
    for value in (verdict, count):
        with pytest.raises(dataclasses.FrozenInstanceError):
            value.missing = 0  # type: ignore[misc, union-attr]
