"""Serve the promoflow flows as Prefect deployments, no work pool needed: `python -m deployments.serve`.

Connects to $PREFECT_API_URL, or to the local server in the state directory (started if none runs).
The runner looks for runs to start every second ($PREFECT_RUNNER_POLL_FREQUENCY overrides it).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

from promoflow import server, settings

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment
    from prefect.events import DeploymentEventTrigger

    from promoflow.project import Project

TAGS = ["promoflow"]
# How often the runner asks for runs to start. Prefect's default (10 s) is most of the delay between a
# registry push and the pipeline run, twice (the triggered watch, then the pipeline it starts); one
# small API request a second is cheap next to that.
POLL_FREQUENCY_SECONDS = "1"
REPORT_CRON = "0 6 * * 1"  # the past week's delivery metrics, Monday morning (UTC)


def deployments() -> list[RunnerDeployment]:
    """`promote`, `pipeline`, `rollback`, `watch` on an interval ($PROMOFLOW_WATCH_INTERVAL seconds, default
    60), `reconcile` on an interval ($PROMOFLOW_RECONCILE_INTERVAL, default 30) and when a promoflow run is
    cancelled or crashes or a forge event arrives, `report` every Monday at 06:00 UTC, and `tick` on each
    environment's `schedule` in promotions.yaml (one Prefect schedule per environment, pausable in the UI), their
    config defaulting to the absolute config path."""
    from prefect.types.entrypoint import EntrypointType

    from flows.pipeline import pipeline
    from flows.promote import promote
    from flows.reconcile import reconcile
    from flows.report import report
    from flows.rollback import rollback
    from flows.tick import tick
    from flows.watch import watch
    from promoflow.webhooks import trigger
    from tasks._shared import project

    config = str(settings.config_path())
    interval = float(os.environ.get("PROMOFLOW_WATCH_INTERVAL", "60"))
    intervals = {watch: interval, reconcile: float(os.environ.get("PROMOFLOW_RECONCILE_INTERVAL", "30"))}
    triggers: dict[object, list[Any]] = {watch: [trigger()], reconcile: [reconcile_trigger()]}
    schedules: dict[object, list[Any]] = {tick: environment_schedules(project(config))}
    # to_deployment is sync-or-async by context; called from sync code it returns the deployment.
    return [
        cast(
            "RunnerDeployment",
            flow.to_deployment(
                name=flow.name,
                description=flow.description,
                tags=TAGS,
                parameters={"config": config},
                interval=intervals.get(flow),
                cron=REPORT_CRON if flow is report else None,
                schedules=schedules.get(flow),
                # watch: a registry push (promoflow webhook) runs it at once for the apps it concerns
                triggers=triggers.get(flow),
                # watch: an interval run and a triggered one must not both take the same new release for new.
                # Not reconcile: a run that died with its worker would hold the one slot for up to 5 minutes
                # (Prefect's lease), just when promotions need carrying on; two at once carry one on in one run.
                concurrency_limit=1 if flow is watch else None,
                entrypoint_type=EntrypointType.MODULE_PATH,  # as prefect.yaml: imported, not read from a path
            ),
        )
        for flow in (promote, pipeline, rollback, watch, reconcile, report, tick)
    ]


def environment_schedules(p: Project) -> list[Any]:
    """One Prefect schedule of `tick` per environment with a `schedule`, named (slug) after it."""
    from prefect.schedules import Cron, RRule

    found: list[Any] = []
    for env in p.config.environments:
        if env.schedule is None:
            continue
        options: dict[str, Any] = {"timezone": env.schedule.timezone, "parameters": {"environment": env.name}}
        options["slug"] = env.name
        if env.schedule.cron is not None:
            found.append(Cron(env.schedule.cron, **options))
        else:
            found.append(RRule(env.schedule.rrule or "", **options))
    return found


def reconcile_trigger() -> DeploymentEventTrigger:
    """Reconcile at once when a promoflow run is cancelled or crashes, or a forge reports a review or a check."""
    from prefect.events import DeploymentEventTrigger

    from promoflow.forges.github import EVENT_PREFIX

    return DeploymentEventTrigger(
        name="reconcile on cancel, crash or forge event",
        description="A cancelled or crashed promoflow run, or a review or check on a promotion request.",
        expect={"prefect.flow-run.Cancelled", "prefect.flow-run.Crashed", f"{EVENT_PREFIX}*"},
        parameters={"woken_by": "{{ event.event }}"},
    )


def main() -> None:
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", POLL_FREQUENCY_SECONDS)  # before Prefect is imported
    server.connect(settings.state_dir(settings.config_path()), launch=True)
    import prefect

    prefect.serve(*deployments())


if __name__ == "__main__":
    main()
