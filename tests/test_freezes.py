"""Freezes end to end: `promoflow freeze` holds promotions into an environment before their merge (no process
holds a served one while it waits) until `promoflow unfreeze` or its end; `status` shows the freeze and what it
holds; an override by a listed person goes through, recorded in `history`.

Real parts: the session's Prefect server, `python -m deployments.serve`, the CLI as processes, a real git repo.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Sandbox
from tests.helpers import (
    NO_APPROVAL,
    OFTEN,
    REQUESTER,
    history,
    merges,
    promotion,
    run_state,
    served,
    start_cli,
    wait_for,
)

# Served deployments are named the same in every test: tests that serve them share one xdist worker (two such tests
# at once, each serve process starting a process per run, starved each other's runs for minutes on 2 cores).
pytestmark = [pytest.mark.prefect, pytest.mark.xdist_group("served")]


@pytest.fixture(autouse=True)
def _server(prefect_api: str) -> None:
    """Every test here talks to the session's Prefect server."""


def staging(sandbox: Sandbox) -> dict[str, Any]:
    rows = sandbox.cli_json("status")
    assert isinstance(rows, list)
    found: dict[str, Any] = next(r for r in rows if r["app"] == "web" and r["environment"] == "staging")
    return found


def held(sandbox: Sandbox) -> dict[str, Any] | None:
    """The promotion into staging a freeze holds, as `status --json` shows it."""
    return next((w for w in staging(sandbox)["waiting"] if w["gate"] == "freeze"), None)


def events(name: str, promotion_id: int, since: datetime) -> list[dict[str, Any]]:
    """The events `name` about a promotion that the Prefect server has, since `since` (promotion ids start at 1 in
    every test's records: an earlier test's promotion 3 is on the same server)."""
    where = {
        "event": {"name": [name]},
        "resource": {"id": [f"promoflow.promotion.{promotion_id}"]},
        "occurred": {"since": since.isoformat()},
    }
    answer = httpx.post(f"{os.environ['PREFECT_API_URL']}/events/filter", json={"filter": where}, timeout=10)
    answer.raise_for_status()
    found: list[dict[str, Any]] = answer.json()["events"]
    return found


