"""`promoflow demo --yes` as a user runs it: its own Prefect server, twice in the same directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.prefect


def _run(base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return subprocess.run(
        [sys.executable, "-m", "promoflow", *args],
        cwd=base,
        env={**env, "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_demo_runs_twice_and_leaves_its_records_behind(tmp_path: Path) -> None:
    first = _run(tmp_path, "demo", "--yes")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Published registry.example.com/demo/web:1.2.0" in first.stdout
    assert "approving promotion" in first.stdout and "Rolling prod back" in first.stdout
    assert "Prefect server stopped" in first.stdout
    assert not (tmp_path / ".promoflow" / "prefect" / "server.json").exists()

    second = _run(tmp_path, "demo", "--yes")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Published registry.example.com/demo/web:1.3.0" in second.stdout

    history = json.loads(_run(tmp_path, "history", "--json").stdout)
    promoted = [(p["environment"], p["release"]["label"]) for p in history if p["kind"] == "promotion"]
    for env in ("dev", "staging", "prod"):
        assert (env, "1.2.0") in promoted and (env, "1.3.0") in promoted
    approvals = [a for p in history for a in p["approvals"]]
    assert approvals and all(a["source"] == "cli" and a["approver"] == "demo-approver" for a in approvals)
    rollbacks = [p for p in history if p["kind"] == "rollback"]
    assert [p["state"] for p in rollbacks] == ["succeeded", "succeeded"]

    status = {s["environment"]: s for s in json.loads(_run(tmp_path, "status", "--json").stdout)}
    assert status["dev"]["current_release"]["label"] == "1.3.0"
    assert status["prod"]["current_release"]["label"] == "1.1.0"  # rolled back to the baseline
    assert len(status["prod"]["rejected_releases"]) == 2
