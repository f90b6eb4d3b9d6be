"""The metrics as words: table rows (the CLI's table, Prefect's table artifact) and a markdown summary."""

from __future__ import annotations

from promoflow.metrics import Report, Summary

COLUMNS = (
    "environment",
    "app",
    "deployments",
    "per day",
    "lead time (median / p90)",
    "change failure rate",
    "time to restore (median / p90)",
)


def duration(seconds: float | None) -> str:
    """42 s, 12 min, 3.5 h, 2.1 d: the unit a person reads at a glance."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            value = seconds / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{seconds:.0f} s"


def cells(summary: Summary) -> list[str]:
    """deployments, per day, lead time, change failure rate, time to restore: each with its band and counts."""
    bands = summary.bands
    lead, restore = summary.lead_time_seconds, summary.time_to_restore_seconds
    failures = summary.change_failure_counts
    rate = summary.change_failure_rate
    unmeasured = summary.lead_time_counts["without_creation_time"]
    open_incidents = summary.time_to_restore_counts["not_restored"]
    return [
        str(summary.deployments),
        f"{summary.deployment_frequency_per_day:g}{_band(bands['deployment_frequency'])}",
        f"{duration(lead['median'])} / {duration(lead['p90'])}{_band(bands['lead_time'])}"
        + (f", {unmeasured} without creation time" if unmeasured else ""),
        ("-" if rate is None else f"{rate:.0%}")
        + f" ({failures['failed']} of {failures['changes']}){_band(bands['change_failure_rate'])}",
        f"{duration(restore['median'])} / {duration(restore['p90'])}{_band(bands['time_to_restore'])}"
        + (f", {open_incidents} not restored" if open_incidents else ""),
    ]


def rows(report: Report) -> list[dict[str, str]]:
    """One row per environment, then one per app in it."""
    result = []
    for env in report.environments:
        result.append(dict(zip(COLUMNS, [env.environment, "(all)", *cells(env.summary)], strict=True)))
        for app, summary in sorted(env.apps.items()):
            result.append(dict(zip(COLUMNS, [env.environment, app, *cells(summary)], strict=True)))
    return result


def markdown(report: Report) -> str:
    period = report.period
    lines = [
        f"# Delivery metrics: {report.scope}",
        "",
        f"{period.since:%Y-%m-%d %H:%M} to {period.until:%Y-%m-%d %H:%M} UTC ({period.days:g} days). "
        "Bands per the DORA Accelerate State of DevOps Report 2021; definitions in promoflow's README.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(row.values()) + " |" for row in rows(report)]
    return "\n".join(lines) + "\n"


def _band(band: str | None) -> str:
    return f" ({band})" if band else ""
