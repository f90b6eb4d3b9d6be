"""The watch cycle on real parts: each new release is recorded once and goes through the pipeline."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Sandbox
from tests.helpers import wait_for

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


@pytest.mark.xdist_group("served")  # it registers the `pipeline` deployment that the serve tests serve
def test_a_watch_run_hands_a_release_to_a_pipeline_run_of_its_own(sandbox: Sandbox, prefect_api: str) -> None:
    """Prefect refuses to suspend a subflow: a pipeline that a watch run (on a worker, or served) starts from the
    `pipeline` deployment must be a flow run of its own, or it fails at its first wait for an approval."""
    from prefect.types.entrypoint import EntrypointType

    from flows.pipeline import pipeline
    from flows.watch import watch

    deployment = pipeline.to_deployment(name="pipeline", entrypoint_type=EntrypointType.MODULE_PATH).apply()
    api = httpx.Client(base_url=prefect_api, timeout=30)
    try:
        # a worker asking for its runs: the deployment is served (READY), so the watch hands new releases to it
        api.post("/deployments/get_scheduled_flow_runs", json={"deployment_ids": [str(deployment)]})
        wait_for(
            lambda: api.get(f"/deployments/{deployment}").json()["status"] == "READY",
            timeout=60,
            what="the pipeline deployment to be ready",
        )
        sandbox.publish("1.2.0")
        watch(config=str(sandbox.config), apps=["web"])
        (run,) = api.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [str(deployment)]}}}).json()
        assert run["parameters"]["app"] == "web" and run["parameters"]["requested_by"] == "promoflow-watch"
        assert run["parent_task_run_id"] is None  # not a subflow of the watch
    finally:
        api.delete(f"/deployments/{deployment}")
        api.close()
