"""What every step shares: the loaded project and the retry options from the environment's policy."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

from prefect import Task, get_run_logger
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from promoflow.config import Environment
from promoflow.errors import TransientError
from promoflow.project import Project

# A server asking for a longer pause than this is not coming back soon: the step fails and says so.
MAX_RETRY_AFTER_SECONDS = 600.0
# More early than this is not Prefect's rounding but a run started by hand ("Run now" on a scheduled run): go on.
MAX_EARLY_START_SECONDS = 2.0


@cache
def project(config: str) -> Project:
    return Project.load(config)


def _transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry transient errors; when the other side said how long to wait (429 Retry-After), wait that long.

    Prefect then waits the step's own backoff for this attempt: only the difference is slept here.
    """
    try:
        state.result()
    except TransientError as error:
        if error.retry_after is None:
            return True
        if error.retry_after > MAX_RETRY_AFTER_SECONDS:
            return False
        extra = error.retry_after - _planned_delay(task.retry_delay_seconds, task_run.run_count)
        if extra > 0:
            get_run_logger().info("The server asked to retry after %g s: waiting %.3g s more", error.retry_after, extra)
            time.sleep(extra)
        return True
    except BaseException:
        return False
    return False


def _planned_delay(delays: float | Sequence[float] | None, run_count: int) -> float:
    """The delay Prefect puts before the next attempt after `run_count` runs (it repeats the last one)."""
    if isinstance(delays, Sequence):
        return float(delays[min(run_count - 1, len(delays) - 1)]) if delays else 0.0
    return float(delays or 0)


def retry_options(environment: Environment) -> dict[str, Any]:
    """Transient errors retried with exponential backoff (or the server's Retry-After); terminal ones fail at once."""
    policy = environment.retry
    delays = [policy.backoff_seconds * 2**i for i in range(policy.attempts - 1)]
    return {
        "retries": policy.attempts - 1,
        "retry_delay_seconds": delays or 0,
        "retry_condition_fn": _transient,
    }


def hold_until_scheduled() -> None:
    """Start nothing before the current flow run's scheduled time. Prefect's server lets a scheduled run start up
    to half a second early (it rounds the wait it asks for to whole seconds); `--at` promises "not before"."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None or context.flow_run.expected_start_time is None:
        return
    early = (context.flow_run.expected_start_time - datetime.now(UTC)).total_seconds()
    if 0 < early <= MAX_EARLY_START_SECONDS:
        time.sleep(early)


def label_run(name: str | None, app: str, environment: str | None, release: str) -> None:
    """Name the current flow run after what it promotes and tag it for filtering in the UI
    (`app:web`, `env:prod`, `release:1.4.0`)."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    run = context.flow_run
    tags = [f"app:{app}", f"release:{release}", *([f"env:{environment}"] if environment else [])]
    with get_client(sync_client=True) as client:
        client.update_flow_run(run.id, name=name, tags=sorted({*run.tags, *tags}))
