"""The promotion state machine: where a state leads, and what is refused."""

from __future__ import annotations

import pytest

from promoflow.engine.states import ACTIVE, ENDED, PROGRESS, IllegalTransition, PromotionState, transition

S = PromotionState


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.PENDING, S.AWAITING_APPROVAL),
        (S.PENDING, S.MERGED),  # nothing to approve
        (S.AWAITING_APPROVAL, S.APPROVED),
        (S.APPROVED, S.MERGED),
        (S.MERGED, S.APPLIED),
        (S.APPLIED, S.VERIFIED),
        (S.VERIFIED, S.SUCCEEDED),
        (S.AWAITING_APPROVAL, S.REJECTED),
        (S.AWAITING_APPROVAL, S.EXPIRED),
        (S.PENDING, S.SUPERSEDED),
        (S.APPLIED, S.FAILED),
        (S.MERGED, S.CANCELLED),
        (S.SUCCEEDED, S.ROLLED_BACK),
        (S.FAILED, S.ROLLED_BACK),
        (S.AWAITING_APPROVAL, S.AWAITING_APPROVAL),  # a step re-run after a crash
    ],
)
def test_allowed(current: PromotionState, target: PromotionState) -> None:
    assert transition(current, target) == target


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.MERGED, S.AWAITING_APPROVAL),  # never backwards
        (S.APPLIED, S.APPROVED),
        (S.MERGED, S.REJECTED),  # a decision after the change is merged cannot undo it
        (S.MERGED, S.SUPERSEDED),
        (S.APPLIED, S.EXPIRED),
        (S.SUCCEEDED, S.FAILED),  # an ended promotion stays ended
        (S.REJECTED, S.APPROVED),
        (S.CANCELLED, S.PENDING),
        (S.PENDING, S.ROLLED_BACK),
        (S.SUPERSEDED, S.ROLLED_BACK),
    ],
)
def test_refused(current: PromotionState, target: PromotionState) -> None:
    with pytest.raises(IllegalTransition, match=f"from {current.words} to {target.words}"):
        transition(current, target)


def test_every_active_state_can_fail_or_be_cancelled_and_no_ended_one_moves_on() -> None:
    for state in ACTIVE:
        assert transition(state, S.FAILED) == S.FAILED
        assert transition(state, S.CANCELLED) == S.CANCELLED
    for state in ENDED:
        for target in PROGRESS:
            if target != state:
                with pytest.raises(IllegalTransition):
                    transition(state, target)


def test_events_are_named_with_dashes() -> None:
    assert S.AWAITING_APPROVAL.event == "promoflow.promotion.awaiting-approval"
    assert S.ROLLED_BACK.event == "promoflow.promotion.rolled-back"
    assert transition("pending", "merged") is S.MERGED  # the records' strings are accepted


def test_which_states_are_ended() -> None:
    ended = ["succeeded", "rejected", "failed", "rolled_back", "superseded", "expired", "cancelled"]
    assert [s.value for s in PromotionState if s.ended] == ended
    assert [s.value for s in PromotionState if not s.ended] == [
        "pending",
        "awaiting_approval",
        "approved",
        "merged",
        "applied",
        "verified",
    ]
    assert S.AWAITING_APPROVAL.words == "awaiting approval"
