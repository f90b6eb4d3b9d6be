"""Transient errors are retried with backoff by Prefect; terminal ones fail at once (real Prefect server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.prefect

SCRIPT = """
import json, sys
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from promoflow.config import Environment, RetryPolicy
from promoflow.errors import TerminalError, TransientError
from tasks._shared import retry_options

tries = {"transient": 0, "terminal": 0}
env = Environment(name="dev", branch="env/dev", retry=RetryPolicy(attempts=3, backoff_seconds=0.1))

@task(cache_policy=NO_CACHE)
def flaky(kind: str) -> str:
    tries[kind] += 1
    if kind == "transient" and tries[kind] < 3:
        raise TransientError("registry answered 503")
    if kind == "terminal":
        raise TerminalError("bad credentials")
    return "ok"

@flow
def run() -> dict:
    options = retry_options(env)
    result = flaky.with_options(**options)("transient")
    try:
        flaky.with_options(**options)("terminal")
    except TerminalError:
        pass
    return {"result": result, "tries": tries, "delays": options["retry_delay_seconds"]}

print("RESULT", json.dumps(run()))
"""


def test_transient_errors_are_retried_and_terminal_ones_are_not(prefect_api: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    outcome = json.loads(line.removeprefix("RESULT "))
    assert outcome["result"] == "ok"
    assert outcome["tries"] == {"transient": 3, "terminal": 1}
    assert outcome["delays"] == [0.1, 0.2]  # doubling backoff
