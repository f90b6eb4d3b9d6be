"""Flow: one watch cycle: every app's sources, each new release recorded once and handed to the pipeline."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from flows.pipeline import pipeline
from promoflow import releases, settings, watching
from tasks._shared import project

if TYPE_CHECKING:
    from prefect.events import Event

REQUESTER = "promoflow-watch"
PIPELINE_DEPLOYMENT = "pipeline/pipeline"
# Set by `WatchHere` in the webhook receiver: new releases start their pipeline in this process.
_HAND_OFF: ContextVar[Callable[[str, str, str], None] | None] = ContextVar("promoflow_hand_off", default=None)
logger = logging.getLogger("promoflow.webhooks")


@flow(name="watch", flow_run_name="watch")
def watch(config: str = settings.FROM_ENVIRONMENT, apps: list[str] | None = None, promote: bool = True) -> list[str]:
    """Discover the newest release of every app (or of `apps`) by its tag policies and config commits; start a
    pipeline for each one not seen before, or for its group's bundle once. Returns the new releases' ids. An
    app that cannot be looked at fails the run after the others' new releases went on."""
    p = project(config)
    chosen = [p.config.app(name) for name in apps] if apps else list(p.config.apps)
    groups = list({g.name: g for g in map(p.config.group_of, (a.name for a in chosen)) if g is not None}.values())
    # a group's bundle needs the newest release of every member, watched or not
    chosen += [p.config.app(name) for g in groups for name in g.apps if name not in {a.name for a in chosen}]
    cycle = watching.run_cycle(p, chosen)
    logger = get_run_logger()
    if cycle.requests:
        logger.info("Registry requests: %s", ", ".join(f"{kind} {n}" for kind, n in sorted(cycle.requests.items())))
    new = {release.app for release in cycle.new}
    for release in cycle.new:
        logger.info("New release of %s: %s", release.app, release.display_name)
        if promote and p.config.group_of(release.app) is None:
            _hand_off(release.app, release.id, config)
    for group in groups:
        if not new & set(group.apps) or any(name not in cycle.newest for name in group.apps):
            continue
        members = [cycle.newest[name] for name in group.apps]
        bundle, created = p.db.save_bundle(releases.bundle(group.name, members, "watch"))
        if created:
            logger.info("New bundle of %s: %s (%s)", group.name, bundle.label, bundle.id)
            if promote:
                _hand_off(group.name, bundle.id, config)
    if not cycle.new:
        logger.info("No new releases")
    for app, error in cycle.failed.items():
        logger.error("Cannot look at %s: %s", app, error)
    if cycle.failed:
        raise next(iter(cycle.failed.values()))
    return [release.id for release in cycle.new]


def _hand_off(app_or_group: str, release: str, config: str) -> None:
    """Start the pipeline deployment if a process serves it now (the watch does not wait for approvals), else run
    it here (a deployment left by a stopped server would never start it)."""
    here = _HAND_OFF.get()
    if here is not None:
        here(app_or_group, release, config)
        return
    parameters = {"app": app_or_group, "release": release, "requested_by": REQUESTER, "config": config}
    if _served(PIPELINE_DEPLOYMENT):
        run_deployment(PIPELINE_DEPLOYMENT, parameters=parameters, timeout=0)
    else:
        pipeline(app_or_group, release=release, requested_by=REQUESTER, config=config)


def _served(name: str) -> bool:
    """The deployment exists and a process (serve, a worker) polls it now: a run of it will start."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import DeploymentStatus

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(name).status == DeploymentStatus.READY
        except ObjectNotFound:
            return False


class WatchHere:
    """The webhook receiver's `--watch-here` mode: a push runs `watch` for its apps, and the pipelines of the
    releases it finds, as flow runs of the receiver's own long-running process (in threads), instead of an event
    the served `watch` deployment picks up. No runner poll and no new Python process stand between a push and
    its pipeline. GitHub review and check events still go to Prefect, where the approval waits look for them."""

    def __init__(self, config: str, emit: Callable[[Event], None]) -> None:
        self.config = config
        self._emit = emit
        self._watching = threading.BoundedSemaphore(4)  # watches at once

    def __call__(self, event: Event) -> None:
        from promoflow.webhooks import EVENT

        if event.event != EVENT:
            self._emit(event)
            return
        _thread(self._watch, list(event.payload["apps"]))

    def _watch(self, apps: list[str]) -> None:
        with self._watching:
            token = _HAND_OFF.set(self._start_pipeline)
            try:
                watch(config=self.config, apps=apps)
            except Exception as error:  # recorded on the flow run; the receiver goes on
                logger.error("The watch of %s failed: %s", ", ".join(apps), error)
            finally:
                _HAND_OFF.reset(token)

    def _start_pipeline(self, app_or_group: str, release: str, config: str) -> None:
        _thread(self._pipeline, app_or_group, release, config)  # it may wait days for an approval

    @staticmethod
    def _pipeline(app_or_group: str, release: str, config: str) -> None:
        try:
            pipeline(app_or_group, release=release, requested_by=REQUESTER, config=config)
        except Exception as error:
            logger.error("The pipeline of %s %s failed: %s", app_or_group, release, error)


def _thread(target: Callable[..., None], *args: object) -> None:
    # Daemon threads: stopping the receiver must not wait for a pipeline that waits for an approval. A
    # promotion cut short that way resumes where it stopped when it is run again (its steps are recorded).
    threading.Thread(target=target, args=args, daemon=True).start()
