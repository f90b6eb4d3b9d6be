"""Flows: walk one release through the app's environments in order, stopping at the first failure, or one
bundle of a group, every member into each environment before the next; and one bundle into one environment."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from prefect import flow, get_run_logger

from flows.driver import stop
from flows.promote import finished, run_promotion
from flows.resume import claim
from promoflow import releases, settings
from promoflow.config import Environment, Group
from promoflow.engine.states import UNMERGED, PromotionState
from promoflow.errors import TerminalError
from promoflow.project import Project
from promoflow.promotion import (
    bundle_request_branch,
    check_bundle_order,
    newest_allowed,
    resolve_bundle,
    runs,
    sources,
    start,
)
from promoflow.records import Bundle
from tasks._shared import hold_until_scheduled, label_run, project
from tasks.steps import mark


@flow(name="pipeline", flow_run_name="pipeline {app}")
def pipeline(
    app: str, release: str | None = None, requested_by: str | None = None, config: str = settings.FROM_ENVIRONMENT
) -> list[int]:
    """Promote into every environment on the route whose `auto_promote` allows it and that has no `schedule`.
    `app` may name a group: then `release` names one of its bundles."""
    hold_until_scheduled()
    claim(config)
    p = project(config)
    group = p.config.group(app)
    if group is not None:
        walked = _bundle_pipeline(p, group, release, requested_by or settings.current_user(), config)
        return finished(config, walked, walked)
    db = p.db
    logger = get_run_logger()
    app_config = p.config.app(app)
    if release:
        chosen = releases.resolve(db, app_config, sources(p, app_config), release, "oci-layout")
    else:
        chosen, skipped = newest_allowed(p, app_config, p.config.route(app)[0].name, "oci-layout")
        for sentence in skipped:
            logger.info(sentence)
    label_run(f"pipeline {app} {chosen.label}", app, None, chosen.label)
    logger.info("Pipeline of %s release %s", app, chosen.display_name)
    done: list[int] = []
    for env in p.config.route(app):
        if _stops_before(env, f"promoflow promote {app} --to {env.name}"):
            break
        if chosen.id in db.rejected(app, env.name):
            logger.warning("Release %s is rejected for %s; stopping", chosen.display_name, env.name)
            break
        if runs(p, app, env.name, chosen.id):
            logger.info("%s already runs %s", env.name, chosen.display_name)
            continue
        pid = run_promotion(
            app,
            env.name,
            release=chosen.id,
            requested_by=requested_by or settings.current_user(),
            config=config,
            rename_run=False,
        )
        done.append(pid)
        if (state := db.promotion(pid).state) != PromotionState.SUCCEEDED:
            logger.warning("Promotion %s into %s %s; stopping", pid, env.name, PromotionState(state).words)
            break
    return finished(config, done, done)


@flow(name="promote-bundle", flow_run_name="promote {group} to {environment}")
def promote_bundle(
    group: str,
    environment: str,
    bundle: str | None = None,
    requested_by: str | None = None,
    reason: str = "",
    config: str = settings.FROM_ENVIRONMENT,
) -> list[int]:
    """Promote every member of one bundle of `group` (id or label; the newest releases if omitted) into
    `environment`; the members already changed there are rolled back when one fails."""
    p = project(config)
    found = p.config.group(group)
    if found is None:
        raise TerminalError(f"Unknown group {group!r}: promotions.yaml defines {_groups(p)}.")
    chosen = resolve_bundle(p, found, bundle, "promote")
    check_bundle_order(p, found, chosen, environment)  # changes nothing when a member may not go there
    env = p.config.environment(environment)
    return promote_bundle_into(p, found, chosen, env, requested_by or settings.current_user(), reason, config)


def _stops_before(env: Environment, command: str) -> bool:
    """Whether a pipeline stops before `env`, said in the run's log: `auto_promote: false`, or a `schedule`
    (whose ticks alone take releases in, or "weekdays at 10:00" would mean whenever the one before succeeds)."""
    if env.schedule is not None:
        get_run_logger().info("Stopping before %s: its schedule promotes into it, or `%s` now", env.name, command)
        return True
    if not env.auto_promote:
        get_run_logger().info("Stopping before %s: promote there with `%s`", env.name, command)
        return True
    return False


def _groups(p: Project) -> str:
    return ", ".join(g.name for g in p.config.groups) or "no groups"


def _bundle_pipeline(p: Project, group: Group, ref: str | None, requested_by: str, config: str) -> list[int]:
    logger = get_run_logger()
    bundle = resolve_bundle(p, group, ref, "pipeline")
    logger.info("Pipeline of group %s bundle %s (%s)", group.name, bundle.label, bundle.id)
    done: list[int] = []
    for env in p.config.group_route(group):
        if _stops_before(env, f"promoflow promote {group.name} --to {env.name} --release {bundle.id}"):
            break
        rejected = _rejected(p, group, bundle, env)
        if rejected:
            logger.warning("Bundle %s is rejected for %s (%s); stopping", bundle.id, env.name, ", ".join(rejected))
            break
        done += promote_bundle_into(p, group, bundle, env, requested_by, "", config)
    return done


def _rejected(p: Project, group: Group, bundle: Bundle, env: Environment) -> list[str]:
    """The members whose release in the bundle is rejected for `env`."""
    members = bundle.members()
    here = [app for app in group.apps if env in p.config.route(app)]
    return [app for app in here if members[app] in p.db.rejected(app, env.name)]


def promote_bundle_into(
    p: Project, group: Group, bundle: Bundle, env: Environment, requested_by: str, reason: str, config: str
) -> list[int]:
    """Every member on `env`'s route into `env`, `group.concurrency` of them at once; members already running
    their release there are skipped. A member that waits (for an approval, a gate) has its wait held once the others
    are done or waiting, one member after another in the group's order. When one fails, no other starts, those
    still waiting are stopped, the members this call changed are put back, and it raises saying so."""
    logger = get_run_logger()
    members = bundle.members()
    todo: list[str] = []
    for app in [app for app in group.apps if env in p.config.route(app)]:
        if runs(p, app, env.name, members[app]):
            logger.info("%s already runs %s in %s", app, members[app], env.name)
        else:
            todo.append(app)

    def promote(app: str, hold_waits: bool) -> int:
        pid = run_promotion(
            app,
            env.name,
            release=members[app],
            requested_by=requested_by,
            reason=reason,
            config=config,
            bundle_id=bundle.id,
            rename_run=False,
            hold_waits=hold_waits,
        )
        state = PromotionState(p.db.promotion(pid).state)
        if state.ended and state != PromotionState.SUCCEEDED:
            raise TerminalError(f"promotion {pid} {state.words}")
        return pid

    if group.bundle_request and todo:
        _share_request(p, todo, bundle, env, requested_by, reason)
    pids, failed = side_by_side(todo, lambda app: promote(app, hold_waits=False), group.concurrency)
    for app in todo:
        if failed:
            break
        if app in pids and not PromotionState(p.db.promotion(pids[app]).state).ended:
            try:
                pids[app] = promote(app, hold_waits=True)
            except Exception as error:
                failed[app] = error
    if failed:
        changed = _stop(p, [(app, pids[app]) for app in todo if app in pids], bundle, env.name, config)
        undone = _roll_back(p, bundle, env.name, changed, ", ".join(failed), config)
        why = "; ".join(f"{app} failed ({error})" for app, error in failed.items())
        raise TerminalError(f"Bundle {bundle.id} of group {group.name} stopped in {env.name}: {why}. {undone}")
    return [pids[app] for app in todo]


def _share_request(
    p: Project, apps: list[str], bundle: Bundle, env: Environment, requested_by: str, reason: str
) -> None:
    """Start the members' promotions and give them one request, named after the first (a run carrying them on after
    a crash keeps the name they have)."""
    members = bundle.members()
    started = [start(p, app, env.name, members[app], requested_by, reason=reason, bundle_id=bundle.id) for app in apps]
    branch = bundle_request_branch(started[0])
    for promotion in started:
        if promotion.request_branch is None:
            assert promotion.id is not None
            p.db.update_promotion(promotion.id, request_branch=branch)


def side_by_side(
    apps: list[str], promote: Callable[[str], int], concurrency: int
) -> tuple[dict[str, int], dict[str, Exception]]:
    """`promote` every app, `concurrency` at a time, each in a thread of this flow run (its steps are this run's
    tasks); once one fails, no other starts. The promotions by app, and the failures."""
    pids: dict[str, int] = {}
    failed: dict[str, Exception] = {}

    def one(app: str) -> None:
        if failed:
            return
        try:
            pids[app] = promote(app)
        except Exception as error:
            failed[app] = error

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="promote") as pool:
        for app in apps:
            pool.submit(contextvars.copy_context().run, one, app)
    return pids, {app: failed[app] for app in apps if app in failed}


def _stop(
    p: Project, started: list[tuple[str, int]], bundle: Bundle, environment: str, config: str
) -> list[tuple[str, int]]:
    """End the members still waiting when the bundle stops: cancelled before their merge, failed after it. Returns
    the members this bundle changed the environment with, in order: those that succeeded, and those stopped after
    their merge."""
    changed = []
    for app, pid in started:
        state = PromotionState(p.db.promotion(pid).state)
        if state.ended:
            if state == PromotionState.SUCCEEDED:
                changed.append((app, pid))
            continue
        merged = state not in UNMERGED
        stop(config, pid, f"bundle {bundle.id} stopped in {environment}", merged)
        if merged:
            changed.append((app, pid))
    return changed


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
                rename_run=False,
            )
        except Exception as error:
            outcomes.append(f"{app} could not be rolled back ({error})")
            continue
        mark(p, pid, PromotionState.ROLLED_BACK)
        outcomes.append(f"{app} was rolled back to {p.db.get_release(target).label}")
    if not outcomes:
        return "No other member had changed there."
    return "; ".join(outcomes) + "."
