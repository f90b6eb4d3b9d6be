"""The engine's steps as Prefect tasks: each runs as a task named after it (the UI shows one per step and
attempt), transient failures are retried with the environment's backoff, and transitions become events."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from promoflow import links
from promoflow.engine.context import Context
from promoflow.engine.results import RetryAfter, StepResult, Terminal
from promoflow.engine.runner import run_step
from promoflow.engine.states import PromotionState
from promoflow.engine.steps import Step, load
from promoflow.errors import TransientError
from promoflow.project import Project
from promoflow.records import Promotion
from tasks._shared import project, retry_options


class PrefectEvents:
    """Every transition as a Prefect event `promoflow.promotion.<state>`, for automations and the UI's event feed."""

    def __init__(self, p: Project) -> None:
        self.project = p

    def emit(self, promotion: Promotion, state: PromotionState) -> None:
        self._announce(promotion, state.event, {"state": state.value})

    def notice(self, promotion: Promotion, event: str, said: str) -> None:
        self._announce(promotion, f"promoflow.promotion.{event}", {"state": promotion.state, "said": said})

    def _announce(self, promotion: Promotion, event: str, extra: dict[str, Any]) -> None:
        release = self.project.db.get_release(promotion.release_id).label
        related: list[dict[str, str]] = [
            {"prefect.resource.id": f"promoflow.app.{promotion.app}", "prefect.resource.role": "app"},
            {
                "prefect.resource.id": f"promoflow.environment.{promotion.environment}",
                "prefect.resource.role": "environment",
            },
            {"prefect.resource.id": f"promoflow.release.{promotion.release_id}", "prefect.resource.role": "release"},
        ]
        if promotion.flow_run_id:
            related.append(
                {
                    "prefect.resource.id": f"prefect.flow-run.{promotion.flow_run_id}",
                    "prefect.resource.role": "flow-run",
                }
            )
        payload: dict[str, Any] = {
            "promotion": promotion.id,
            "kind": promotion.kind,
            "app": promotion.app,
            "environment": promotion.environment,
            "release": promotion.release_id,
            "release_label": release,
            **extra,
            "requested_by": promotion.requested_by,
            "error": promotion.error,
            "run_url": links.run_url(promotion),
            "request_branch": promotion.request_branch,
        }
        emit_event(
            event=event,
            resource={
                "prefect.resource.id": f"promoflow.promotion.{promotion.id}",
                "prefect.resource.name": f"{promotion.app} {release} to {promotion.environment}",
            },
            related=related,
            payload=payload,
        )

    def stop_run(self, promotion: Promotion, message: str) -> None:
        if not promotion.flow_run_id:
            return
        from uuid import UUID

        from prefect.client.orchestration import get_client
        from prefect.states import Cancelled

        try:
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(UUID(promotion.flow_run_id), Cancelled(message=message[:500]), force=True)
        except Exception as error:  # the records decide; a run that survives this notices them when it looks
            get_run_logger().warning("Could not cancel the run of promotion %s: %s", promotion.id, type(error).__name__)


def context(config: str, promotion_id: int) -> Context:
    p = project(config)
    return Context(p, promotion_id, events=PrefectEvents(p), log=get_run_logger())


@task(name="step", cache_policy=NO_CACHE)
def run_engine_step(config: str, promotion_id: int, name: str) -> StepResult:
    result = run_step(load()[name], context(config, promotion_id))
    if isinstance(result, RetryAfter):  # Prefect retries the task with the environment's backoff
        raise TransientError(result.message, result.seconds)
    return result


def as_task(config: str) -> Any:
    """The engine's `run` for flows: one Prefect task per step, retried per the environment's policy."""

    def run(step: Step, ctx: Context) -> StepResult:
        env = ctx.project.config.environment(ctx.promotion.environment)
        try:
            return run_engine_step.with_options(name=step.name, **retry_options(env))(
                config, ctx.promotion_id, step.name
            )
        except TransientError as error:
            return Terminal(f"{error} (gave up after {env.retry.attempts} tries)")

    return run


def mark(p: Project, promotion_id: int, state: PromotionState, **changes: Any) -> None:
    """Move another promotion (e.g. the one a rollback undid) to `state`, with its event."""
    Context(p, promotion_id, events=PrefectEvents(p)).move(state, **changes)
