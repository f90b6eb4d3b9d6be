"""What a step returns: done (with typed outputs), wait (for what, until when), retry after, or terminal.

Kargo's step contract (`Running` + `RetryAfter` instead of blocking), in Python: a step never sleeps
waiting for a person, a check or a time; it says what it waits for and the driver (a Prefect flow, or a
test) decides how to wait: suspend the run, pause it in a terminal, or look again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from promoflow.engine.states import PromotionState


class Gate(StrEnum):
    """Kinds of waits, as `promoflow status` names them."""

    APPROVAL = "approval"
    CHECKS = "checks"
    SLOT = "slot"
    WINDOW = "window"
    FREEZE = "freeze"
    SOAK = "soak"
    METRICS = "metrics"
    TIME = "time"


class Waiting(BaseModel):
    """What a waiting promotion waits for; kept on the promotion while it waits, shown by `status`."""

    step: str
    gate: Gate
    summary: str = Field(description="what is missing, in words")
    since: datetime
    wake_at: datetime | None = Field(None, description="look again by then even if nothing woke it")
    expires_at: datetime | None = Field(None, description="the policy gives up then")
    expires_by: str = Field("", description="the policy that gives up, e.g. staging's approval timeout (3600 s)")
    required: int = Field(0, description="approvals needed in all")
    approved_by: list[str] = Field(default_factory=list, description="approvals counted so far")
    approvers: list[str] = Field(default_factory=list, description="who may approve (empty: anyone else)")
    checks: dict[str, str] = Field(default_factory=dict, description="required checks not green yet: their states")
    decide: list[str] = Field(default_factory=list, description="the commands and links that decide it")
    form: bool = Field(False, description="a person answers in the approval form (UI) or the CLI")
    suspend_key: str | None = Field(None, description="the pause key of the suspended flow run holding this wait")
    seen: dict[str, Any] = Field(
        default_factory=dict,
        description="what the step found before it waited, for its next look (verify: the rollouts and HTTP checks "
        "that passed before its metric checks)",
    )


@dataclass(frozen=True)
class Done:
    output: BaseModel


@dataclass(frozen=True)
class Wait:
    """`since` of `waiting` is the first time this step waited; the engine keeps it across looks."""

    waiting: Waiting


@dataclass(frozen=True)
class RetryAfter:
    """Transient: try the step again after `seconds` (None: the environment's backoff)."""

    message: str
    seconds: float | None = None


@dataclass(frozen=True)
class Terminal:
    """The promotion ends in `state` with `message`, one sentence saying what to fix."""

    message: str
    state: PromotionState = PromotionState.FAILED
    roll_back: bool = False  # the change reached the environment and failed there
    seen: BaseModel | None = None  # what the step saw before it gave up, for the records


StepResult = Done | Wait | RetryAfter | Terminal


def expiry(promotion_id: int, waiting: Waiting, now: datetime) -> Terminal | None:
    """The end of a wait whose policy gave up (checked wherever a wait is looked at: a step, the reconcile)."""
    if waiting.expires_at is None or now < waiting.expires_at:
        return None
    return Terminal(
        f"Promotion {promotion_id} expired: {waiting.expires_by or 'its wait timed out'} ran out while it waited "
        f"for {waiting.summary} (since {waiting.since:%Y-%m-%d %H:%M:%S} UTC); request it again.",
        PromotionState.EXPIRED,
    )
