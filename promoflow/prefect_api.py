"""The few calls to Prefect's REST API a command makes without importing Prefect (over a second of its time):
reading a flow run and putting a suspended one back on the schedule. Anything else goes through Prefect's client.

Reads $PREFECT_API_URL (`promoflow.server.connect` sets it) and authenticates as Prefect's client does
($PREFECT_API_KEY, or $PREFECT_API_AUTH_STRING for a server with basic auth).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from promoflow.project import Project

TIMEOUT_SECONDS = 10.0
WOKEN = "woken by promoflow"


def _client() -> httpx.Client | None:
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return None
    headers = {}
    if key := os.environ.get("PREFECT_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    elif auth := os.environ.get("PREFECT_API_AUTH_STRING"):
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    return httpx.Client(base_url=url.rstrip("/") + "/", headers=headers, timeout=TIMEOUT_SECONDS)


def suspended(run: dict[str, Any]) -> bool:
    """A run suspended by `suspend_flow_run` (its process let go; it waits to be scheduled again)."""
    state = run.get("state") or {}
    return state.get("type") == "PAUSED" and bool((state.get("state_details") or {}).get("pause_reschedule"))


def put_back_on_schedule(project: Project, promotion_id: int, schedule: Callable[[], object]) -> str:
    """Wake a suspended run by `schedule` (setting it Scheduled, message WOKEN, through either client): whichever
    process serves its deployment next takes it and reads the records. Says what was done."""
    # The process that suspended it has ended: until the next one takes the promotion, its run running must not
    # read as that process gone (a reconcile would start a second run).
    project.db.update_promotion(promotion_id, runner=None)
    schedule()
    return "its suspended run was put back on the schedule"


def wake_if_suspended(project: Project, promotion_id: int) -> str | None:
    """The common case of waking a promotion, fast: its run is suspended, and is put back on the schedule (said).
    None when it is not (or Prefect's API cannot be asked this way): the caller takes the full path."""
    run_id = project.db.promotion(promotion_id).flow_run_id
    client = _client()
    if run_id is None or client is None:
        return None
    state = {"type": "SCHEDULED", "name": "Scheduled", "message": WOKEN}
    body = {"state": state | {"state_details": {"scheduled_time": datetime.now(UTC).isoformat()}}, "force": True}
    with client:
        try:
            answer = client.get(f"flow_runs/{run_id}")
            if answer.status_code != 200 or not suspended(answer.json()):
                return None
            schedule = lambda: client.post(f"flow_runs/{run_id}/set_state", json=body).raise_for_status()  # noqa: E731
            return put_back_on_schedule(project, promotion_id, schedule)
        except httpx.HTTPError:  # unreachable, refused: the full path says what is wrong
            return None
