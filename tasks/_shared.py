"""What every step shares: the loaded project and the retry options from the environment's policy."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from functools import cache
from typing import Any

from prefect import Task, get_run_logger
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from promoflow.config import Environment
from promoflow.errors import TerminalError, TransientError
from promoflow.project import Project
from promoflow.records import Database, Promotion

# A server asking for a longer pause than this is not coming back soon: the step fails and says so.
MAX_RETRY_AFTER_SECONDS = 600.0


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


def run_url(promotion: Promotion) -> str | None:
    """The promotion's flow run in the Prefect UI, for links in pull requests and statuses."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    from promoflow.server import run_link

    base = PREFECT_UI_URL.value() or (PREFECT_API_URL.value() or "").removesuffix("/api")
    if not base or not promotion.flow_run_id:
        return None
    return run_link(base, promotion.flow_run_id)


def pull_request(db: Database, promotion_id: int) -> int:
    """The number of the promotion's pull request, as its open_request step recorded it."""
    step = db.last_step(promotion_id, "open_request")
    number = json.loads(step.detail).get("number") if step and step.outcome == "succeeded" else None
    if not isinstance(number, int):
        raise TerminalError(f"Promotion {promotion_id} has no pull request on record; re-run it to open one.")
    return number
