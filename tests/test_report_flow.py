"""Lead time from a release's creation, on real parts: an OCI layout, a real registry, a git repository, a real
promotion, and the scheduled `report` flow publishing its artifacts to the session's Prefect server."""

from __future__ import annotations

import asyncio
import gzip
import json
from datetime import UTC, datetime

import httpx
import pytest

from promoflow.records import as_dict
from promoflow.sources import RegistrySource
from promoflow.sources.git import GitSource
from promoflow.sources.oci_layout import publish
from tests.conftest import Sandbox
from tests.registry_fixtures import (
    OCI_MANIFEST,
    push_blob,
    push_manifest,
    registry_fixture,
    registry_storage_fixture,
)

__all__ = ["registry_fixture", "registry_storage_fixture"]  # fixtures used by name below

pytestmark = pytest.mark.prefect
CREATED = "2026-11-30T10:00:00Z"


def test_a_promotion_s_lead_time_starts_when_its_image_was_built_and_the_report_flow_publishes_it(
    sandbox: Sandbox, prefect_api: str
) -> None:
    publish(sandbox.layout, "1.2.0", created=CREATED)
    promoted = sandbox.cli("promote", "web", "--to", "dev", "--release", "1.2.0", env={"PROMOFLOW_USER": "rita"})
    assert promoted.returncode == 0, promoted.stderr
    history = sandbox.cli_json("history", "web")
    assert isinstance(history, list)
    (promotion,) = [p for p in history if p["kind"] == "promotion"]  # and the baseline adopted before it
    release = as_dict(sandbox.db().get_release(promotion["release"]["id"]))
    assert release["built_at"] == "2026-11-30T10:00:00+00:00"
    finalized = next(s for s in promotion["steps"] if s["name"] == "finalize")["ended_at"]
    lead = (datetime.fromisoformat(finalized) - datetime(2026, 11, 30, 10, tzinfo=UTC)).total_seconds()

    report = sandbox.cli_json("report", "web", "--env", "dev", "--since", "2026-11-01")
    assert isinstance(report, dict)
    (dev,) = report["environments"]
    assert dev["deployments"] == 1 and dev["counts"]["lead_time"] == {"measured": 1, "without_creation_time": 0}
    assert dev["lead_time_seconds"]["median"] == pytest.approx(lead, abs=0.01)

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.report import ARTIFACT_KEY
    from flows.report import report as report_flow

    published = report_flow(days=7, config=str(sandbox.config))
    assert [e["deployments"] for e in published["environments"]] == [1, 0, 0]  # dev, staging, prod

    async def artifacts() -> dict[str, object]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY, f"{ARTIFACT_KEY}-summary"])),
            )
        newest: dict[str, object] = {}
        for artifact in sorted(found, key=lambda a: a.created):  # type: ignore[arg-type,return-value]
            newest[str(artifact.key)] = artifact.data
        return newest

    found = asyncio.run(artifacts())
    table = found[ARTIFACT_KEY]
    rows = json.loads(table) if isinstance(table, str) else table
    assert isinstance(rows, list)
    dev_row = next(r for r in rows if r["environment"] == "dev" and r["app"] == "web")
    assert dev_row["deployments"] == "1" and "0 of 1" in dev_row["change failure rate"]
    assert "| dev | (all) | 1 |" in str(found[f"{ARTIFACT_KEY}-summary"])


def test_a_registry_image_s_creation_time_comes_from_its_config(registry: str) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2026-10-01T08:30:00.5+02:00",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()  # fmt: skip
    with httpx.Client(base_url=registry, timeout=10) as http:
        described = push_blob(http, "team/built", config, "application/vnd.oci.image.config.v1+json")
        layer = push_blob(
            http, "team/built", gzip.compress(b"built", mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"
        )
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": described, "layers": [layer]})
        image = push_manifest(http, "team/built", "1.0", OCI_MANIFEST, manifest.encode())
    source = RegistrySource("built", registry, "team/built")
    assert source.built_at(image.digest) == datetime(2026, 10, 1, 6, 30, 0, 500000, tzinfo=UTC)


def test_a_config_release_is_made_when_its_commit_was(sandbox: Sandbox) -> None:
    from promoflow.config import ConfigSource

    head = sandbox.git("rev-parse", "env/dev").strip()
    committed = datetime.fromisoformat(sandbox.git("show", "-s", "--format=%cI", head).strip())
    source = GitSource("web", ConfigSource(url=str(sandbox.repo), branch="env/dev"), str(sandbox.repo), sandbox.base)
    assert source.committed_at(head) == committed.astimezone(UTC)
