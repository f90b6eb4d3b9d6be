"""Flow: walk one release through the app's environments in order, stopping at the first failure."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.promote import run_promotion
from promoflow import releases, settings
from promoflow.promotion import sources
from tasks._shared import project


@flow(name="pipeline", flow_run_name="pipeline {app}")
def pipeline(
    app: str, release: str | None = None, requested_by: str | None = None, config: str = "promotions.yaml"
) -> list[int]:
    """Promote into every environment on the route whose `auto_promote` allows it."""
    p = project(config)
    db = p.db
    logger = get_run_logger()
    app_config = p.config.app(app)
    chosen = releases.resolve(db, app_config, sources(p, app_config), release, "oci-layout")
    logger.info("Pipeline of %s release %s (%s)", app, chosen.label, chosen.id)
    done: list[int] = []
    for env in p.config.route(app):
        if not env.auto_promote:
            logger.info(
                "Stopping before %s: promote there with `promoflow promote %s --to %s`",
                env.name,
                app,
                env.name,
            )
            break
        if chosen.id in db.rejected(app, env.name):
            logger.warning("Release %s is rejected for %s; stopping", chosen.id, env.name)
            break
        state = db.environment_state(app, env.name)
        if state and state.last_known_good == chosen.id and state.current_release == chosen.id:
            logger.info("%s already runs %s", env.name, chosen.label)
            continue
        done.append(
            run_promotion(
                app,
                env.name,
                release=chosen.id,
                requested_by=requested_by or settings.current_user(),
                config=config,
            )
        )
    return done
