"""Flow: one watch cycle: every app's sources, each new release recorded once and handed to the pipeline."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from flows.pipeline import pipeline
from promoflow import watching
from promoflow.records import Release
from tasks._shared import project

REQUESTER = "promoflow-watch"
PIPELINE_DEPLOYMENT = "pipeline/pipeline"


@flow(name="watch", flow_run_name="watch")
def watch(config: str = "promotions.yaml", apps: list[str] | None = None, promote: bool = True) -> list[str]:
    """Discover the newest release of every app (or of `apps`) by its tag policies; start a pipeline for each
    one not seen before. Returns the new releases' ids. An app that cannot be looked at fails the run after
    the others' new releases went on."""
    p = project(config)
    chosen = [p.config.app(name) for name in apps] if apps else list(p.config.apps)
    cycle = watching.run_cycle(p, chosen)
    logger = get_run_logger()
    if cycle.requests:
        logger.info("Registry requests: %s", ", ".join(f"{kind} {n}" for kind, n in sorted(cycle.requests.items())))
    for release in cycle.new:
        logger.info("New release of %s: %s (%s)", release.app, release.label, release.id)
        if promote:
            _hand_off(release, config)
    if not cycle.new:
        logger.info("No new releases")
    for app, error in cycle.failed.items():
        logger.error("Cannot look at %s: %s", app, error)
    if cycle.failed:
        raise next(iter(cycle.failed.values()))
    return [release.id for release in cycle.new]


def _hand_off(release: Release, config: str) -> None:
    """Start the pipeline deployment if one is served (the watch does not wait for approvals), else run it here."""
    parameters = {"app": release.app, "release": release.id, "requested_by": REQUESTER, "config": config}
    try:
        run_deployment(PIPELINE_DEPLOYMENT, parameters=parameters, timeout=0)
    except ObjectNotFound:
        pipeline(release.app, release=release.id, requested_by=REQUESTER, config=config)
