"""Approval policy: who may decide, from where, and when a promotion has enough approvals.

Pure functions over the environment's policy and the recorded decisions. People are compared by `identity`:
the name trimmed and case-folded, as GitHub compares logins, so `carol`, `Carol` and `carol ` are one person
wherever the policy compares them (requester and approver, allowed approvers, the quorum).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from promoflow.config import ApprovalPolicy

Decision = Literal["approve", "reject"]
Source = Literal["ui", "cli", "forge"]


class Decided(Protocol):
    approver: str
    decision: str
    counted: bool | None


@dataclass(frozen=True)
class Verdict:
    counted: bool
    reason: str


def identity(name: str) -> str:
    """Who a name stands for, as policy compares people."""
    return name.strip().casefold()


def same_person(one: str, other: str) -> bool:
    return identity(one) == identity(other)


def distinct(names: Iterable[str]) -> list[str]:
    """Each person once, as first named."""
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(identity(name), name)
    return list(seen.values())


def judge(
    policy: ApprovalPolicy,
    requester: str,
    approver: str,
    source: str,
    decision: str = "approve",
    earlier: Iterable[Decided] = (),
) -> Verdict:
    """Whether one decision counts under the policy, and why not if it does not. `earlier`: the decisions counted
    before it, of which the same person's same decision makes this one a repeat that counts no further."""
    if not approver.strip():
        return Verdict(False, "no approver name given")
    if source not in policy.sources:
        allowed = ", ".join(policy.sources)
        return Verdict(False, f"approvals from {source} are not accepted here (allowed: {allowed})")
    if policy.approvers and identity(approver) not in {identity(name) for name in policy.approvers}:
        return Verdict(False, f"{approver} is not an allowed approver ({', '.join(policy.approvers)})")
    if same_person(approver, requester) and not policy.allow_self_approval:
        return Verdict(False, f"{approver} requested this promotion and cannot approve it")
    same = (d for d in earlier if d.counted and d.decision == decision and same_person(d.approver, approver))
    if (repeated := next(same, None)) is not None:
        return Verdict(False, f"{repeated.approver} {'approved' if decision == 'approve' else 'rejected'} it already")
    return Verdict(True, "counted")


@dataclass(frozen=True)
class Tally:
    outcome: Literal["approved", "rejected", "waiting"]
    approvers: tuple[str, ...]
    missing: int
    rejected_by: str | None = None


def tally(policy: ApprovalPolicy, decisions: list[Decided]) -> Tally:
    """Any counted rejection ends the promotion; distinct counted approvers (people, not spellings) make the
    quorum."""
    approved: list[str] = []
    for d in decisions:
        if not d.counted:
            continue
        if d.decision == "reject":
            return Tally("rejected", tuple(distinct(approved)), policy.required, rejected_by=d.approver)
        approved.append(d.approver)
    approvers = distinct(approved)
    missing = max(policy.required - len(approvers), 0)
    return Tally("approved" if missing == 0 else "waiting", tuple(approvers), missing)
