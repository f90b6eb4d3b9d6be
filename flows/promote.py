"""Flow: promote one release of one app into one environment, step by step, recorded."""

from __future__ import annotations

from typing import TypeVar, cast

from prefect import flow, get_run_logger
from prefect.states import Cancelled

from flows.resume import claim
from promoflow import settings
from promoflow.clusters.targets import VerificationFailed
from promoflow.engine.results import Wait
from promoflow.engine.states import PromotionState
from promoflow.errors import TerminalError
from promoflow.promotion import runner_id, start
from tasks._shared import hold_until_scheduled, label_run, project

T = TypeVar("T")


@flow(name="promote", flow_run_name="promote {app} to {environment}")
def promote(
    app: str,
    environment: str,
    release: str | None = None,
    requested_by: str | None = None,
    reason: str = "",
    config: str = settings.FROM_ENVIRONMENT,
    kind: str = "promotion",
    rollback_of: int | None = None,
    override_freeze: bool = False,
    skip_order: bool = False,
) -> int:
    """Promote `release` (id, label or tag; newest by policy if omitted) of `app` into `environment`.
    `override_freeze`: the requester, one of the environment's `override_by`, lets it through freezes and windows;
    `skip_order`: past the environments before that the release has not been through (a hotfix), for `reason`.

    Re-running it after a crash resumes the same promotion: every step finds what it already did.
    """
    hold_until_scheduled()
    claim(config)
    pid = run_promotion(
        app,
        environment,
        release,
        requested_by,
        reason,
        config,
        kind,
        rollback_of,
        override_freeze=override_freeze,
        skip_order=skip_order,
    )
    return finished(config, [pid], pid)


def finished(config: str, promotions: list[int], result: T) -> T:
    """The flow's return: `result`, or a Cancelled state holding it when a promotion of the run was cancelled
    (cancelling a run in the Prefect UI must leave it Cancelled, not Completed) or superseded (a rollback took
    its environment and cancelled this run)."""
    db = project(config).db
    stopped = [db.promotion(pid) for pid in promotions]
    stopped = [p for p in stopped if p.state in (PromotionState.CANCELLED, PromotionState.SUPERSEDED)]
    if not stopped:
        return result
    return cast(
        T, Cancelled(message=f"promotion {stopped[0].id} {PromotionState(stopped[0].state).words}", data=result)
    )


def run_promotion(
    app: str,
    environment: str,
    release: str | None = None,
    requested_by: str | None = None,
    reason: str = "",
    config: str = settings.FROM_ENVIRONMENT,
    kind: str = "promotion",
    rollback_of: int | None = None,
    bundle_id: str | None = None,
    rename_run: bool = True,
    hold_waits: bool = True,
    override_freeze: bool = False,
    skip_order: bool = False,
) -> int:
    """One promotion, inside whichever flow run calls it (`promote`, or `pipeline` for each environment: one run
    for the whole walk, its waits suspending or pausing that run). Returns the promotion's id; raises when it
    failed (a rejection, an expiry or a supersession is a decision, not a failure: the run completes). With
    `hold_waits` False it returns when the promotion waits, too (it has not ended then)."""
    from flows.driver import drive

    p = project(config)
    db = p.db
    requester = requested_by or settings.current_user()
    promotion = start(
        p, app, environment, release, requester, kind, reason, rollback_of, bundle_id, override_freeze, skip_order
    )
    pid = promotion.id
    assert pid is not None
    db.update_promotion(pid, flow_run_id=_flow_run_id(), runner=runner_id())
    release_label = db.get_release(promotion.release_id).label
    verb = "roll back" if kind == "rollback" else "promote"
    label_run(f"{verb} {app} {release_label} to {environment}" if rename_run else None, app, environment, release_label)
    logger = get_run_logger()
    release_name = db.get_release(promotion.release_id).display_name
    logger.info("Promotion %s: %s of %s into %s", pid, kind, release_name, environment)
    try:
        outcome = drive(config, pid, hold_waits)
    except Exception as error:  # a bug or an unforeseen failure must not hold the slot forever
        if not PromotionState(db.promotion(pid).state).ended:
            db.update_promotion(pid, state="failed", error=f"unexpected {type(error).__name__}: {error}")
        raise
    if outcome is None:
        logger.info("Promotion %s succeeded", pid)
        return pid
    if isinstance(outcome, Wait):
        logger.info("Promotion %s waits for %s", pid, outcome.waiting.summary)
        return pid
    if outcome.state != PromotionState.FAILED:
        logger.warning("Promotion %s %s: %s", pid, outcome.state.words, outcome.message)
        return pid
    env = p.config.environment(environment)
    if outcome.roll_back and env.rollback.automatic and kind != "rollback":
        from flows.rollback import rollback

        logger.warning("Promotion %s failed verification; rolling back %s in %s", pid, app, environment)
        rollback(
            app,
            environment,
            reason=f"automatic: promotion {pid} failed verification",
            requested_by="promoflow",
            config=config,
            failed_promotion=pid,
        )
    raise (VerificationFailed if outcome.roll_back else TerminalError)(outcome.message)


def _flow_run_id() -> str:
    from prefect.context import get_run_context

    context = get_run_context()
    return str(context.flow_run.id)  # type: ignore[union-attr]
