"""Flow: one watch cycle: every app's sources, each new release recorded once and handed to the pipeline."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from flows.pipeline import pipeline
from promoflow import releases
from promoflow.config import App
from promoflow.project import Project
from promoflow.promotion import sources
from promoflow.records import Release
from tasks._shared import project

REQUESTER = "promoflow-watch"
PIPELINE_DEPLOYMENT = "pipeline/pipeline"


@flow(name="watch", flow_run_name="watch")
def watch(config: str = "promotions.yaml", apps: list[str] | None = None, promote: bool = True) -> list[str]:
    """Discover the newest release of every app (or of `apps`) by its tag policies and config commits; start a
    pipeline for each one not seen before, or for its group's bundle once. Returns the new releases' ids."""
    p = project(config)
    chosen = [p.config.app(name) for name in apps] if apps else list(p.config.apps)
    groups = list({g.name: g for g in map(p.config.group_of, (a.name for a in chosen)) if g is not None}.values())
    # a group's bundle needs the newest release of every member, watched or not
    chosen += [p.config.app(name) for g in groups for name in g.apps if name not in {a.name for a in chosen}]
    with ThreadPoolExecutor(max_workers=min(8, len(chosen)) or 1) as pool:  # sources wait on I/O
        discovered = dict(zip((a.name for a in chosen), pool.map(lambda app: _discover(p, app), chosen), strict=True))
    logger = get_run_logger()
    new: list[Release] = [release for release, is_new in discovered.values() if is_new]
    for release in new:
        logger.info("New release of %s: %s (%s)", release.app, release.label, release.id)
        if promote and p.config.group_of(release.app) is None:
            _hand_off(release.app, release.id, config)
    for group in groups:
        if not any(discovered[name][1] for name in group.apps):
            continue
        bundle, created = p.db.save_bundle(releases.bundle(group.name, [discovered[n][0] for n in group.apps], "watch"))
        if created:
            logger.info("New bundle of %s: %s (%s)", group.name, bundle.label, bundle.id)
            if promote:
                _hand_off(group.name, bundle.id, config)
    if not new:
        logger.info("No new releases")
    return [release.id for release in new]


def _discover(p: Project, app: App) -> tuple[Release, bool]:
    """The newest release by policy, recorded once (its id comes from its content), and whether it is new."""
    candidate = releases.discover(app, sources(p, app), "watch")
    known = p.db.release(app.name, candidate.id)
    if known:
        return known, False
    return p.db.save_release(candidate), True


def _hand_off(app_or_group: str, release: str, config: str) -> None:
    """Start the pipeline deployment if one is served (the watch does not wait for approvals), else run it here."""
    parameters = {"app": app_or_group, "release": release, "requested_by": REQUESTER, "config": config}
    try:
        run_deployment(PIPELINE_DEPLOYMENT, parameters=parameters, timeout=0)
    except ObjectNotFound:
        pipeline(app_or_group, release=release, requested_by=REQUESTER, config=config)
