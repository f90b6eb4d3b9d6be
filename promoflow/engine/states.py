"""A promotion's states and the one rule that moves it from one to another."""

from __future__ import annotations

from enum import StrEnum


class PromotionState(StrEnum):
    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    MERGED = "merged"
    APPLIED = "applied"
    VERIFIED = "verified"
    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def ended(self) -> bool:
        return self in ENDED

    @property
    def event(self) -> str:
        """The Prefect event emitted when a promotion enters this state."""
        return f"promoflow.promotion.{self.value.replace('_', '-')}"

    @property
    def words(self) -> str:
        return self.value.replace("_", " ")


S = PromotionState
# The way forward; a promotion may skip states (no approval needed: pending -> merged) but never go back.
PROGRESS = (S.PENDING, S.AWAITING_APPROVAL, S.APPROVED, S.MERGED, S.APPLIED, S.VERIFIED, S.SUCCEEDED)
ENDED = frozenset({S.SUCCEEDED, S.REJECTED, S.FAILED, S.ROLLED_BACK, S.SUPERSEDED, S.EXPIRED, S.CANCELLED})
ACTIVE = frozenset(PromotionState) - ENDED
# Decisions that end a promotion before it changed anything: later, the change is merged and only failing,
# cancelling or rolling back can end it.
UNMERGED = frozenset({S.PENDING, S.AWAITING_APPROVAL, S.APPROVED})
_ENDINGS: dict[PromotionState, frozenset[PromotionState]] = {
    S.REJECTED: UNMERGED,
    S.SUPERSEDED: UNMERGED,
    S.EXPIRED: UNMERGED,
    S.FAILED: ACTIVE,
    S.CANCELLED: ACTIVE,
    # A later rollback undid it: a verified release, or a failed one that had changed the environment.
    S.ROLLED_BACK: frozenset({S.SUCCEEDED, S.FAILED}),
}


class IllegalTransition(Exception):
    """A bug: promoflow tried to move a promotion where its states do not lead."""


def transition(current: PromotionState | str, target: PromotionState | str) -> PromotionState:
    """The state after moving `current` to `target`; the same state again is allowed (a step re-run after a
    crash records what it already recorded)."""
    current, target = PromotionState(current), PromotionState(target)
    if target == current or _leads(current, target):
        return target
    raise IllegalTransition(f"a promotion cannot go from {current.words} to {target.words}")


def _leads(current: PromotionState, target: PromotionState) -> bool:
    if target in _ENDINGS:
        return current in _ENDINGS[target]
    return current in PROGRESS and target in PROGRESS and PROGRESS.index(target) > PROGRESS.index(current)
