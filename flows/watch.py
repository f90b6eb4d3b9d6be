"""Flow: one watch cycle: every app's sources, each new release recorded once and handed to the pipeline."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound

from flows.pipeline import pipeline
from promoflow import releases, settings, watching
from promoflow.promotion import process_alive, runner_id
from promoflow.redact import redact
from tasks._shared import project

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun
    from prefect.events import Event

REQUESTER = "promoflow-watch"
PIPELINE_DEPLOYMENT = "pipeline/pipeline"
# Set by `WatchHere` in the webhook receiver: new releases start their pipeline in this process.
_HAND_OFF: ContextVar[Callable[[str, str, str], None] | None] = ContextVar("promoflow_hand_off", default=None)
logger = logging.getLogger("promoflow.webhooks")
ORPHANS_RETRY_SECONDS = 5.0


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
        # Not a subflow of this watch: Prefect refuses to suspend subflows, and the pipeline waits for approvals
        # suspended (its run must also outlive this watch's process and be woken on its own).
        run_deployment(PIPELINE_DEPLOYMENT, parameters=parameters, timeout=0, as_subflow=False)
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
    its pipeline. GitHub review and check events still go to Prefect, where the approval waits look for them.

    The receiver hosts those pipelines, approval waits included: their runs name it as their process
    (`infrastructure_pid`), and a receiver started after one that ended (killed, redeployed) carries on the
    pipelines it left, in the same flow runs, from their recorded steps (`carry_on_orphans`)."""

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

    def carry_on_orphans(self) -> None:
        """Carry on, here, the pipelines of this project whose hosting receiver ended before they did; in the
        background, once Prefect answers (it may be starting too)."""
        _thread(self._carry_on_orphans)

    def _carry_on_orphans(self) -> None:
        for attempt in itertools.count():
            try:
                runs = orphaned_pipelines(self.config)
                break
            except Exception as error:
                if attempt == 0:
                    logger.warning("Cannot look for pipelines left by an earlier receiver yet: %s", redact(str(error)))
                time.sleep(ORPHANS_RETRY_SECONDS)
        for run in runs:
            logger.info("Carrying on pipeline run %s (%s), left by %s", run.id, run.name, run.infrastructure_pid)
            _thread(_host, run)

    def _watch(self, apps: list[str]) -> None:
        with self._watching:
            token = _HAND_OFF.set(self._start_pipeline)
            try:
                watch(config=self.config, apps=apps)
            except Exception as error:  # recorded on the flow run; the receiver goes on
                logger.error("The watch of %s failed: %s", ", ".join(apps), error)
            finally:
                _HAND_OFF.reset(token)

    @staticmethod
    def _start_pipeline(app_or_group: str, release: str, config: str) -> None:
        from prefect.client.orchestration import get_client
        from prefect.states import Pending

        parameters = {"app": app_or_group, "release": release, "requested_by": REQUESTER, "config": config}
        with get_client(sync_client=True) as client:
            run = client.create_flow_run(pipeline, parameters=parameters, state=Pending())
        _thread(_host, run)  # it may wait days for an approval


def _host(run: FlowRun) -> None:
    """Run a pipeline's flow run in this process, named its process, from the top: its steps resume from the
    records."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow

    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run.id, infrastructure_pid=runner_id())
        run_flow(pipeline, flow_run=run, parameters=dict(run.parameters))
    except Exception as error:
        logger.error("The pipeline of %s %s failed: %s", run.parameters["app"], run.parameters["release"], error)


def orphaned_pipelines(config: str) -> list[FlowRun]:
    """This project's pipeline runs hosted by a process of this machine that ended while they had not: running,
    paused for an approval or about to start (none of them from a deployment: those come back through it)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    unfinished = [StateType.PENDING, StateType.RUNNING, StateType.PAUSED]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[pipeline.name])),
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(is_null_=True),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=unfinished)),
            ),
        )
    return [
        run
        for run in runs
        if run.parameters.get("config") == config
        and run.infrastructure_pid not in (None, runner_id())
        and process_alive(run.infrastructure_pid) is False
    ]


def _thread(target: Callable[..., None], *args: object) -> None:
    # Daemon threads: stopping the receiver must not wait for a pipeline that waits for an approval. A pipeline
    # cut short that way goes on where it stopped when a receiver starts again (its steps are recorded).
    threading.Thread(target=target, args=args, daemon=True).start()
