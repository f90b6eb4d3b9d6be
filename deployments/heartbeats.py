"""The automation that notices a promoflow flow run whose machine died: `python -m deployments.heartbeats`
(deploy/register-deployments.sh runs it; idempotent).

A worker killed with its machine leaves its flow runs Running in Prefect for ever: nothing in Prefect marks them.
promoflow's reconcile sees at once that a run's process ended when it ran on the same machine; on another one it
cannot look. With `PREFECT_FLOWS_HEARTBEAT_FREQUENCY` set on the workers, every run emits a heartbeat event; this
automation (Prefect's "detect zombie flows" recipe) marks a promoflow run Crashed when its heartbeats stop, and the
Crashed event wakes the `reconcile` deployment, which carries its promotions on in a new run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prefect.automations import AutomationCore

NAME = "promoflow: crash runs whose heartbeats stopped"
HEARTBEAT_SECONDS = 30  # the workers' PREFECT_FLOWS_HEARTBEAT_FREQUENCY (Prefect's minimum)
SILENT_SECONDS = 3 * HEARTBEAT_SECONDS
# What may follow a heartbeat without another: the run ended, or it waits with no process (suspended), or paused in
# its process, or promoflow carried it on elsewhere (Abandoned, flows/resume.py)
ENDINGS = ("Completed", "Failed", "Cancelled", "Crashed", "Suspended", "Paused", "Abandoned")


def automation() -> AutomationCore:
    from prefect.automations import AutomationCore
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    return AutomationCore(
        name=NAME,
        description=f"A flow run of a promoflow deployment that sent no heartbeat for {SILENT_SECONDS} s died with "
        "its worker: Crashed, so that the reconcile deployment carries its promotions on.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{state}" for state in ENDINGS)},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.id": "prefect.tag.promoflow"},  # the deployments' tag
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=SILENT_SECONDS),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                name="Crashed",
                message=f"no heartbeat for {SILENT_SECONDS} s: its worker died",
            )
        ],
    )


def main() -> None:
    from prefect.client.orchestration import get_client

    wanted = automation()
    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name(NAME)
        if found:
            client.update_automation(found[0].id, wanted)
        else:
            client.create_automation(wanted)


if __name__ == "__main__":
    main()
