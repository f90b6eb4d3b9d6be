"""The watch cycle on real parts: each new release is recorded once and goes through the pipeline."""

from __future__ import annotations

import pytest

from tests.conftest import Sandbox

pytestmark = pytest.mark.prefect


def test_each_new_release_is_recorded_once_and_promoted(sandbox: Sandbox, prefect_api: str) -> None:
    sandbox.edit_config("    path: apps/web\n", "    path: apps/web\n    environments: [dev]\n")
    sandbox.publish("1.2.0")

    first = sandbox.cli("watch")
    assert first.returncode == 0, first.stderr
    assert "New release of web: 1.2.0" in first.stdout
    again = sandbox.cli("watch")
    assert again.returncode == 0 and "No new releases." in again.stdout

    sandbox.publish("1.3.0")
    sandbox.publish("1.4.0-rc.1")  # the policy does not take prereleases
    quiet = sandbox.cli("watch", "--no-promote")
    assert "New release of web: 1.3.0" in quiet.stdout

    promoted = [
        (p["environment"], p["release"]["label"]) for p in sandbox.cli_json("history") if p["kind"] == "promotion"
    ]  # type: ignore[union-attr, index]
    assert promoted == [("dev", "1.2.0")]
    status = {s["environment"]: s for s in sandbox.cli_json("status")}  # type: ignore[union-attr]
    assert status["dev"]["current_release"]["label"] == "1.2.0"
    assert list(status) == ["dev"]  # the app passes through dev only
