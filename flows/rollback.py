"""Flow: put an environment back on its last known good (or a named) release."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.promote import promote
from promoflow import settings
from promoflow.engine.context import Context
from promoflow.engine.runner import tell_forge
from promoflow.engine.states import PromotionState
from promoflow.errors import PromoflowError, TerminalError
from promoflow.promotion import rollback_target
from tasks._shared import project
from tasks.steps import mark


@flow(name="rollback", flow_run_name="roll back {app} in {environment}")
def rollback(
    app: str,
    environment: str,
    to: str | None = None,
    reason: str = "",
    requested_by: str | None = None,
    config: str = settings.FROM_ENVIRONMENT,
    failed_promotion: int | None = None,
) -> int:
    """Promote the last known good release (or `to`) back, marking the current release rejected there once the
    rollback holds the environment (a promotion waiting for approval there is superseded, not waited for).

    Rollbacks skip the order check and, unless the environment's rollback policy says otherwise,
    approvals; a failing rollback never triggers another one.
    """
    p = project(config)
    db = p.db
    target = rollback_target(p, app, environment, to).id
    state = db.environment_state(app, environment)
    current = state.current_release if state else None
    culprit = failed_promotion or (state.current_promotion if state else None)
    why = reason or "rolled back"
    get_run_logger().info(
        "Rolling %s in %s back from %s to %s",
        app,
        environment,
        db.get_release(current).display_name if current else "nothing recorded",
        db.get_release(target).display_name,
    )
    try:
        pid = promote(
            app,
            environment,
            release=target,
            requested_by=requested_by or settings.current_user(),
            reason=why,
            config=config,
            kind="rollback",
            rollback_of=culprit,
        )
    except PromoflowError as error:
        marked = current is not None and current in db.rejected(app, environment)
        raise TerminalError(
            f"The rollback of {app} in {environment} failed: {error} "
            + ("The failed release stays rejected there; fix" if marked else "Fix")
            + " the cause and run `promoflow rollback` again."
        ) from None
    if culprit:
        mark(p, culprit, PromotionState.ROLLED_BACK)
        tell_forge(Context(p, culprit, log=get_run_logger()), f"Rolled back by promotion {pid}: {why}")
    return pid
