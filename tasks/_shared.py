"""What every step shares: the loaded project and the retry options from the environment's policy."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from promoflow.config import Environment
from promoflow.errors import TerminalError, TransientError
from promoflow.project import Project
from promoflow.records import Database, Promotion


@cache
def project(config: str) -> Project:
    return Project.load(config)


def _transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    try:
        state.result()
    except TransientError:
        return True
    except BaseException:
        return False
    return False


def retry_options(environment: Environment) -> dict[str, Any]:
    """Transient errors retried with exponential backoff; terminal ones fail at once."""
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

    base = PREFECT_UI_URL.value() or (PREFECT_API_URL.value() or "").removesuffix("/api")
    if not base or not promotion.flow_run_id:
        return None
    return f"{base.rstrip('/')}/runs/flow-run/{promotion.flow_run_id}"


def pull_request(db: Database, promotion_id: int) -> int:
    """The number of the promotion's pull request, as its open_request step recorded it."""
    step = db.last_step(promotion_id, "open_request")
    number = json.loads(step.detail).get("number") if step and step.outcome == "succeeded" else None
    if not isinstance(number, int):
        raise TerminalError(f"Promotion {promotion_id} has no pull request on record; re-run it to open one.")
    return number
