"""The promotion engine without Prefect: its steps walked against a real git repository and records (SQLite) with
fakes of the forge and the cluster target, and a clock the test moves. Seconds, no server."""

from __future__ import annotations

from promoflow.engine.results import Gate, RetryAfter, Terminal, Wait
from promoflow.engine.runner import advance, run_step
from promoflow.engine.states import PromotionState
from promoflow.engine.steps import load
from promoflow.forges import Request
from promoflow.sources import oci_layout
from tests.unit.world import World, review, staging

S = PromotionState


def test_a_promotion_without_approvals_goes_all_the_way_in_one_walk(world: World) -> None:
    ctx = world.promote("dev")
    assert advance(ctx) is None
    assert world.state(ctx) == S.SUCCEEDED
    assert world.events.seen == [
        (ctx.promotion_id, f"promoflow.promotion.{s}") for s in ("merged", "applied", "verified", "succeeded")
    ]
    assert (len(world.forge.opened), len(world.forge.merged), world.target.applies) == (1, 1, 1)
    assert [s.name for s in world.project.db.steps(ctx.promotion_id)] == [n for n in load() if n != "approval"]
    state = world.project.db.environment_state("web", "dev")
    assert state is not None and state.current_release == state.last_known_good == ctx.promotion.release_id


def test_a_quorum_of_two_counts_people_not_decisions(world: World) -> None:
    world.through_dev()
    world.configure("required: 1                 # one approval before the merge", "required: 2")
    ctx = world.promote("staging")

    waiting = advance(ctx)
    assert isinstance(waiting, Wait) and waiting.waiting.gate == Gate.APPROVAL
    assert waiting.waiting.summary == "approvals 0 of 2" and waiting.waiting.form
    assert world.state(ctx) == S.AWAITING_APPROVAL and not world.merged(ctx)

    world.decide(ctx, "rita")  # the requester: recorded, not counted
    world.decide(ctx, "alice")
    world.decide(ctx, "alice", source="ui")  # the same person again, from the UI
    again = advance(ctx)
    assert isinstance(again, Wait) and again.waiting.summary == "approvals 1 of 2"
    assert again.waiting.approved_by == ["alice"] and not world.merged(ctx)

    world.decide(ctx, "bob")
    assert advance(ctx) is None
    assert world.state(ctx) == S.SUCCEEDED and world.merged(ctx)
    assert [e for _, e in world.events.seen][-5:] == [
        "promoflow.promotion.approved",
        "promoflow.promotion.merged",
        "promoflow.promotion.applied",
        "promoflow.promotion.verified",
        "promoflow.promotion.succeeded",
    ]


def test_a_rejection_ends_the_promotion_and_tells_the_request(world: World) -> None:
    ctx = staging(world)
    assert isinstance(advance(ctx), Wait)
    world.decide(ctx, "alice", "reject")
    ended = advance(ctx)
    assert isinstance(ended, Terminal) and ended.state == S.REJECTED
    assert world.state(ctx) == S.REJECTED and not world.merged(ctx)
    assert ctx.promotion.error == f"Promotion {ctx.promotion_id} was rejected by alice."
    assert world.forge.comments == [f"Promotion {ctx.promotion_id} was rejected: {ctx.promotion.error}"]
    assert world.events.seen[-1] == (ctx.promotion_id, "promoflow.promotion.rejected")
    assert advance(ctx) == ended  # an ended promotion stays ended, whoever looks again


def test_a_wait_expires_by_its_policy_even_if_nobody_looked_in_between(world: World) -> None:
    ctx = staging(world, "required: 1\n      timeout_seconds: 3600")
    first = advance(ctx)
    assert isinstance(first, Wait) and first.waiting.expires_by == "staging's approval timeout (3600 s)"
    world.clock.advance(3599)
    assert isinstance(advance(ctx), Wait)
    world.clock.advance(1)
    ended = advance(ctx)
    assert isinstance(ended, Terminal) and ended.state == S.EXPIRED
    assert "staging's approval timeout (3600 s) ran out while it waited for approvals 0 of 1" in ended.message
    assert world.forge.closed == [ctx.promotion.request_branch] and not world.merged(ctx)


def test_a_change_request_blocks_even_after_the_quorum(world: World) -> None:
    world.use_github()
    ctx = staging(world, "required: 2\n      allow_self_approval: false")
    assert isinstance(advance(ctx), Wait)
    head = str(ctx.promotion.request_head)
    world.forge.reviews = [review(1, "alice", "APPROVED", head), review(2, "bob", "APPROVED", head)]
    world.forge.reviews.append(review(3, "carol", "CHANGES_REQUESTED", head))
    blocked = advance(ctx)
    assert isinstance(blocked, Wait)
    assert blocked.waiting.summary == "approvals 2 of 2; carol's requested changes to be dismissed or approved"
    assert not world.merged(ctx)
    world.forge.reviews[2] = review(3, "carol", "DISMISSED", head, counted=False)
    assert advance(ctx) is None and world.merged(ctx)


def test_required_checks_wait_then_a_failing_one_ends_the_promotion(world: World) -> None:
    world.use_github()
    world.configure("    branch: env/staging\n", "    branch: env/staging\n    checks: [ci/e2e]\n")
    ctx = staging(world, "required: 0")
    waiting = advance(ctx)
    assert isinstance(waiting, Wait) and waiting.waiting.gate == Gate.CHECKS
    assert waiting.waiting.checks == {"ci/e2e": "missing"} and waiting.waiting.form is False
    world.forge.checks["ci/e2e"] = "failure"
    ended = advance(ctx)
    assert isinstance(ended, Terminal) and ended.state == S.FAILED and "Required check ci/e2e failed" in ended.message


