"""What a step sees: the project, its promotion, the outputs of earlier steps, a clock, and where transitions go."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from pydantic import BaseModel

from promoflow.engine.states import PromotionState, transition
from promoflow.project import Project
from promoflow.records import Promotion

Output = TypeVar("Output", bound=BaseModel)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Events(Protocol):
    """Where transitions are announced (Prefect events in the flows; a list in unit tests)."""

    def emit(self, promotion: Promotion, state: PromotionState) -> None: ...


class NoEvents:
    def emit(self, promotion: Promotion, state: PromotionState) -> None:
        return None


@dataclass
class Context:
    project: Project
    promotion_id: int
    clock: Clock = field(default_factory=SystemClock)
    events: Events = field(default_factory=NoEvents)

    @property
    def promotion(self) -> Promotion:
        return self.project.db.promotion(self.promotion_id)

    def move(self, state: PromotionState, **changes: object) -> Promotion:
        """Record the promotion's next state (checked against the state machine) and announce it once."""
        before = self.promotion
        after = transition(before.state, state)
        promotion = self.project.db.update_promotion(self.promotion_id, state=after.value, **changes)
        if after != before.state:
            self.events.emit(promotion, after)
        return promotion

    def output(self, step: str, model: type[Output]) -> Output | None:
        """The typed output of this promotion's last successful `step`, None if it has not succeeded."""
        row = self.project.db.last_step(self.promotion_id, step)
        if row is None or row.outcome != "succeeded":
            return None
        return model.model_validate(json.loads(row.detail))
