"""Freezes and windows in the engine, with a clock the test moves: a promotion held at the door of an environment
waits (nothing merged) and goes on when the freeze ends or is lifted, or a window opens, daylight saving included;
an override by a listed person goes through, recorded; a rollback is never held."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from promoflow import holds, releases
from promoflow.engine.context import Context
from promoflow.engine.results import Gate, Terminal, Wait, Waiting
from promoflow.engine.runner import advance
from promoflow.engine.states import PromotionState
from promoflow.errors import TerminalError
from promoflow.gitops.manifests import ImagePin
from promoflow.records import Freeze
from promoflow.sources import oci_layout
from promoflow.waits import waits
from tests.unit.world import World, staging

S = PromotionState
NO_APPROVAL = ("required: 1                 # one approval before the merge", "required: 0")
STAGING = "    branch: env/staging\n"


def held(world: World, gate: Gate) -> tuple[Context, Waiting]:
    """A promotion into staging (dev done first, no approval needed) that waits at the door for `gate`."""
    ctx = staging(world, "required: 0")
    result = advance(ctx)
    assert isinstance(result, Wait) and result.waiting.gate == gate, result
    assert result.waiting.step == "entry" and not world.merged(ctx) and world.forge.opened
    return ctx, result.waiting


def staging_merged(world: World) -> bool:
    return any(branch.startswith("promoflow/staging/") for branch in world.forge.merged)


def test_a_planned_freeze_holds_a_promotion_until_it_ends(world: World) -> None:
    world.extend(
        "freezes:\n"
        "  - environment: staging\n"
        "    start: 2026-12-04T00:00:00+01:00\n"
        "    end: 2026-12-04T12:00:00+01:00\n"
        "    reason: launch week\n"
    )
    ctx, waiting = held(world, Gate.FREEZE)
    end = datetime(2026, 12, 4, 11, 0, tzinfo=UTC)
    assert waiting.wake_at == end
    assert waiting.summary == "the freeze of staging to end: launch week (promotions.yaml, until 2026-12-04 11:00 UTC)"
    world.clock.at = end - timedelta(seconds=1)
    assert isinstance(advance(ctx), Wait) and not staging_merged(world)
    (shown,) = waits(world.project, "web", "staging")
    assert (shown.gate, shown.until) == ("freeze", end)
    world.clock.at = end
    assert advance(ctx) is None and staging_merged(world)
    held_events = [e for pid, e in world.events.seen if pid == ctx.promotion_id and e.endswith(".held")]
    assert held_events == ["promoflow.promotion.held"]  # once, however often it looked
    assert world.forge.holds == [waiting.summary, None]  # the request shows the hold, then that it may go
    entered = world.project.db.last_step(ctx.promotion_id, "entry")
    assert entered is not None and entered.outcome == "succeeded" and '"overrode": []' in entered.detail


def test_a_freeze_from_the_command_line_holds_until_it_is_lifted_and_a_rollback_goes_through(world: World) -> None:
    db = world.project.db
    db.freeze(Freeze(environment="staging", reason="incident 42", frozen_by="olga", since=world.clock.now()))
    ctx, waiting = held(world, Gate.FREEZE)
    assert waiting.wake_at is None and waiting.decide == ["promoflow unfreeze staging"]
    assert "incident 42 (olga, until lifted)" in waiting.summary
    world.clock.advance(7 * 86400)
    assert isinstance(advance(ctx), Wait) and not staging_merged(world)

    (lifted,) = db.lift_freezes("staging", "olga", world.clock.now())
    assert lifted.lifted_by == "olga" and db.freezes("staging", world.clock.now()) == []
    assert advance(ctx) is None and staging_merged(world)

    db.freeze(Freeze(environment="staging", reason="again", frozen_by="olga", since=world.clock.now()))
    rollback = world.promote("staging", "1.1.0", kind="rollback")
    assert advance(rollback) is None and world.state(rollback) == S.SUCCEEDED


def test_an_override_goes_through_a_freeze_and_a_closed_window_only_by_a_listed_person(world: World) -> None:
    world.configure(STAGING, STAGING + "    override_by: [Alice]\n    windows: [{days: [sat], hours: 01:00-02:00}]\n")
    world.project.db.freeze(Freeze(environment="staging", reason="year end", frozen_by="olga", since=world.clock.now()))
    world.through_dev()
    world.configure(*NO_APPROVAL)
    with pytest.raises(
        TerminalError, match="rita may not promote into staging with --override-freeze: allowed are Alice"
    ):
        world.promote("staging", reason="hotfix", override_freeze=True)
    with pytest.raises(TerminalError, match="--override-freeze needs a reason"):
        world.promote("staging", requester="alice", reason=" ", override_freeze=True)
    assert world.project.db.promotions("web", "staging") == []  # a refusal changes nothing

    ctx = world.promote("staging", requester="alice", reason="CVE-2026-1234 fix", override_freeze=True)
    assert advance(ctx) is None and staging_merged(world)
    promotion = ctx.promotion
    assert (promotion.overridden_by, promotion.reason, promotion.override_freeze) == (
        "alice",
        "CVE-2026-1234 fix",
        True,
    )
    entered = world.project.db.last_step(ctx.promotion_id, "entry")
    assert entered is not None
    assert "freeze year end (olga, until lifted)" in entered.detail and "closed windows" in entered.detail
    assert (ctx.promotion_id, "promoflow.promotion.overridden") in world.events.seen
    assert not [e for _, e in world.events.seen if e.endswith(".held")]


def test_the_override_command_is_offered_to_a_held_promotion(world: World) -> None:
    world.configure(STAGING, STAGING + "    override_by: [alice, bob]\n")
    world.project.db.freeze(Freeze(environment="staging", reason="r", frozen_by="olga", since=world.clock.now()))
    assert held(world, Gate.FREEZE)[1].decide == [
        "promoflow unfreeze staging",
        "promoflow promote web --to staging --release 1.2.0 --override-freeze --reason TEXT (by alice, bob)",
    ]


def test_a_window_opening_while_a_promotion_waits_across_a_daylight_saving_change(world: World) -> None:
    """Berlin moves its clocks forward on Sunday 28 March 2027: Monday's 09:00 is 07:00 UTC, not 08:00."""
    world.configure(
        STAGING,
        STAGING + "    windows: [{days: [mon, tue, wed, thu, fri], hours: 09:00-17:00, timezone: Europe/Berlin}]\n",
    )
    world.clock.at = datetime(2027, 3, 26, 15, 30, tzinfo=UTC)  # Friday 16:30 in Berlin: open
    world.through_dev()
    world.clock.at = datetime(2027, 3, 26, 16, 0, tzinfo=UTC)  # 17:00 in Berlin: closed
    ctx, waiting = held(world, Gate.WINDOW)
    monday = datetime(2027, 3, 29, 7, 0, tzinfo=UTC)
    assert waiting.wake_at == monday
    assert waiting.summary == (
        "a window of staging to open (mon,tue,wed,thu,fri 09:00-17:00 Europe/Berlin; next at 2027-03-29 07:00 UTC)"
    )
    world.clock.at = monday - timedelta(minutes=1)
    assert isinstance(advance(ctx), Wait) and not staging_merged(world)
    world.clock.at = monday
    assert advance(ctx) is None and staging_merged(world)


