"""Step: verify the environment is healthy: the target's own judgement (rollouts, the controller's sync), then
the app's HTTP checks, kept passing through the environment's soak time."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import Field

from promoflow.clusters.targets import Applied, VerificationFailed, Verified
from promoflow.engine.results import Done, StepResult, Terminal
from promoflow.engine.states import PromotionState
from promoflow.engine.steps import register
from promoflow.health import run_check

if TYPE_CHECKING:
    from promoflow.engine.context import Context


class Verification(Verified):
    checks: int = 0
    soak_seconds: float = 0
    rounds: int = 0
    results: list[dict[str, Any]] = Field(default_factory=list)


@register
class Verify:
    name = "verify"
    output = Verification

    def applies(self, ctx: Context) -> bool:
        return True

    def run(self, ctx: Context) -> StepResult:
        p, promotion = ctx.project, ctx.promotion
        app = p.config.app(promotion.app)
        env = p.config.environment(promotion.environment)
        applied = ctx.output("apply", Applied)
        assert applied is not None
        verification = Verification(checks=len(app.health_checks), soak_seconds=env.soak_seconds)
        try:
            seen = ctx.target().check(ctx, applied)
            verification.rollouts, verification.sync = seen.rollouts, seen.sync
            # Active checking, not waiting: the checks must keep passing for the whole soak time.
            deadline = time.monotonic() + env.soak_seconds
            while True:
                verification.rounds += 1
                results = [run_check(check) for check in app.health_checks]
                verification.results = [r.as_dict() for r in results]
                failed = [r for r in results if not r.healthy]
                if failed:
                    raise VerificationFailed(
                        f"{promotion.app} is unhealthy in {promotion.environment}: "
                        + "; ".join(f"{r.url} {r.message}" for r in failed)
                    )
                if time.monotonic() >= deadline:
                    break
                time.sleep(min(1.0, max(deadline - time.monotonic(), 0)))
        except VerificationFailed as error:
            return Terminal(str(error), roll_back=True, seen=verification)
        ctx.move(PromotionState.VERIFIED)
        return Done(verification)
