"""What every step shares: the loaded project and the retry options from the environment's policy."""

from __future__ import annotations

from functools import cache
from typing import Any

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from promoflow.config import Environment
from promoflow.errors import TransientError
from promoflow.project import Project


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
