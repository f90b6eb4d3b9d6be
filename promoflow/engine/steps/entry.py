"""Step: whether the release may enter the environment now, right before its merge: not before it has been good
in the environment before this one for `verified_for` (soak), not while a freeze holds the environment, not
outside its windows. A promotion held here waits (its request open, its approvals kept) and goes on when the
soak is over, the freeze ends or is lifted, or the window opens. An override by one of the environment's
`override_by` lets it through freezes and windows (not the soak), recorded. Rollbacks are never held: they
restore what was good."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from promoflow import holds, timing
from promoflow.engine.results import Done, Gate, StepResult, Wait, Waiting
from promoflow.engine.steps import register
from promoflow.engine.steps.prepare import changed
from promoflow.errors import PromoflowError
from promoflow.forges import Request

if TYPE_CHECKING:
    from promoflow.engine.context import Context


class Entered(BaseModel):
    at: datetime
    overrode: list[str] = Field(
        default_factory=list, description="the freezes, closed windows and order it went through"
    )


@register
class Entry:
    name = "entry"
    output = Entered

    def applies(self, ctx: Context) -> bool:
        return changed(ctx) and ctx.promotion.kind != "rollback"

    def run(self, ctx: Context) -> StepResult:
        p, promotion = ctx.project, ctx.promotion
        env = p.config.environment(promotion.environment)
        now = ctx.clock.now()
        overrode = ["the order (a hotfix)"] if promotion.skip_order else []
        previous = p.config.previous(promotion.app, env.name)
        if env.verified_for is not None and previous is not None and not promotion.skip_order:
            release = p.db.get_release(promotion.release_id)
            # preflight made sure it succeeded there, unless a hotfix skipped the order
            since = holds.good_since(p, promotion.app, previous.name, release.id)
            if since is not None and now < since + env.verified_for:
                soaked = since + env.verified_for
                return self._wait(
                    ctx,
                    Gate.SOAK,
                    f"{release.display_name} to have been good in {previous.name} for "
                    f"{timing.words(env.verified_for)} (since {holds.stamp(since)}, until {holds.stamp(soaked)})",
                    soaked,
                    [],
                    overridable=False,
                )
        frozen = holds.freezes(p, env.name, now)
        if frozen and promotion.override_freeze:
            overrode += [f"freeze {f.describe()}" for f in frozen]
        elif frozen:
            lifted = any(f.id is not None for f in frozen)
            return self._wait(
                ctx,
                Gate.FREEZE,
                f"the freeze of {env.name} to end: " + "; ".join(f.describe() for f in frozen),
                holds.thaw(frozen),
                [f"promoflow unfreeze {env.name}"] if lifted else [],
            )
        openings = [w.opening() for w in env.windows]
        if openings and not any(o.open_at(now) for o in openings):
            if promotion.override_freeze:
                overrode.append(f"closed windows ({', '.join(w.describe() for w in env.windows)})")
            else:
                opens = timing.first_opening(openings, now)
                when = f"next at {holds.stamp(opens)}" if opens else "none within a year"
                return self._wait(
                    ctx,
                    Gate.WINDOW,
                    f"a window of {env.name} to open ({', '.join(w.describe() for w in env.windows)}; {when})",
                    opens,
                    [],
                )
        if promotion.waiting and Waiting.model_validate_json(promotion.waiting).step == self.name:
            self._tell(ctx, None)  # it was held here: it goes on now
        if overrode:
            said = f"{'; '.join(overrode)}: overridden by {promotion.overridden_by} ({promotion.reason})"
            ctx.log.warning("Promotion %s goes through %s", ctx.promotion_id, said)
            ctx.events.notice(promotion, "overridden", said)
        return Done(Entered(at=now, overrode=overrode))

    def _wait(
        self,
        ctx: Context,
        gate: Gate,
        summary: str,
        until: datetime | None,
        decide: list[str],
        overridable: bool = True,
    ) -> Wait:
        promotion = ctx.promotion
        env = ctx.project.config.environment(promotion.environment)
        if env.override_by and overridable:
            release = ctx.project.db.get_release(promotion.release_id).label
            decide = [
                *decide,
                f"promoflow promote {promotion.app} --to {env.name} --release {release} --override-freeze "
                f"--reason TEXT (by {', '.join(env.override_by)})",
            ]
        before = Waiting.model_validate_json(promotion.waiting) if promotion.waiting else None
        if before is None or (before.step, before.gate) != (self.name, gate):  # once per hold, not per look
            ctx.events.notice(promotion, "held", summary)
            self._tell(ctx, summary)
        now = ctx.clock.now()
        return Wait(
            Waiting(step=self.name, gate=gate, summary=summary, since=ctx.started or now, wake_at=until, decide=decide)
        )

    def _tell(self, ctx: Context, why: str | None) -> None:
        """The request shows it is held (`why`) or may go (None); best effort: the records decide."""
        request = ctx.output("open_request", Request)
        if request is None:
            return
        try:
            ctx.forge.hold(ctx.promotion, request, why)
        except PromoflowError as error:
            ctx.log.warning("Could not show the hold on the request of promotion %s: %s", ctx.promotion_id, error)
