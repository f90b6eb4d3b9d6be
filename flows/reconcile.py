"""Flow: keep promotions and their Prefect runs in step, whatever process died when.

Served on an interval and run at once when a promoflow flow run is cancelled or crashes
(deployments/serve.py). For every promotion that has not ended:
- a person cancelled its run: the promotion is cancelled (its request closed, its slot freed);
- its wait ran out of time (an approval timeout): it expires, even when no process holds it;
- its run is suspended and the wait's time has come (a GitHub poll, a free slot): the run is woken;
- its run is gone (its process killed, the run crashed or was stopped with its runner, or deleted): it carries
  on in a new run of the same deployment.
A run hosted by a webhook receiver (`--watch-here`) that ended is left to the next receiver, which carries the
whole pipeline on (a new `promote` run here would carry on this environment only).
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.states import Completed

from flows.resume import RunStatus, cancel, carry_on, status, wake
from promoflow import settings
from promoflow.engine.context import Context
from promoflow.engine.results import Waiting, expiry
from promoflow.engine.runner import end
from promoflow.engine.states import PromotionState
from promoflow.forges import forge_for
from tasks._shared import project
from tasks.steps import PrefectEvents


@flow(name="reconcile", flow_run_name="reconcile promotions")
def reconcile(config: str = settings.FROM_ENVIRONMENT, woken_by: str = "") -> list[str]:
    """Returns what it did, one sentence per promotion it touched. `woken_by`: the event that started it; a
    forge's event (a review, a check) wakes every suspended promotion waiting on that forge."""
    p = project(config)
    logger = get_run_logger()
    forge_event = any(woken_by.startswith(prefix) for prefix in forge_for(p).wake_events) if woken_by else False
    done: list[str] = []
    for listed in p.db.active_promotions():
        assert listed.id is not None
        pid = listed.id
        promotion = p.db.promotion(pid)  # as it is now: the list is seconds old when its turn comes
        if PromotionState(promotion.state).ended:
            continue
        with get_client(sync_client=True) as client:
            found = status(client, promotion)
        waiting = Waiting.model_validate_json(promotion.waiting) if promotion.waiting else None
        ended = expiry(pid, waiting, datetime.now(UTC)) if waiting else None
        if found.verdict == "cancelled":
            cancel(p, pid, found.why)
            said = f"promotion {pid}: {found.why}: cancelled"
        elif ended is not None:
            end(Context(p, pid, events=PrefectEvents(p), log=logger), ended)
            _finish_run(found, ended.message)
            said = ended.message
        elif found.verdict == "suspended" and waiting and (forge_event or _due(waiting)):
            said = f"promotion {pid}: {wake(p, pid)}"
        elif found.verdict == "gone":
            said = f"promotion {pid}: {carry_on(p, pid, found)}"
        else:
            continue
        logger.info("%s", said)
        done.append(said)
    return done


def _due(waiting: Waiting) -> bool:
    return waiting.wake_at is not None and datetime.now(UTC) >= waiting.wake_at


def _finish_run(found: RunStatus, message: str) -> None:
    """A suspended run whose promotion ended has nothing left to do: it completes (a decision, not a failure); so
    does a run its webhook receiver left (the next receiver would carry it on)."""
    if found.verdict in ("suspended", "hosted") and found.run is not None:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(found.run.id, Completed(message=message[:500]), force=True)
