"""A World for the engine's unit tests: one demo project (a real git repository and records in SQLite), fakes of
the forge and the cluster target, a clock the test moves, and the promotions started in it."""

from __future__ import annotations

import re

from promoflow.approvals import judge
from promoflow.engine.context import Context
from promoflow.engine.runner import advance
from promoflow.engine.states import PromotionState
from promoflow.forges import ReviewDecision
from promoflow.project import Project
from promoflow.promotion import start
from promoflow.records import Approval
from tests.unit.fakes import EventLog, FakeClock, FakeForge, FakeTarget


class World:
    """One project, its fakes, and the promotions started in it."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.clock = FakeClock()
        self.events = EventLog()
        self.forge = FakeForge()
        self.target = FakeTarget()

    def promote(
        self,
        env: str,
        release: str = "1.2.0",
        requester: str = "rita",
        kind: str = "promotion",
        reason: str = "",
        override_freeze: bool = False,
        skip_order: bool = False,
    ) -> Context:
        promotion = start(
            self.project,
            "web",
            env,
            release,
            requester,
            kind,
            reason,
            override_freeze=override_freeze,
            skip_order=skip_order,
        )
        assert promotion.id is not None
        return self.context(promotion.id)

    def context(self, pid: int) -> Context:
        return Context(
            self.project,
            pid,
            clock=self.clock,
            events=self.events,
            forge_override=self.forge,
            target_override=self.target,
        )

    def decide(self, ctx: Context, who: str, decision: str = "approve", source: str = "cli") -> None:
        promotion = ctx.promotion
        policy = self.project.config.environment(promotion.environment).approval
        verdict = judge(
            policy, promotion.requested_by, who, source, decision, self.project.db.approvals(ctx.promotion_id)
        )
        self.project.db.add_approval(
            Approval(
                promotion_id=ctx.promotion_id,
                approver=who,
                decision=decision,
                source=source,
                counted=verdict.counted,
                reason=verdict.reason,
            )
        )

    def merged(self, ctx: Context) -> bool:
        return ctx.promotion.request_branch in self.forge.merged

    def state(self, ctx: Context) -> PromotionState:
        return PromotionState(ctx.promotion.state)

    def through_dev(self) -> None:
        assert advance(self.promote("dev")) is None

    def use_github(self) -> None:
        """`forge: github` in promotions.yaml (the fake forge stands in for it; no token is read)."""
        self.configure(
            "  forge: local                    # promotion requests are branches + records, merged by promoflow\n",
            "  forge: github\n  github: {repository: acme/deploy, token: 'env:NO_TOKEN_NEEDED'}\n",
        )
        path = self.project.config_path
        path.write_text(re.sub(r"sources: \[ui, cli\].*", "sources: [forge]", path.read_text()))
        self.project = Project.load(path)

    def extend(self, text: str) -> None:
        """Add top-level sections to promotions.yaml and load it again."""
        path = self.project.config_path
        path.write_text(path.read_text() + text)
        self.project = Project.load(path)

    def configure(self, old: str, new: str) -> None:
        """Edit promotions.yaml (the demo's) and load it again."""
        path = self.project.config_path
        text = path.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new, 1))
        self.project = Project.load(path)


def staging(world: World, policy: str = "") -> Context:
    """A promotion into staging (one approval; `policy` replaces that line), dev done first."""
    world.through_dev()
    if policy:
        world.configure("required: 1                 # one approval before the merge", policy)
    return world.promote("staging")


def review(number: int, who: str, state: str, head: str, counted: bool = True) -> ReviewDecision:
    decision = {"APPROVED": "approve", "CHANGES_REQUESTED": "reject"}.get(state, "none")
    return ReviewDecision(number, who, state, decision, head, None, counted, "counted" if counted else state.lower())
