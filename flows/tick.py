"""Flow: one tick of an environment's schedule (`schedule:` in promotions.yaml, a schedule of the served `tick`
deployment): for each app that passes through it, the newest eligible release (promoflow.holds.eligible) is
handed to the served `promote` deployment; an app with nothing eligible is a skipped tick, said with the reason
in the run's artifact; each as an event `promoflow.promotion.tick-promoting` or `-skipped` about the environment."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.events import emit_event

from flows.schedule import served
from promoflow import settings
from promoflow.holds import eligible
from tasks._shared import project

REQUESTER = "promoflow (schedule of {environment})"


@flow(name="tick", flow_run_name="tick {environment}")
def tick(environment: str, config: str = settings.FROM_ENVIRONMENT) -> list[str]:
    """Returns what it did, one sentence per app."""
    p = project(config)
    p.config.environment(environment)
    logger = get_run_logger()
    said: list[str] = []
    for app in [a.name for a in p.config.apps if environment in [e.name for e in p.config.route(a.name)]]:
        release, why = eligible(p, app, environment, datetime.now(UTC))
        if release is None:
            sentence = f"Skipped {app}: {why}."
            event = "promoflow.promotion.tick-skipped"
        else:
            with get_client(sync_client=True) as client:
                run = client.create_flow_run_from_deployment(
                    served(client, "promote"),
                    parameters={
                        "app": app,
                        "environment": environment,
                        "release": release.id,
                        "requested_by": REQUESTER.format(environment=environment),
                        "reason": f"the schedule of {environment}",
                        "config": str(p.config_path),
                    },
                )
            sentence = f"Promoting {why} (flow run {run.id})."
            event = "promoflow.promotion.tick-promoting"
        logger.info("%s", sentence)
        said.append(sentence)
        emit_event(
            event=event,
            resource={"prefect.resource.id": f"promoflow.environment.{environment}"},
            related=[{"prefect.resource.id": f"promoflow.app.{app}", "prefect.resource.role": "app"}],
            payload={"app": app, "environment": environment, "said": sentence},
        )
    create_markdown_artifact(
        key=f"tick-{environment}", markdown="\n".join(f"- {s}" for s in said) or "- No app passes through it."
    )
    return said
