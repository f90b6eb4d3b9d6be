"""Flow: promote one release of one app into one environment, step by step, recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar, cast

from prefect import flow, get_run_logger
from prefect.states import Cancelled

from flows.approval import ApprovalRejected, await_approvals, current_flow_run_id
from flows.github_approval import await_reviews
from promoflow import settings
from promoflow.errors import PromoflowError, Superseded
from promoflow.promotion import runner_id, start
from tasks._shared import project, retry_options
from tasks.apply import apply
from tasks.finalize import finalize
from tasks.merge import merge
from tasks.open_request import open_request
from tasks.preflight import preflight
from tasks.prepare import prepare
from tasks.report import report
from tasks.verify import VerificationFailed, verify

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
) -> int:
    """Promote `release` (id, label or tag; newest by policy if omitted) of `app` into `environment`.

    Re-running it after a crash resumes the same promotion: every step finds what it already did.
    """
    return cancelled_if_superseded(
        lambda: run_promotion(app, environment, release, requested_by, reason, config, kind, rollback_of)
    )


def cancelled_if_superseded(body: Callable[[], T]) -> T:
    """Run a flow's body. When a promotion in it is superseded (a rollback took its environment and cancelled
    this run), the run ends Cancelled rather than Failed, and the caller still gets the `Superseded` error:
    Prefect makes a returned state the run's final state and raises that state's data for the caller."""
    try:
        return body()
    except Superseded as error:
        return cast(T, Cancelled(message=str(error), data=error))


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
) -> int:
    """The steps of one promotion, inside whichever flow run calls it (`promote`, or `pipeline` for each
    environment: one run for the whole walk, its approval waits pausing that run)."""
    p = project(config)
    db = p.db
    requester = requested_by or settings.current_user()
    promotion = start(p, app, environment, release, requester, kind, reason, rollback_of, bundle_id)
    pid = promotion.id
    assert pid is not None
    db.update_promotion(pid, flow_run_id=current_flow_run_id(), runner=runner_id())
    env = p.config.environment(environment)
    retrying = retry_options(env)
    logger = get_run_logger()
    logger.info(
        "Promotion %s: %s of %s into %s", pid, kind, db.get_release(promotion.release_id).display_name, environment
    )
    try:
        if not preflight.with_options(**retrying)(config, pid):
            logger.info("Promotion %s was superseded by a newer request", pid)
            return pid
        changed = prepare.with_options(**retrying)(config, pid)
        merging = db.last_step(pid, "merge")
        if merging is not None and merging.outcome != "succeeded":
            # A run ended inside the merge: the forge may hold a merge nobody recorded. Merging again finds it
            # (or makes it), with the approvers the decision to merge was taken on.
            logger.info("Promotion %s: settling the merge an earlier run started", pid)
            merge.with_options(**retrying)(config, pid, json.loads(merging.detail).get("approvers", []))
        elif merging is None and changed:
            description = open_request.with_options(**retrying)(config, pid)
            wanted = kind != "rollback" or env.rollback.require_approval
            if p.config.repository.forge == "github" and wanted and (env.approval.required or env.checks):
                approvers = await_reviews(p, pid, env, description)
            elif wanted and env.approval.required:
                approvers = await_approvals(p, pid, env.approval, description)
            else:
                approvers = []
            merge.with_options(**retrying)(config, pid, approvers)
        apply.with_options(**retrying)(config, pid)
        verify.with_options(**retrying)(config, pid)  # terminal failures (unhealthy) are not retried
        finalize.with_options(**retrying)(config, pid)
    except Superseded as error:  # recorded by the rollback that took the environment
        db.update_promotion(pid, state="superseded")
        logger.warning("%s", error)
        raise
    except ApprovalRejected as error:
        db.update_promotion(pid, state="rejected", error=str(error))
        report(p, pid, "failure", f"Promotion {pid} was rejected: {error}", comment=True)
        raise
    except VerificationFailed as error:
        db.update_promotion(pid, state="failed", error=str(error))
        report(p, pid, "failure", f"Promotion {pid} failed verification: {error}", comment=True)
        if env.rollback.automatic and kind != "rollback":
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
        raise
    except PromoflowError as error:
        db.update_promotion(pid, state="failed", error=str(error))
        report(p, pid, "failure", f"Promotion {pid} failed: {error}", comment=True)
        raise
    except Exception as error:  # a bug or an unforeseen failure must not hold the slot forever
        db.update_promotion(pid, state="failed", error=f"unexpected {type(error).__name__}: {error}")
        raise
    logger.info("Promotion %s succeeded", pid)
    return pid
