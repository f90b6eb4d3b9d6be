"""Promotions at a set time: a scheduled Prefect flow run of the served `promote` deployment (`promoflow promote
--at`), listed by `promoflow scheduled` and cancelled by `promoflow cancel RUN` or Cancel in the Prefect UI.

Prefect's scheduler holds the run until its time: the runner starts it then and not before, and nothing of
promoflow runs or is recorded until it does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import DeploymentStatus, FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.states import Cancelled, Cancelling, Scheduled

from promoflow.errors import NotFound, TerminalError, TransientError

# The deployments whose scheduled runs promote something (watch, reconcile and report runs are housekeeping).
PROMOTING = ("promote", "pipeline")


@dataclass(frozen=True)
class ScheduledRun:
    flow_run: str
    name: str
    deployment: str
    at: datetime
    parameters: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "at": self.at.isoformat()}


def served(client: SyncPrefectClient, flow: str) -> UUID:
    """The id of the deployment of `flow` that a process serves now; a terminal error says how to serve it."""
    try:
        deployment = client.read_deployment_by_name(f"{flow}/{flow}")
    except ObjectNotFound:
        deployment = None
    if deployment is None or deployment.status != DeploymentStatus.READY:
        raise TerminalError(
            f"No process serves the `{flow}` deployment: start `python -m deployments.serve` (or a worker) first; "
            "it runs the promotion at its time."
        )
    return deployment.id


@contextmanager
def _prefect(doing: str) -> Iterator[None]:
    """A Prefect server that answers with an error (503 when it is busy) is one sentence, not a traceback."""
    try:
        yield
    except PrefectHTTPStatusError as error:
        status = error.response.status_code
        raise TransientError(f"The Prefect server answered {status} when asked to {doing}: try again.") from None


def schedule(flow: str, parameters: dict[str, Any], at: datetime, name: str) -> FlowRun:
    """A run of the served `flow` deployment that Prefect starts at `at`."""
    with get_client(sync_client=True) as client, _prefect(f"schedule {name}"):
        deployment = served(client, flow)
        return client.create_flow_run_from_deployment(
            deployment,
            parameters=parameters,
            state=Scheduled(scheduled_time=at, message=f"promoflow: {name}"),
            name=name,
        )


def scheduled() -> list[ScheduledRun]:
    """The runs of the promoting deployments that wait for their time, soonest first."""
    with get_client(sync_client=True) as client, _prefect("list the scheduled runs"):
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=list(PROMOTING))),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=200,
        )
        names = {d: client.read_deployment(d).name for d in {r.deployment_id for r in runs if r.deployment_id}}
    return [
        ScheduledRun(
            str(run.id),
            run.name,
            names.get(run.deployment_id, "?") if run.deployment_id else "?",
            run.expected_start_time or run.state.timestamp,  # type: ignore[union-attr]
            {k: v for k, v in run.parameters.items() if k != "config"},
        )
        for run in runs
    ]


def cancel(run_id: str, who: str) -> str:
    """Cancel a promoflow flow run: one waiting for its time never starts; one running cancels its promotion (as
    Cancel in the Prefect UI). Says what was done."""
    try:
        uuid = UUID(run_id)
    except ValueError:
        raise TerminalError(f"{run_id!r} is not a flow run id: `promoflow scheduled` lists them.") from None
    with get_client(sync_client=True) as client, _prefect(f"cancel flow run {run_id}"):
        try:
            run = client.read_flow_run(uuid)
        except ObjectNotFound:
            raise NotFound(f"There is no flow run {run_id}: `promoflow scheduled` lists the scheduled ones.") from None
        if "promoflow" not in run.tags:
            raise TerminalError(f"Flow run {run_id} ({run.name}) is not a promoflow run: cancel it in Prefect.")
        state = run.state
        if state is None or state.is_final():
            kind = state.name if state else "unknown"
            raise TerminalError(f"Flow run {run_id} ({run.name}) has ended ({kind}): there is nothing to cancel.")
        message = f"cancelled by {who} with promoflow cancel"
        if state.is_scheduled():
            client.set_flow_run_state(uuid, Cancelled(message=message), force=True)
            return f"Cancelled flow run {run_id} ({run.name}): it will not start."
        # A suspended run has no process to finish a cancellation: it is cancelled, and the reconcile that its
        # Cancelled event starts cancels its promotion. A running one is told, and its driver does that.
        suspended = state.is_paused() and state.state_details.pause_reschedule
        client.set_flow_run_state(uuid, (Cancelled if suspended else Cancelling)(message=message), force=True)
        return f"Cancelled flow run {run_id} ({run.name}): its promotion is cancelled."
