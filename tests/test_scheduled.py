"""`promoflow promote --at`: a scheduled run of the served `promote` deployment that Prefect's scheduler starts at
its time and not before; `promoflow scheduled` lists it, `promoflow cancel RUN` cancels one.

Real parts: the session's Prefect server and its scheduler, `python -m deployments.serve`, the CLI as processes.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import Sandbox
from tests.helpers import REQUESTER, flow_run, history, run_state, served, wait_for

pytestmark = [pytest.mark.prefect, pytest.mark.xdist_group("served")]


@pytest.fixture(autouse=True)
def _server(prefect_api: str) -> None:
    """Every test here talks to the session's Prefect server."""


def test_a_promotion_at_a_time_runs_then_and_not_before_and_another_is_cancelled(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.edit_config("required: 1                 # one approval before the merge", "required: 0")
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    with served(sandbox, tmp_path / "serve.log"):
        later = sandbox.cli("promote", "web", "--to", "staging", "--at", "+60s", "--json", env=REQUESTER)
        assert later.returncode == 0, later.stderr
        planned = json.loads(later.stdout)
        at = datetime.fromisoformat(planned["at"])
        listed = sandbox.cli_json("scheduled")
        assert isinstance(listed, list)
        (mine,) = [r for r in listed if r["flow_run"] == planned["flow_run"]]
        assert datetime.fromisoformat(mine["at"]) == at
        assert (mine["parameters"]["environment"], mine["parameters"]["requested_by"]) == ("staging", "rita")
        assert mine["name"].startswith("promote web 1.2.0 to staging at")

        never = sandbox.cli("promote", "web", "--to", "dev", "--at", "+2h", env=REQUESTER)
        assert never.returncode == 0, never.stderr
        assert "`promoflow cancel " in never.stdout
        never_run = never.stdout.split("`promoflow cancel ")[1].split("`")[0]
        assert never_run in sandbox.cli("scheduled").stdout
        cancelled = sandbox.cli("cancel", never_run, "--as", "rita")
        assert cancelled.returncode == 0, cancelled.stderr
        assert "it will not start" in cancelled.stdout
        assert run_state(never_run) == ("CANCELLED", "Cancelled")
        listed = sandbox.cli_json("scheduled")
        assert never_run not in [r["flow_run"] for r in listed]  # type: ignore[union-attr]

        done = wait_for(
            lambda: next(
                (p for p in history(sandbox, "web", "--env", "staging") if p["kind"] == "promotion" and p["ended_at"]),
                None,
            ),
            timeout=180,
            what="the scheduled promotion to succeed",
        )
    assert (done["state"], done["flow_run_id"], done["requested_by"]) == ("succeeded", planned["flow_run"], "rita")
    assert datetime.fromisoformat(done["created_at"]) >= at  # nothing of it ran before its time
    # Prefect's server lets the run start up to half a second early (its wait is whole seconds); the flow then
    # holds itself until `at`, which the promotion's own created_at above shows.
    assert datetime.fromisoformat(flow_run(planned["flow_run"])["start_time"]) >= at - timedelta(seconds=1)
    assert [p["id"] for p in history(sandbox, "web", "--env", "dev") if p["kind"] == "promotion"] == [1]


def test_cancel_says_what_is_wrong_with_a_run_id(sandbox: Sandbox) -> None:
    bad = sandbox.cli("cancel", "tomorrow")
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "error: 'tomorrow' is not a flow run id: `promoflow scheduled` lists them."
    )
    unknown = str(uuid.uuid4())
    missing = sandbox.cli("cancel", unknown)
    assert missing.returncode == 1 and f"There is no flow run {unknown}" in missing.stderr
    past = sandbox.cli("promote", "web", "--to", "dev", "--at", "2020-01-01T00:00:00Z")
    assert past.returncode == 1 and "--at 2020-01-01T00:00:00Z has passed" in past.stderr


def test_a_pipeline_stops_before_an_environment_with_a_schedule(sandbox: Sandbox) -> None:
    sandbox.edit_config("    branch: env/staging\n", '    branch: env/staging\n    schedule: {cron: "0 10 * * 1-5"}\n')
    sandbox.publish("1.2.0")
    piped = sandbox.cli("pipeline", "web", env=REQUESTER)
    assert piped.returncode == 0, piped.stderr
    assert "Stopping before staging: its schedule promotes into it" in piped.stdout + piped.stderr
    walked = [(p["environment"], p["state"]) for p in history(sandbox, "web") if p["kind"] == "promotion"]
    assert walked == [("dev", "succeeded")]


def test_an_environment_schedule_is_a_prefect_schedule_whose_tick_promotes_the_newest_eligible_release(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    from flows.tick import tick

    sandbox.edit_config("    branch: env/dev\n", '    branch: env/dev\n    schedule: {cron: "* * * * *"}\n')
    sandbox.publish("1.2.0")
    with served(sandbox, tmp_path / "serve.log"):
        deployment = httpx.get(f"{os.environ['PREFECT_API_URL']}/deployments/name/tick/tick", timeout=10).json()
        (schedule,) = deployment["schedules"]
        assert (schedule["slug"], schedule["schedule"]["cron"], schedule["active"]) == ("dev", "* * * * *", True)
        assert schedule["parameters"] == {"environment": "dev"}
        done = wait_for(
            lambda: next((p for p in history(sandbox, "web", "--env", "dev") if p["kind"] == "promotion"), None),
            timeout=300,
            what="a tick of dev's schedule to promote 1.2.0",
        )
        assert done["requested_by"] == "promoflow (schedule of dev)" and done["release"]["label"] == "1.2.0"
        wait_for(
            lambda: all(p["state"] == "succeeded" for p in history(sandbox, "web", "--env", "dev")),
            timeout=120,
            what="it to succeed",
        )
        said = tick(environment="dev", config=str(sandbox.config))
    assert len(said) == 1 and said[0].startswith("Skipped web: web runs 1.2.0 (") and "nothing newer" in said[0], said
