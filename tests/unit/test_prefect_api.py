"""The Prefect REST calls `promoflow approve` makes without importing Prefect: which runs count as suspended, and
the credentials sent as Prefect's own client sends them."""

from __future__ import annotations

import base64

import pytest

from promoflow import prefect_api


def test_only_a_run_suspended_to_be_rescheduled_counts_as_suspended() -> None:
    def run(kind: str, reschedule: bool | None) -> dict[str, object]:
        return {"state": {"type": kind, "state_details": {"pause_reschedule": reschedule}}}

    assert prefect_api.suspended(run("PAUSED", True))
    assert not prefect_api.suspended(run("PAUSED", False))  # paused in a process that still holds it
    assert not prefect_api.suspended(run("PAUSED", None))
    assert not prefect_api.suspended(run("SCHEDULED", True))
    assert not prefect_api.suspended({"state": None})


def test_the_client_authenticates_as_prefects_does(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING"):
        monkeypatch.delenv(key, raising=False)
    assert prefect_api._client() is None  # no server named: the caller takes Prefect's own path
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    with prefect_api._client() as client:  # type: ignore[union-attr]
        assert str(client.base_url) == "http://127.0.0.1:4200/api/" and "Authorization" not in client.headers
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:pass")
    with prefect_api._client() as client:  # type: ignore[union-attr]
        assert client.headers["Authorization"] == "Basic " + base64.b64encode(b"admin:pass").decode()
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_key")
    with prefect_api._client() as client:  # type: ignore[union-attr]
        assert client.headers["Authorization"] == "Bearer pnu_key"
