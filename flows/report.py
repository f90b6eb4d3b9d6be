"""Flow: the week's delivery metrics, published as a table and a markdown artifact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from promoflow.metrics import Period
from promoflow.metrics.load import project_report
from promoflow.metrics.text import markdown, rows
from tasks._shared import project

ARTIFACT_KEY = "delivery-metrics"


@flow(name="report", flow_run_name="delivery metrics, {days} days")
def report(days: int = 7, config: str = "promotions.yaml") -> dict[str, Any]:
    """Deployments, lead time, change failure rate and time to restore of every app over the last `days`,
    per environment and app, with their DORA bands: a table artifact and a markdown one (same key, so the
    UI keeps their history)."""
    until = datetime.now(UTC)
    result = project_report(project(config), None, None, Period(until - timedelta(days=days), until))
    description = f"promoflow delivery metrics, {days} days to {until:%Y-%m-%d %H:%M} UTC"
    create_table_artifact(key=ARTIFACT_KEY, table=rows(result), description=description)
    create_markdown_artifact(key=f"{ARTIFACT_KEY}-summary", markdown=markdown(result), description=description)
    return result.as_json()
