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
    """Discover the newest release of every app (or of `apps`) by its tag policies; start a pipeline for each
    one not seen before. Returns the new releases' ids."""
    p = project(config)
    chosen = [p.config.app(name) for name in apps] if apps else list(p.config.apps)
    with ThreadPoolExecutor(max_workers=min(8, len(chosen)) or 1) as pool:  # sources wait on I/O
        discovered = list(pool.map(lambda app: _discover(p, app), chosen))
    logger = get_run_logger()
    new: list[Release] = [release for release in discovered if release is not None]
    for release in new:
        logger.info("New release of %s: %s (%s)", release.app, release.label, release.id)
        if promote:
            _hand_off(release, config)
    if not new:
        logger.info("No new releases")
    return [release.id for release in new]


def _discover(p: Project, app: App) -> Release | None:
    """The newest release by policy, recorded once (its id comes from its content); None if already known."""
    candidate = releases.record(app.name, releases.discover(app, sources(p, app)), "watch")
    if p.db.release(app.name, candidate.id):
        return None
    return p.db.save_release(candidate)


def _hand_off(release: Release, config: str) -> None:
    """Start the pipeline deployment if one is served (the watch does not wait for approvals), else run it here."""
    parameters = {"app": release.app, "release": release.id, "requested_by": REQUESTER, "config": config}
    try:
        run_deployment(PIPELINE_DEPLOYMENT, parameters=parameters, timeout=0)
    except ObjectNotFound:
        pipeline(release.app, release=release.id, requested_by=REQUESTER, config=config)