def test_a_freeze_then_a_closed_window(world: World) -> None:
    """The freeze ends at night: the promotion then waits for the morning's window, the same wait going on."""
    world.configure(STAGING, STAGING + "    windows: [{hours: 08:00-18:00}]\n")
    world.project.db.freeze(
        Freeze(
            environment="staging",
            reason="r",
            frozen_by="olga",
            since=world.clock.now(),
            until=datetime(2026, 12, 4, 20, 0, tzinfo=UTC),
        )
    )
    ctx, first = held(world, Gate.FREEZE)
    world.clock.at = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
    then = advance(ctx)
    assert isinstance(then, Wait) and then.waiting.gate == Gate.WINDOW and then.waiting.since == first.since
    assert [e for _, e in world.events.seen if e.endswith(".held")] == ["promoflow.promotion.held"] * 2
    assert then.waiting.wake_at == datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


def test_active_freezes_are_planned_and_recorded_ones(world: World) -> None:
    world.extend(
        "freezes:\n  - {environment: prod, start: 2026-12-20T00:00:00Z, end: 2027-01-04T00:00:00Z, reason: year end}\n"
    )
    db, at = world.project.db, datetime(2026, 12, 24, tzinfo=UTC)
    db.freeze(Freeze(environment="prod", reason="pager", frozen_by="olga", since=at, until=at + timedelta(hours=1)))
    active = holds.freezes(world.project, "prod", at)
    assert [(f.reason, f.by) for f in active] == [("year end", "promotions.yaml"), ("pager", "olga")]
    assert holds.thaw(active) == datetime(2027, 1, 4, tzinfo=UTC)
    assert holds.freezes(world.project, "prod", datetime(2027, 1, 4, tzinfo=UTC)) == []
    assert holds.freezes(world.project, "staging", at) == []


