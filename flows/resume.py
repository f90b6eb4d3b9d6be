"""Getting a promotion going again: wake its run to look at the records, or, when its run is gone (its process
was killed, the run was crashed, cancelled by a stopping runner, or deleted), start a new run that carries on.

Used by `promoflow approve`/`reject`, `promoflow resume`, and the reconcile deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import DeploymentStatus, FlowRun, StateType
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed, Scheduled

from promoflow.engine.states import PromotionState
from promoflow.prefect_api import WOKEN, put_back_on_schedule
from promoflow.project import Project
from promoflow.promotion import process_alive, runner_alive, runner_id
from promoflow.records import Promotion
from tasks._shared import project as load_project

# What a runner writes on the runs it stops when it shuts down (SIGTERM): those promotions carry on elsewhere.
RUNNER_STOPPED = "shutting down"
# A run woken or started for a promotion names its process on the promotion within seconds of starting (`claim`);
# one still pending or unclaimed after this long died first (its worker killed while starting it: Prefect leaves
# such a run Pending or Running for ever).
TAKE_OVER_SECONDS = 300


@dataclass(frozen=True)
class RunStatus:
    """Where a promotion's flow run is, as far as carrying the promotion on is concerned."""

    run: FlowRun | None
    verdict: str  # "busy", "suspended", "hosted" (its host ended; the next one carries it on), "gone", "cancelled"
    why: str


def status(client: SyncPrefectClient, promotion: Promotion) -> RunStatus:
    if promotion.flow_run_id is None and _age_seconds(promotion.created_at) < TAKE_OVER_SECONDS:
        # `promote --no-wait` records the promotion, then creates its run and names it: not gone, being handed on
        return RunStatus(None, "busy", "its run is being created")
    run = _read(client, promotion.flow_run_id)
    if run is None or run.state is None:
        return RunStatus(run, "gone", "its flow run no longer exists")
    state = run.state
    if state.type in (StateType.SCHEDULED, StateType.CANCELLING):
        return RunStatus(run, "busy", f"its run is {state.name}")
    if state.type == StateType.PAUSED and state.state_details.pause_reschedule:
        return RunStatus(run, "suspended", "its run is suspended")
    if state.type in (StateType.PAUSED, StateType.RUNNING, StateType.PENDING):
        host = run.infrastructure_pid
        if run.deployment_id is None and host:  # hosted by `webhook --watch-here`, which carries on what it left
            if host != runner_id() and process_alive(host) is False:
                return RunStatus(
                    run,
                    "hosted",
                    f"the webhook receiver hosting its run ({host}) ended; it goes on when "
                    "`promoflow webhook --watch-here` starts again",
                )
            return RunStatus(run, "busy", f"its run is {state.name}")
        # a new process takes it over: a worker starts it (Pending), or it runs and has not claimed it yet
        if state.type == StateType.PENDING or (promotion.runner is None and state.type == StateType.RUNNING):
            taking = _age_seconds(state.timestamp)
            if taking > TAKE_OVER_SECONDS:
                return RunStatus(run, "gone", f"its run went {state.name} {taking:.0f} s ago and never took it over")
            return RunStatus(run, "busy", f"its run is {state.name}")
        if promotion.runner != runner_id() and runner_alive(promotion) is False:  # this process runs it: busy
            return RunStatus(run, "gone", f"the process running it ({promotion.runner}) ended")
        return RunStatus(run, "busy", f"its run is {state.name}")
    if state.type == StateType.CANCELLED and RUNNER_STOPPED not in (state.message or ""):
        return RunStatus(run, "cancelled", f"its run was cancelled ({state.message or 'no reason given'})")
    return RunStatus(run, "gone", f"its run ended {state.name} ({state.message or 'no message'})")


def _age_seconds(since: datetime) -> float:
    return (datetime.now(UTC) - (since if since.tzinfo else since.replace(tzinfo=UTC))).total_seconds()


def claim(config: str) -> None:
    """Name this process on the unfinished promotions of the flow run it now runs (woken, or started to carry them
    on), first thing: from then on its death is seen at once, not only after TAKE_OVER_SECONDS."""
    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None:
        load_project(config).db.claim_promotions(str(context.flow_run.id), runner_id())


