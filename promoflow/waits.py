"""What the unfinished promotions of an app and environment wait for, read from the records (`promoflow status`).

A waiting promotion keeps what it waits for (the engine's `Waiting`): approvals n of m, checks still pending,
the promotion it is queued behind, since when, and the commands and links that decide it; this adds who may
approve, from the policy. A promotion that waits for nothing waits for its run. No Prefect, no forge calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from promoflow.approvals import same_person
from promoflow.config import ApprovalPolicy
from promoflow.engine.results import Gate, Waiting
from promoflow.engine.states import PromotionState
from promoflow.project import Project
from promoflow.records import Promotion, _utc

HELD_AT_THE_DOOR = frozenset({Gate.FREEZE, Gate.WINDOW, Gate.SOAK})


@dataclass
class Wait:
    promotion: int
    kind: str
    release: str  # as tables show it: `1.2.0 (129d4a6)`
    state: str
    waiting_for: str  # one line: `approvals 0 of 1`, `promotion 3 to finish`, ...
    since: datetime | None
    gate: str | None = None  # the engine's kind of wait (approval, checks, slot, ...), None: its run
    approvals: dict[str, int] | None = None  # {"counted": n, "required": m}
    checks: dict[str, str] = field(default_factory=dict)  # context -> state, of the request's head
    may_approve: str | None = None
    expires_at: datetime | None = None
    until: datetime | None = None  # a freeze's end, a window's opening: when it goes on by itself
    decide: list[str] = field(default_factory=list)  # commands and links

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in ("since", "expires_at", "until"):
            data[key] = _utc(data[key]).isoformat() if data[key] else None  # type: ignore[union-attr]
        return data


def waits(project: Project, app: str, environment: str) -> list[Wait]:
    """The unfinished promotions of `app` into `environment`, oldest first."""
    db = project.db
    open_ones = [p for p in db.promotions(app, environment, limit=50) if not PromotionState(p.state).ended]
    return [_wait(project, p) for p in reversed(open_ones)]


def _wait(project: Project, promotion: Promotion) -> Wait:
    assert promotion.id is not None
    state = PromotionState(promotion.state)
    wait = Wait(
        promotion.id,
        promotion.kind,
        project.db.get_release(promotion.release_id).display_name,
        promotion.state,
        "its run to start" if state == PromotionState.PENDING else f"its run ({state.words})",
        promotion.created_at if state == PromotionState.PENDING else promotion.updated_at,
    )
    if promotion.waiting is None:
        return wait
    waiting = Waiting.model_validate_json(promotion.waiting)
    wait.gate, wait.waiting_for, wait.since = waiting.gate.value, waiting.summary, waiting.since
    wait.checks, wait.decide, wait.expires_at = waiting.checks, waiting.decide, waiting.expires_at
    if waiting.gate in HELD_AT_THE_DOOR:
        wait.until = waiting.wake_at
    if waiting.gate in (Gate.APPROVAL, Gate.CHECKS) and waiting.required:
        policy = project.config.environment(promotion.environment).approval
        wait.approvals = {"counted": len(waiting.approved_by), "required": waiting.required}
        wait.may_approve = _who(policy, promotion.requested_by)
    return wait


def _who(policy: ApprovalPolicy, requester: str) -> str:
    """`anyone but rita; from ui, cli`, `alice, @acme/sre (not rita); from forge`."""
    if not policy.approvers:
        people = "anyone" if policy.allow_self_approval else f"anyone but {requester}"
    else:
        listed = [a for a in policy.approvers if policy.allow_self_approval or not same_person(a, requester)]
        teams = not policy.allow_self_approval and any(a.startswith("@") for a in listed)
        people = ", ".join(listed) + (f" (not {requester})" if teams else "")
    return f"{people}; from {', '.join(policy.sources)}"
