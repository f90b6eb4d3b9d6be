"""What a step sees: the project, its promotion, the outputs of earlier steps, a clock, and where transitions go."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from pydantic import BaseModel

from promoflow.clusters.targets import Target, target_for
from promoflow.engine.states import PromotionState, transition
from promoflow.forges import Forge, forge_for
from promoflow.project import Project
from promoflow.prometheus import Metrics, Prometheus
from promoflow.records import Database, Promotion

Output = TypeVar("Output", bound=BaseModel)


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Events(Protocol):
    """Where transitions are announced (Prefect events in the flows; a list in unit tests)."""

    def emit(self, promotion: Promotion, state: PromotionState) -> None: ...

    def notice(self, promotion: Promotion, event: str, said: str) -> None:
        """Announce what is not a state: `held` at the door of an environment, `overridden` through a freeze, a
        window or the order; as `promoflow.promotion.<event>`, `said` in words."""
        ...

    def stop_run(self, promotion: Promotion, message: str) -> None:
        """End the run of another promotion this one ended (a rollback superseding it): suspended, paused or
        running elsewhere, it must not stay waiting."""
        ...


class NoEvents:
    def emit(self, promotion: Promotion, state: PromotionState) -> None:
        return None

    def notice(self, promotion: Promotion, event: str, said: str) -> None:
        return None

    def stop_run(self, promotion: Promotion, message: str) -> None:
        return None


@dataclass
class Context:
    project: Project
    promotion_id: int
    clock: Clock = field(default_factory=SystemClock)
    events: Events = field(default_factory=NoEvents)
    started: datetime | None = None  # when the step being run first started (a waiting step: its first look)
    # Where steps say what they did (the flows pass the Prefect run's logger).
    log: logging.Logger | logging.LoggerAdapter[logging.Logger] = field(
        default_factory=lambda: logging.getLogger("promoflow")
    )
    # The forge and the cluster target: from promotions.yaml through their registries, unless given (unit tests
    # give fakes of the interfaces).
    forge_override: Forge | None = None
    target_override: Target | None = None
    metrics_override: Metrics | None = None  # where metric checks look (the environment's Prometheus)

    @property
    def forge(self) -> Forge:
        return self.forge_override or forge_for(self.project)

    def target(self) -> Target:
        if self.target_override is not None:
            return self.target_override
        return target_for(self.project, self.project.config.environment(self.promotion.environment))

    def metrics(self) -> Metrics:
        if self.metrics_override is not None:
            return self.metrics_override
        server = self.project.config.environment(self.promotion.environment).prometheus
        assert server is not None, "metric checks run only where the environment has a Prometheus"
        return Prometheus(server)

    @property
    def promotion(self) -> Promotion:
        return self.project.db.promotion(self.promotion_id)

    def move(self, state: PromotionState, promotion_id: int | None = None, **changes: object) -> Promotion:
        """Record a promotion's next state (this one's unless named), checked against the state machine, and
        announce it once."""
        pid = self.promotion_id if promotion_id is None else promotion_id
        db = self.project.db
        before = db.promotion(pid)
        after = transition(before.state, state)
        promotion = db.update_promotion(pid, state=after.value, **changes)
        if after != before.state:
            self.events.emit(promotion, after)
        return promotion

    def output(self, step: str, model: type[Output]) -> Output | None:
        """The typed output of this promotion's last successful `step`, None if it has not succeeded."""
        return step_output(self.project.db, self.promotion_id, step, model)


def step_output(db: Database, promotion_id: int, step: str, model: type[Output]) -> Output | None:
    """The typed output of a promotion's last `step`, None unless that succeeded."""
    row = db.last_step(promotion_id, step)
    if row is None or row.outcome != "succeeded":
        return None
    return model.model_validate(json.loads(row.detail))
