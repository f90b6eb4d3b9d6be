"""Flow: walk one release through the app's environments in order, stopping at the first failure; or one
bundle of a group, every member into each environment before the next."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.promote import run_promotion
from promoflow import releases, settings
from promoflow.config import Group
from promoflow.errors import TerminalError
from promoflow.project import Project
from promoflow.promotion import resolve_bundle, sources
from promoflow.records import Bundle
from tasks._shared import project


@flow(name="pipeline", flow_run_name="pipeline {app}")
def pipeline(
    app: str, release: str | None = None, requested_by: str | None = None, config: str = "promotions.yaml"
) -> list[int]:
    """Promote into every environment on the route whose `auto_promote` allows it. `app` may name a group:
    then `release` names one of its bundles."""
    p = project(config)
    group = p.config.group(app)
    if group is not None:
        return _bundle_pipeline(p, group, release, requested_by or settings.current_user(), config)
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
        if _runs(p, app, env.name, chosen.id):
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


def _runs(p: Project, app: str, environment: str, release_id: str) -> bool:
    state = p.db.environment_state(app, environment)
    return state is not None and state.last_known_good == release_id and state.current_release == release_id


def _bundle_pipeline(p: Project, group: Group, ref: str | None, requested_by: str, config: str) -> list[int]:
    db = p.db
    logger = get_run_logger()
    bundle = resolve_bundle(p, group, ref, "pipeline")
    members = bundle.members()
    logger.info("Pipeline of group %s bundle %s (%s)", group.name, bundle.label, bundle.id)
    done: list[int] = []
    for env in p.config.group_route(group):
        if not env.auto_promote:
            logger.info("Stopping before %s: it does not promote automatically", env.name)
            break
        here = [app for app in group.apps if env in p.config.route(app)]
        rejected = [app for app in here if members[app] in db.rejected(app, env.name)]
        if rejected:
            logger.warning("Bundle %s is rejected for %s (%s); stopping", bundle.id, env.name, ", ".join(rejected))
            break
        changed: list[tuple[str, int]] = []
        for app in here:
            if _runs(p, app, env.name, members[app]):
                logger.info("%s already runs %s in %s", app, members[app], env.name)
                continue
            try:
                pid = run_promotion(
                    app, env.name, release=members[app], requested_by=requested_by, config=config, bundle_id=bundle.id
                )
            except Exception as error:
                undone = _roll_back(p, bundle, env.name, changed, app, config)
                raise TerminalError(
                    f"Bundle {bundle.id} of group {group.name} stopped in {env.name}: {app} failed ({error}). {undone}"
                ) from None
            changed.append((app, pid))
            done.append(pid)
    return done


def _roll_back(
    p: Project, bundle: Bundle, environment: str, changed: list[tuple[str, int]], failed: str, config: str
) -> str:
    """Put the members this bundle already changed in `environment` back; say exactly what happened to each."""
    logger = get_run_logger()
    outcomes: list[str] = []
    for app, pid in reversed(changed):
        target = p.db.rollback_target(app, environment)
        if target is None:
            outcomes.append(f"{app} keeps the bundle's release (no earlier known-good release to go back to)")
            continue
        reason = f"bundle {bundle.id}: {failed} failed in {environment}"
        logger.warning("Rolling %s in %s back to %s: %s", app, environment, target, reason)
        try:
            run_promotion(
                app,
                environment,
                release=target,
                requested_by="promoflow",
                reason=reason,
                config=config,
                kind="rollback",
                rollback_of=pid,
                bundle_id=bundle.id,
            )
        except Exception as error:
            outcomes.append(f"{app} could not be rolled back ({error})")
            continue
        p.db.update_promotion(pid, state="rolled_back")
        outcomes.append(f"{app} was rolled back to {p.db.get_release(target).label}")
    if not outcomes:
        return "No other member had changed there."
    return "; ".join(outcomes) + "."
