"""Approval policy: who may decide, from where, and when a promotion has enough approvals.

Pure functions over the environment's policy and the recorded decisions.
"""

from __future__ import annotations

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


def judge(policy: ApprovalPolicy, requester: str, approver: str, source: str) -> Verdict:
    """Whether one decision counts under the policy, and why not if it does not."""
    if not approver.strip():
        return Verdict(False, "no approver name given")
    if source not in policy.sources:
        allowed = ", ".join(policy.sources)
        return Verdict(False, f"approvals from {source} are not accepted here (allowed: {allowed})")
    if policy.approvers and approver not in policy.approvers:
        return Verdict(False, f"{approver} is not an allowed approver ({', '.join(policy.approvers)})")
    if approver == requester and not policy.allow_self_approval:
        return Verdict(False, f"{approver} requested this promotion and cannot approve it")
    return Verdict(True, "counted")


@dataclass(frozen=True)
class Tally:
    outcome: Literal["approved", "rejected", "waiting"]
    approvers: tuple[str, ...]
    missing: int
    rejected_by: str | None = None


def tally(policy: ApprovalPolicy, decisions: list[Decided]) -> Tally:
    """Any counted rejection ends the promotion; distinct counted approvers make the quorum."""
    approvers: list[str] = []
    for d in decisions:
        if not d.counted:
            continue
        if d.decision == "reject":
            return Tally("rejected", tuple(approvers), policy.required, rejected_by=d.approver)
        if d.approver not in approvers:
            approvers.append(d.approver)
    missing = max(policy.required - len(approvers), 0)
    return Tally("approved" if missing == 0 else "waiting", tuple(approvers), missing)