def wake(project: Project, promotion_id: int, here: bool = False) -> str:
    """Make the promotion look at its records again; says what was done. `here`: a promotion whose run is gone
    carries on in this process when no deployment is served to take it."""
    promotion = project.db.promotion(promotion_id)
    if PromotionState(promotion.state).ended:
        return f"promotion {promotion_id} is {PromotionState(promotion.state).words}"
    with get_client(sync_client=True) as client:
        found = status(client, promotion)
        if found.verdict == "busy":
            return f"{found.why}: it sees the decision within seconds"
        if found.verdict == "suspended":
            run = found.run
            assert run is not None
            return put_back_on_schedule(
                project, promotion_id, lambda: client.set_flow_run_state(run.id, Scheduled(message=WOKEN), force=True)
            )
        if found.verdict == "hosted":  # carried on here, the pipeline's next environments would be lost
            return f"{found.why} (`promoflow resume {promotion_id}` carries this promotion on here instead)"
    if found.verdict == "cancelled":
        cancel(project, promotion_id, found.why)
        return f"{found.why}: the promotion is cancelled"
    return carry_on(project, promotion_id, found, here)


def carry_on(project: Project, promotion_id: int, found: RunStatus, here: bool = False) -> str:
    """Start a new run for a promotion whose run is gone: from the deployment its run came from, with the same
    parameters; a run started in a terminal carries on in this process when `here`, else on the served `promote`
    deployment."""
    promotion = project.db.promotion(promotion_id)
    with get_client(sync_client=True) as client:
        deployment, parameters = _deployment_for(client, project, promotion, found.run, here)
        if deployment is not None:
            # Two processes carrying it on at once (reconcile runs, `promoflow approve`) get the same new run.
            new = client.create_flow_run_from_deployment(
                deployment,
                parameters=parameters,
                tags=list(found.run.tags) if found.run else None,
                idempotency_key=f"promoflow-carry-on-{promotion_id}-{found.run.id if found.run else 'gone'}",
            )
            project.db.update_promotion(promotion_id, flow_run_id=str(new.id), runner=None)
            _abandon(client, found.run, f"{found.why}: promotion {promotion_id} carries on in flow run {new.id}")
            return f"{found.why}: it carries on in flow run {new.id}"
        if here:  # carried on below in a new run of this process
            _abandon(client, found.run, f"{found.why}: promotion {promotion_id} carries on in process {runner_id()}")
    if not here:
        return (
            f"{found.why}, and no promoflow deployment is served to carry it on: "
            f"run `promoflow resume {promotion_id}` (or serve the deployments: `python -m deployments.serve`)"
        )
    from flows.promote import promote

    promote(**_promote_parameters(project, promotion))
    return "it carried on in this process"


def _abandon(client: SyncPrefectClient, run: FlowRun | None, why: str) -> None:
    """A run whose process died stays Pending, Running or Paused in Prefect for ever: end it, saying where its work
    went. Crashed by type, named apart so that it does not wake the reconcile deployment for what was just done."""
    if run is not None and run.state is not None and not run.state.is_final():
        client.set_flow_run_state(run.id, Crashed(name="Abandoned", message=why[:500]), force=True)


def cancel(project: Project, promotion_id: int, why: str) -> None:
    """The promotion's run was cancelled by a person: the promotion is cancelled (request closed, slot freed)."""
    from promoflow.engine.context import Context
    from promoflow.engine.results import Terminal
    from promoflow.engine.runner import end

    end(Context(project, promotion_id), Terminal(f"{why}", PromotionState.CANCELLED))


def _deployment_for(
    client: SyncPrefectClient, project: Project, promotion: Promotion, run: FlowRun | None, here: bool
) -> tuple[UUID | None, dict[str, Any]]:
    """The deployment a promotion's run came from (whoever serves it next takes the new run). A run started in a
    terminal carries on in this process when `here`, else on the `promote` deployment if one is served."""
    if run is not None and run.deployment_id is not None:
        return run.deployment_id, dict(run.parameters)
    if here:
        return None, {}
    try:
        deployment = client.read_deployment_by_name("promote/promote")
    except ObjectNotFound:
        return None, {}
    if deployment.status != DeploymentStatus.READY:  # polled by no process now
        return None, {}
    return deployment.id, _promote_parameters(project, promotion)


def _promote_parameters(project: Project, promotion: Promotion) -> dict[str, Any]:
    return {
        "app": promotion.app,
        "environment": promotion.environment,
        "release": promotion.release_id,
        "requested_by": promotion.requested_by,
        "reason": promotion.reason,
        "config": str(project.config_path),
        "kind": promotion.kind,
        "rollback_of": promotion.rollback_of,
    }


def _read(client: SyncPrefectClient, flow_run_id: str | None) -> FlowRun | None:
    if not flow_run_id:
        return None
    try:
        return client.read_flow_run(UUID(flow_run_id))
    except ObjectNotFound:
        return None