def test_a_release_soaks_in_the_environment_before_even_with_an_override(world: World) -> None:
    """`verified_for: 1h` on staging: a release must have been good in dev for an hour, counted from its promotion
    there succeeding; an override of freezes and windows does not shorten it."""
    world.configure(STAGING, STAGING + "    verified_for: 1h\n    override_by: [alice]\n")
    world.through_dev()
    world.configure(*NO_APPROVAL)
    (dev,) = [p for p in world.project.db.promotions("web", "dev") if p.kind == "promotion"]
    assert dev.ended_at is not None
    good = dev.ended_at.replace(tzinfo=UTC)
    world.clock.at = good + timedelta(minutes=30)
    ctx = world.promote("staging", requester="alice", reason="in a hurry", override_freeze=True)
    waiting = advance(ctx)
    assert isinstance(waiting, Wait) and waiting.waiting.gate == Gate.SOAK
    assert waiting.waiting.wake_at == good + timedelta(hours=1) and waiting.waiting.decide == []
    assert waiting.waiting.summary.startswith("1.2.0 (") and " to have been good in dev for 1h (since " in (
        waiting.waiting.summary
    )
    (shown,) = waits(world.project, "web", "staging")
    assert (shown.gate, shown.until) == ("soak", good + timedelta(hours=1))
    world.clock.at = good + timedelta(hours=1) - timedelta(seconds=1)
    assert isinstance(advance(ctx), Wait) and not staging_merged(world)
    world.clock.at = good + timedelta(hours=1)
    assert advance(ctx) is None and staging_merged(world)


def test_a_tick_takes_the_newest_release_good_long_enough_before_and_never_an_older_one(world: World) -> None:
    world.configure(STAGING, STAGING + "    verified_for: 1h\n")
    world.configure(*NO_APPROVAL)
    assert holds.eligible(world.project, "web", "staging", world.clock.now()) == (
        None,
        "web has no release newer than staging's that succeeded in dev",
    )
    world.through_dev()
    (dev,) = [p for p in world.project.db.promotions("web", "dev") if p.kind == "promotion"]
    good = (dev.ended_at or datetime.min).replace(tzinfo=UTC)
    release, why = holds.eligible(world.project, "web", "staging", good + timedelta(minutes=30))
    assert release is None and why.startswith("1.2.0 (") and "soaks in dev until" in why
    release, _ = holds.eligible(world.project, "web", "staging", good + timedelta(hours=1))
    assert release is not None and release.label == "1.2.0"

    world.clock.at = good + timedelta(hours=1)
    assert advance(world.promote("staging")) is None
    release, why = holds.eligible(world.project, "web", "staging", good + timedelta(hours=2))
    assert release is None and why == "web has no release newer than staging's that succeeded in dev"
    oci_layout.publish(world.project.base_dir / ".promoflow" / "demo" / "oci" / "web", "1.3.0")
    assert advance(world.promote("dev", "1.3.0")) is None
    newer = world.project.db.release("web", "1.3.0")
    assert newer is not None
    world.project.db.reject_release("web", "staging", newer.id, "broke checkout", None)
    release, why = holds.eligible(world.project, "web", "staging", good + timedelta(days=1))
    assert release is None and "no release newer" in why  # 1.3.0 is rejected there; 1.1.0 would go back
    world.project.db.clear_rejection("web", "staging", newer.id)
    release, _ = holds.eligible(world.project, "web", "staging", good + timedelta(days=1))
    assert release is not None and release.label == "1.3.0"


