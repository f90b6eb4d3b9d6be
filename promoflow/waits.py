"""What the unfinished promotions of an app and environment wait for, read from the records (`promoflow status`).

A promotion waiting for approval says how many of how many are counted, which checks are still pending (GitHub),
since when, who may decide, and the command and links that decide it; a queued one, the promotion it waits
behind; a running one, its state. No Prefect, no forge calls: what the waits recorded is what is shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from promoflow.approvals import tally
from promoflow.config import ApprovalPolicy
from promoflow.project import Project
from promoflow.records import TERMINAL_STATES, Promotion, Step, _utc
from promoflow.server import run_link


@dataclass
class Wait:
    promotion: int
    kind: str
    release: str  # as tables show it: `1.2.0 (129d4a6)`
    state: str
    waiting_for: str  # one line: `approvals 0 of 1`, `promotion 3 to finish`, ...
    since: datetime | None
    approvals: dict[str, int] | None = None  # {"counted": n, "required": m}
    checks: dict[str, str] = field(default_factory=dict)  # context -> state, of the pull request's head
    may_approve: str | None = None
    decide: list[str] = field(default_factory=list)  # commands and links

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["since"] = _utc(self.since).isoformat() if self.since else None  # type: ignore[union-attr]
        return data


def waits(project: Project, app: str, environment: str, ui_url: str | None) -> list[Wait]:
    """The unfinished promotions of `app` into `environment`, oldest first. `ui_url`: the Prefect UI, for links."""
    db = project.db
    open_ones = [p for p in db.promotions(app, environment, limit=50) if p.state not in TERMINAL_STATES]
    return [_wait(project, p, ui_url) for p in reversed(open_ones)]


def _wait(project: Project, promotion: Promotion, ui_url: str | None) -> Wait:
    db = project.db
    assert promotion.id is not None
    steps = db.steps(promotion.id)
    wait = Wait(
        promotion.id,
        promotion.kind,
        db.get_release(promotion.release_id).display_name,
        promotion.state,
        f"its run ({promotion.state.replace('_', ' ')})",
        promotion.updated_at,
    )
    if promotion.state == "awaiting_approval":
        _approval(project, promotion, steps, wait, ui_url)
    elif promotion.state == "pending":
        preflight = _running(steps, "preflight")
        behind = json.loads(preflight.detail).get("waited_for") if preflight else None
        if behind:
            wait.waiting_for = f"promotion {behind[-1]} to finish"
            wait.decide.append(f"promoflow history {promotion.app} --env {promotion.environment}")
        else:
            wait.waiting_for = "its run to start"
        wait.since = preflight.started_at if preflight else promotion.created_at
    return wait


def _approval(project: Project, promotion: Promotion, steps: list[Step], wait: Wait, ui_url: str | None) -> None:
    policy = project.config.environment(promotion.environment).approval
    waiting = [s for s in steps if s.name == "await_approval"]
    wait.since = waiting[0].started_at if waiting else promotion.updated_at
    detail = json.loads(waiting[-1].detail) if waiting else {}
    if detail.get("forge") == "github":  # what the last look at the pull request found
        counted = len(detail.get("approvers") or [])
        wait.checks = {context: state for context, state in (detail.get("gates") or {}).items()}
        others = [r for r in detail.get("waiting_for") or [] if not r.endswith("more approval(s)")]
    else:
        counted, others = len(tally(policy, project.db.approvals(promotion.id)).approvers), []  # type: ignore[arg-type]
    wait.approvals = {"counted": counted, "required": policy.required}
    wait.waiting_for = "; ".join(([f"approvals {counted} of {policy.required}"] if policy.required else []) + others)
    wait.may_approve = _who(policy, promotion.requested_by)
    if "cli" in policy.sources:
        wait.decide.append(f"promoflow approve {promotion.id}")
    if "ui" in policy.sources and ui_url and promotion.flow_run_id:
        wait.decide.append(f"Resume at {run_link(ui_url, promotion.flow_run_id)}")
    request = next((s for s in reversed(steps) if s.name == "open_request" and s.outcome == "succeeded"), None)
    url = json.loads(request.detail).get("url") if request else None
    if "forge" in policy.sources and url:
        wait.decide.append(f"review at {url}")


def _who(policy: ApprovalPolicy, requester: str) -> str:
    """`anyone but rita; from ui, cli`, `alice, @acme/sre (not rita); from forge`."""
    if not policy.approvers:
        people = "anyone" if policy.allow_self_approval else f"anyone but {requester}"
    else:
        listed = [a for a in policy.approvers if policy.allow_self_approval or a != requester]
        teams = not policy.allow_self_approval and any(a.startswith("@") for a in listed)
        people = ", ".join(listed) + (f" (not {requester})" if teams else "")
    return f"{people}; from {', '.join(policy.sources)}"


def _running(steps: list[Step], name: str) -> Step | None:
    return next((s for s in reversed(steps) if s.name == name and s.outcome == "running"), None)