def test_a_freeze_holds_a_served_promotion_without_a_process_until_unfreeze_or_its_end(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.edit_config(*NO_APPROVAL)
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    frozen = sandbox.cli("freeze", "staging", "--reason", "launch review", "--as", "olga")
    assert frozen.returncode == 0, frozen.stderr
    assert "Froze staging as olga (launch review), until `promoflow unfreeze staging`" in frozen.stdout
    (shown,) = staging(sandbox)["freezes"]
    assert (shown["reason"], shown["by"], shown["until"], shown["source"]) == (
        "launch review",
        "olga",
        None,
        "promoflow freeze",
    )

    with served(sandbox, tmp_path / "serve.log", env=OFTEN):
        submitted = sandbox.cli("promote", "web", "--to", "staging", "--no-wait", "--json", env=REQUESTER)
        assert submitted.returncode == 0, submitted.stderr
        pid = json.loads(submitted.stdout)["promotion"]
        # named on the promotion at once: a reconcile (every 10 s here) must see its run pending, not gone
        assert promotion(sandbox, pid)["flow_run_id"] == json.loads(submitted.stdout)["flow_run"]
        wait = wait_for(lambda: held(sandbox), timeout=120, what="the freeze to hold the promotion")
        assert wait["promotion"] == pid and "launch review (olga, until lifted)" in wait["waiting_for"]
        assert wait["decide"] == ["promoflow unfreeze staging"]
        run = promotion(sandbox, pid)["flow_run_id"]
        wait_for(lambda: run_state(run) == ("PAUSED", "Suspended"), timeout=60, what="its run to be suspended")
        text = sandbox.cli("status")
        assert "frozen" in text.stdout and "launch review" in text.stdout, text.stdout
        assert merges(sandbox, "env/staging") == []

        lifted = sandbox.cli("unfreeze", "staging", "--as", "olga")
        assert lifted.returncode == 0, lifted.stderr
        assert "Lifted 1 freeze of staging as olga." in lifted.stdout
        assert f"Promotion {pid}: its suspended run was put back on the schedule." in lifted.stdout
        wait_for(lambda: promotion(sandbox, pid)["state"] == "succeeded", timeout=240, what="it to succeed")
        assert len(merges(sandbox, "env/staging")) == 1 and staging(sandbox)["freezes"] == []

        # A freeze with an end: the reconcile wakes the held run once it has passed.
        sandbox.publish("1.3.0")
        assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
        frozen = sandbox.cli("freeze", "staging", "--reason", "demo day", "--until", "+120s")
        assert frozen.returncode == 0, frozen.stderr
        until = datetime.fromisoformat(staging(sandbox)["freezes"][0]["until"])
        submitted = sandbox.cli("promote", "web", "--to", "staging", "--no-wait", "--json", env=REQUESTER)
        second = json.loads(submitted.stdout)["promotion"]
        # The run must reach the freeze before its end for the hold to be tested (at load 40 it once did not).
        wait_for(lambda: (w := held(sandbox)) is not None and w["promotion"] == second, timeout=90, what="the hold")
        assert datetime.now(UTC) < until, "the run reached the freeze only after its end: the machine is too slow"
        done = wait_for(
            lambda: (p := promotion(sandbox, second))["state"] == "succeeded" and p, timeout=300, what="it to go on"
        )
    # Held from before the freeze's end (its entry step waited) until after it: nothing merged meanwhile.
    (entry,) = [s for s in done["steps"] if s["name"] == "entry"]
    assert datetime.fromisoformat(entry["ended_at"]) >= until > datetime.fromisoformat(entry["started_at"])
    assert entry["attempt"] == 1 and entry["detail"]["overrode"] == []
    assert len(merges(sandbox, "env/staging")) == 2


def test_a_terminal_promotion_held_in_place_goes_on_when_the_freeze_is_lifted(sandbox: Sandbox) -> None:
    began = datetime.now(UTC)
    sandbox.edit_config(*NO_APPROVAL)
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    assert sandbox.cli("freeze", "staging", "--reason", "incident 7").returncode == 0
    running = start_cli(sandbox, "promote", "web", "--to", "staging")
    wait = wait_for(lambda: held(sandbox), timeout=120, what="the freeze to hold it")
    assert run_state(promotion(sandbox, wait["promotion"])["flow_run_id"])[0] == "RUNNING"  # waits in place
    assert merges(sandbox, "env/staging") == []
    said = wait_for(
        lambda: events("promoflow.promotion.held", wait["promotion"], began), timeout=60, what="the held event"
    )
    assert said[0]["payload"]["said"] == wait["waiting_for"]
    lifted = sandbox.cli("unfreeze", "staging")
    assert lifted.returncode == 0, lifted.stderr
    output, errors = running.communicate(timeout=120)
    assert running.returncode == 0, errors
    assert "into staging: succeeded" in output and len(merges(sandbox, "env/staging")) == 1


def test_an_override_goes_through_a_freeze_only_by_a_listed_person_and_history_shows_it(sandbox: Sandbox) -> None:
    sandbox.edit_config("    branch: env/staging\n", "    branch: env/staging\n    override_by: [alice]\n")
    sandbox.edit_config(*NO_APPROVAL)
    sandbox.publish("1.2.0")
    assert sandbox.cli("promote", "web", "--to", "dev", env=REQUESTER).returncode == 0
    assert sandbox.cli("freeze", "staging", "--reason", "year end", "--as", "olga").returncode == 0

    refused = sandbox.cli("promote", "web", "--to", "staging", "--override-freeze", "--reason", "hotfix", env=REQUESTER)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "error: rita may not promote into staging with --override-freeze: allowed are alice."
    )
    unexplained = sandbox.cli("promote", "web", "--to", "staging", "--override-freeze", "--as", "alice")
    assert "--override-freeze needs a reason" in unexplained.stderr and unexplained.returncode == 1
    hotfix = sandbox.cli("promote", "web", "--to", "prod", "--skip-order", "--reason", "CVE", "--as", "bob")
    assert hotfix.returncode == 1 and hotfix.stderr.strip() == (
        "error: bob may not promote into prod with --skip-order: allowed are nobody "
        "(set `override_by` on the environment in promotions.yaml)."
    )
    assert history(sandbox, "web", "--env", "staging") == []  # refusals change nothing

    through = sandbox.cli(
        "promote", "web", "--to", "staging", "--override-freeze", "--reason", "CVE fix", "--as", "alice"
    )
    assert through.returncode == 0, through.stderr
    (done,) = [p for p in history(sandbox, "web", "--env", "staging") if p["kind"] == "promotion"]
    assert (done["overridden_by"], done["reason"], done["override_freeze"]) == ("alice", "CVE fix", True)
    assert (done["state"], done["skip_order"]) == ("succeeded", False)
    (entry,) = [s for s in done["steps"] if s["name"] == "entry"]
    assert entry["detail"]["overrode"] == ["freeze year end (olga, until lifted)"]
    table = sandbox.cli("history", "web")
    assert "succeeded (override)" in table.stdout and "alice overrode freezes and windows: CVE fix" in table.stdout
    assert held(sandbox) is None and staging(sandbox)["freezes"][0]["reason"] == "year end"