def test_a_hotfix_skips_the_order_and_the_soak_only_by_a_listed_person(world: World) -> None:
    prod = "    branch: env/prod\n"
    world.configure(prod, prod + "    override_by: [alice]\n    verified_for: 1d\n")
    world.configure("      required: 1\n      sources: [ui, cli]\n      timeout", "      required: 0\n      timeout")
    world.through_dev()  # 1.2.0 has not been through staging
    in_order = advance(world.promote("prod", requester="alice"))
    assert isinstance(in_order, Terminal) and "has not succeeded in staging yet" in in_order.message
    with pytest.raises(TerminalError, match="rita may not promote into prod with --skip-order: allowed are alice"):
        world.promote("prod", reason="CVE", skip_order=True)

    ctx = world.promote("prod", requester="alice", reason="CVE-2026-1234", skip_order=True)
    assert advance(ctx) is None and world.state(ctx) == S.SUCCEEDED
    promotion = ctx.promotion
    assert (promotion.overridden_by, promotion.skip_order, promotion.override_freeze) == ("alice", True, False)
    entered = world.project.db.last_step(ctx.promotion_id, "entry")
    assert entered is not None and "the order (a hotfix)" in entered.detail
    assert (ctx.promotion_id, "promoflow.promotion.overridden") in world.events.seen


def test_a_newer_release_supersedes_an_older_one_waiting_in_the_environment(world: World) -> None:
    """`supersede: waiting` (the default): 1.3.0 ends 1.2.0's promotion waiting for a freeze in staging (recorded,
    its request closed naming the newer one) and takes its place; an older release never supersedes a newer."""
    world.project.db.freeze(Freeze(environment="staging", reason="r", frozen_by="olga", since=world.clock.now()))
    older, _ = held(world, Gate.FREEZE)
    oci_layout.publish(world.project.base_dir / ".promoflow" / "demo" / "oci" / "web", "1.3.0")
    assert advance(world.promote("dev", "1.3.0")) is None
    newer = world.promote("staging", "1.3.0")
    waiting = advance(newer)
    assert isinstance(waiting, Wait) and waiting.waiting.gate == Gate.FREEZE  # it holds the slot now
    ended = older.promotion
    why = f"promotion {newer.promotion_id} of the newer release 1.3.0 ("
    assert ended.state == S.SUPERSEDED and ended.error is not None and why in ended.error
    assert world.forge.closed == [ended.request_branch] and why in world.forge.comments[-1]
    assert (older.promotion_id, "run stopped") in world.events.seen
    preflight = world.project.db.last_step(newer.promotion_id, "preflight")
    assert preflight is not None and f'"superseded": [{older.promotion_id}]' in preflight.detail

    stale = world.promote("staging", "1.1.0")  # an older release queues behind the newer one
    queued = advance(stale)
    assert isinstance(queued, Wait) and queued.waiting.gate == Gate.SLOT
    assert newer.promotion.state != S.SUPERSEDED


def test_supersede_never_queues_a_newer_release_behind_the_waiting_one(world: World) -> None:
    world.configure(STAGING, STAGING + "    supersede: never\n")
    world.project.db.freeze(Freeze(environment="staging", reason="r", frozen_by="olga", since=world.clock.now()))
    older, _ = held(world, Gate.FREEZE)
    oci_layout.publish(world.project.base_dir / ".promoflow" / "demo" / "oci" / "web", "1.3.0")
    assert advance(world.promote("dev", "1.3.0")) is None
    queued = advance(world.promote("staging", "1.3.0"))
    assert isinstance(queued, Wait) and queued.waiting.summary == f"promotion {older.promotion_id} to finish"
    assert older.promotion.state != S.SUPERSEDED


def test_under_order_created_the_newer_release_is_the_newer_build(world: World) -> None:
    """Supersede asks which release is newer by the image's tag policy; `order: created` ranks by build time,
    which no tag says but the records keep (no registry is asked), whatever the tags' own order."""
    world.configure('semver: ">=1.0.0 <2"', "order: created")
    app = world.project.config.app("web")
    early, late = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    one = releases.record("web", [ImagePin(app.images[0].name, "1.9.0", "sha256:" + "1" * 64)], "test")
    other = releases.record("web", [ImagePin(app.images[0].name, "1.2.0", "sha256:" + "2" * 64)], "test")
    one.built_at, other.built_at = early, late
    assert releases.newer(app, other, one) and not releases.newer(app, one, other)