def test_a_push_to_the_request_ends_it(world: World) -> None:
    ctx = staging(world)
    assert isinstance(advance(ctx), Wait)
    world.forge.head = "f" * 40
    ended = advance(ctx)
    assert isinstance(ended, Terminal) and "Someone pushed to branch" in ended.message and not world.merged(ctx)


def test_a_failed_verification_ends_it_asking_for_a_rollback_and_keeps_what_was_seen(world: World) -> None:
    world.target.healthy = False
    ctx = world.promote("dev")
    ended = advance(ctx)
    assert isinstance(ended, Terminal) and ended.roll_back and ended.state == S.FAILED
    verify = world.project.db.last_step(ctx.promotion_id, "verify")
    assert verify is not None and verify.outcome == "failed" and '"checks": 0' in verify.detail
    assert world.forge.statuses[-1][0] == "failure"


def test_a_transient_failure_is_retried_where_it_happened(world: World) -> None:
    world.target.transient_failures = 1
    ctx = world.promote("dev")
    retry = advance(ctx)
    assert isinstance(retry, RetryAfter) and "503" in retry.message
    assert world.state(ctx) == S.MERGED and world.merged(ctx)
    assert advance(ctx) is None
    applies = [s.outcome for s in world.project.db.steps(ctx.promotion_id) if s.name == "apply"]
    assert applies == ["failed", "succeeded"] and world.target.applies == 1 and len(world.forge.merged) == 1


def test_a_step_killed_midway_is_taken_again_and_nothing_is_done_twice(world: World) -> None:
    ctx = world.promote("dev")
    steps = load()
    for name in ("preflight", "prepare", "open_request"):
        run_step(steps[name], ctx)
    world.project.db.begin_step(ctx.promotion_id, "merge")  # its process died after recording the intent
    assert advance(ctx) is None
    merges = [s.outcome for s in world.project.db.steps(ctx.promotion_id) if s.name == "merge"]
    assert merges == ["interrupted", "succeeded"]
    assert [s.name for s in world.project.db.steps(ctx.promotion_id)].count("prepare") == 1
    assert len(world.forge.merged) == 1 and world.target.applies == 1


def test_one_promotion_per_app_and_environment_at_a_time(world: World) -> None:
    world.configure("    branch: env/staging\n", "    branch: env/staging\n    supersede: queued\n")
    oci_layout.publish(world.project.base_dir / ".promoflow" / "demo" / "oci" / "web", "1.3.0")
    first = staging(world)
    assert isinstance(advance(first), Wait)
    assert advance(world.promote("dev", "1.3.0")) is None
    second_ctx = world.promote("staging", "1.3.0")
    queued = advance(second_ctx)
    assert isinstance(queued, Wait) and queued.waiting.gate == Gate.SLOT
    assert queued.waiting.summary == f"promotion {first.promotion_id} to finish"
    world.decide(first, "alice")
    assert advance(first) is None
    assert isinstance(advance(second_ctx), Wait)  # its own approval, now that it holds the slot
    world.decide(second_ctx, "alice")
    assert advance(second_ctx) is None


def test_a_rollback_supersedes_a_promotion_waiting_for_approval(world: World) -> None:
    """An emergency does not queue behind days of approvals: the waiting promotion ends superseded (its run
    stopped, its request closed with why) and the rollback marks the release it replaces rejected once it holds
    the environment."""
    world.configure("required: 1                 # one approval before the merge", "required: 0  # for now")
    assert advance(staging(world)) is None  # 1.2.0 runs in staging
    world.configure("required: 0  # for now", "required: 1")
    oci_layout.publish(world.project.base_dir / ".promoflow" / "demo" / "oci" / "web", "1.3.0")
    assert advance(world.promote("dev", "1.3.0")) is None
    waiting = world.promote("staging", "1.3.0")
    assert isinstance(advance(waiting), Wait)
    db = world.project.db
    good = db.promotions("web", "staging")[-1]
    assert good.id is not None and good.state == PromotionState.SUCCEEDED

    rollback = world.promote("staging", "1.1.0", kind="rollback")
    db.update_promotion(rollback.promotion_id, rollback_of=good.id, reason="pager")
    assert advance(rollback) is None

    ended = db.promotion(waiting.promotion_id)
    why = f"rollback {rollback.promotion_id} took staging: pager"
    assert (ended.state, ended.slot, ended.waiting) == (PromotionState.SUPERSEDED, None, None)
    assert ended.error == f"Promotion {waiting.promotion_id} was superseded ({why}): nothing was merged."
    assert (waiting.promotion_id, "run stopped") in world.events.seen
    assert world.forge.closed == [waiting.output("open_request", Request).branch]  # type: ignore[union-attr]
    assert world.forge.comments[-1] == f"Superseded: {why}. Nothing was merged."
    assert [s.outcome for s in db.steps(waiting.promotion_id) if s.name == "approval"] == ["interrupted"]
    assert db.rejected("web", "staging") and good.release_id in db.rejected("web", "staging")
    assert advance(waiting) is not None  # its driver, looking again, finds it ended
