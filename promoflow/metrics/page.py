"""The metrics as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched.

Every mark carries a class (`deployments`, `lead-time`, `failure`, `restore`) so a test can count them.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from html import escape

from promoflow.metrics import Report, Summary
from promoflow.metrics.text import duration

WIDTH, LANE, LEFT = 900, 34, 90  # chart width, height of one environment's lane, room for its name
COLOURS = ("#2563eb", "#16a34a", "#d97706", "#7c3aed", "#db2777", "#0891b2")
BAND_COLOURS = {"elite": "#15803d", "high": "#2563eb", "medium": "#d97706", "low": "#dc2626"}
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #111827; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; }
.card { border: 1px solid #e5e7eb; border-radius: 8px; padding: 10px 14px; min-width: 180px; }
.card b { display: block; font-size: 20px; } .band { color: #fff; border-radius: 4px; padding: 0 6px; }
.muted { color: #6b7280; font-size: 12px; } svg text { font-size: 11px; fill: #374151; }
"""


def render(report: Report) -> str:
    period = report.period
    envs = report.environments
    parts = [
        f"<h1>Delivery metrics: {escape(report.scope)}</h1>",
        f'<p class="muted">{period.since:%Y-%m-%d %H:%M} to {period.until:%Y-%m-%d %H:%M} UTC ({period.days:g} days). '
        "Bands per the DORA Accelerate State of DevOps Report 2021. Definitions: promoflow's README.</p>",
    ]
    for env in envs:
        parts.append(f'<h2>{escape(env.environment)}</h2><div class="cards">{_cards(env.summary)}</div>')
    names = [e.environment for e in envs]
    summaries = [e.summary for e in envs]
    parts += [
        "<h2>Deployments per week</h2>",
        _weekly(names, summaries, period.since, period.until),
        "<h2>Lead time (each deployment; log scale)</h2>",
        _lead_times(names, summaries),
        "<h2>Failures and restores</h2>",
        _timeline(names, summaries, period.since, period.until),
    ]
    body = "\n".join(parts)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>promoflow delivery metrics: {escape(report.scope)}</title><style>{STYLE}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def _cards(summary: Summary) -> str:
    lead, restore, bands = summary.lead_time_seconds, summary.time_to_restore_seconds, summary.bands
    rate = summary.change_failure_rate
    failures, restored = summary.change_failure_counts, summary.time_to_restore_counts
    cards = [
        ("Deployment frequency", f"{summary.deployment_frequency_per_day:g} / day", bands["deployment_frequency"],
         f"{summary.deployments} deployments"),
        ("Lead time (median)", duration(lead["median"]), bands["lead_time"],
         f"p90 {duration(lead['p90'])}; {summary.lead_time_counts['measured']} measured, "
         f"{summary.lead_time_counts['without_creation_time']} without creation time"),
        ("Change failure rate", "-" if rate is None else f"{rate:.0%}", bands["change_failure_rate"],
         f"{failures['failed']} failed of {failures['changes']} changes"),
        ("Time to restore (median)", duration(restore["median"]), bands["time_to_restore"],
         f"p90 {duration(restore['p90'])}; {restored['restored']} restored, {restored['not_restored']} not"),
    ]  # fmt: skip
    return "".join(
        f'<div class="card metric">{escape(title)}<b>{escape(value)} {_band(band)}</b>'
        f'<span class="muted">{escape(counts)}</span></div>'
        for title, value, band, counts in cards
    )


def _band(band: str | None) -> str:
    if band is None:
        return '<span class="muted">no band</span>'
    return f'<span class="band" style="background:{BAND_COLOURS[band]}">{band}</span>'


def _weekly(names: list[str], summaries: list[Summary], since: datetime, until: datetime) -> str:
    """Bars per week (weeks start on Monday, UTC), one per environment with deployments that week."""
    first = (since - timedelta(days=since.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    weeks = max(1, math.ceil((until - first).total_seconds() / (7 * 86400)))
    counts = [[0] * weeks for _ in names]
    for i, summary in enumerate(summaries):
        for moment in summary.deployed_at:
            counts[i][int((moment - first).total_seconds() // (7 * 86400))] += 1
    top = max([1, *(c for row in counts for c in row)])
    height, slot = 160, (WIDTH - LEFT) / weeks
    bar = max(2.0, slot * 0.8 / max(1, len(names)))
    marks = []
    for i, (name, row) in enumerate(zip(names, counts, strict=True)):
        for week, count in enumerate(row):
            if count:
                h = height * count / top
                x = LEFT + week * slot + slot * 0.1 + i * bar
                marks.append(
                    f'<rect class="deployments" data-environment="{escape(name)}" data-count="{count}" x="{x:.1f}" '
                    f'y="{20 + height - h:.1f}" width="{bar - 1:.1f}" height="{h:.1f}" fill="{_colour(i)}">'
                    f"<title>{escape(name)}, week of {first + timedelta(weeks=week):%Y-%m-%d}: {count}</title></rect>"
                )
    labels = [
        f'<text x="{LEFT + week * slot + 2:.1f}" y="{height + 36}">{first + timedelta(weeks=week):%m-%d}</text>'
        for week in range(0, weeks, max(1, weeks // 12))
    ]
    axis = f'<text x="4" y="28">{top}</text><line x1="{LEFT}" x2="{WIDTH}" y1="{height + 20}" y2="{height + 20}" '
    axis += 'stroke="#9ca3af"/>'
    return _svg(height + 70, [axis, *marks, *labels, _legend(names, height + 60)])


def _lead_times(names: list[str], summaries: list[Summary]) -> str:
    """One dot per measured deployment on a log axis from a minute to a year, one lane per environment."""
    low, high = math.log10(60), math.log10(365 * 86400)
    marks, lanes = [], []
    for i, (name, summary) in enumerate(zip(names, summaries, strict=True)):
        y = 20 + i * LANE + LANE / 2
        lanes.append(f'<text x="4" y="{y + 4:.1f}">{escape(name)}</text>')
        for moment, seconds in summary.lead_times:
            position = (min(max(math.log10(max(seconds, 1)), low), high) - low) / (high - low)
            cx = LEFT + position * (WIDTH - LEFT - 40)
            marks.append(
                f'<circle class="lead-time" data-environment="{escape(name)}" cx="{cx:.1f}" cy="{y:.1f}" r="5" '
                f'fill="{_colour(i)}" fill-opacity="0.6">'
                f"<title>{escape(name)}: {duration(seconds)} (deployed {moment:%Y-%m-%d %H:%M})</title></circle>"
            )
    bottom = 20 + len(names) * LANE
    ticks = []
    ticks_at = (("1 min", 60), ("1 h", 3600), ("1 day", 86400), ("1 week", 604800), ("30 days", 2592000))
    for label, seconds in (*ticks_at, ("1 year", 31536000)):
        x = LEFT + (math.log10(seconds) - low) / (high - low) * (WIDTH - LEFT - 40)
        ticks.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="14" y2="{bottom}" stroke="#e5e7eb"/>'
            f'<text x="{x - 14:.1f}" y="{bottom + 14}">{label}</text>'
        )
    return _svg(bottom + 24, [*ticks, *lanes, *marks])


def _timeline(names: list[str], summaries: list[Summary], since: datetime, until: datetime) -> str:
    """Each incident: a red dot where it started, a line while it lasted, a green dot where it was restored."""
    span = (until - since).total_seconds()

    def x(moment: datetime) -> float:
        return LEFT + (moment - since).total_seconds() / span * (WIDTH - LEFT - 10)

    marks, lanes = [], []
    for i, (name, summary) in enumerate(zip(names, summaries, strict=True)):
        y = 20 + i * LANE + LANE / 2
        lanes.append(
            f'<text x="4" y="{y + 4:.1f}">{escape(name)}</text>'
            f'<line x1="{LEFT}" x2="{WIDTH - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
        )
        for incident in summary.incidents:
            restored = incident.restored_at if incident.restored_at and incident.restored_at < until else None
            end = restored or until
            marks.append(
                f'<line x1="{x(incident.started_at):.1f}" x2="{x(end):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                'stroke="#dc2626" stroke-width="3"/>'
                f'<circle class="failure" data-environment="{escape(name)}" cx="{x(incident.started_at):.1f}" '
                f'cy="{y:.1f}" r="5" fill="#dc2626"><title>{escape(name)}: failed {incident.started_at:%Y-%m-%d %H:%M}'
                "</title></circle>"
            )
            if restored:
                marks.append(
                    f'<circle class="restore" data-environment="{escape(name)}" cx="{x(end):.1f}" cy="{y:.1f}" r="5" '
                    f'fill="#16a34a"><title>{escape(name)}: restored {end:%Y-%m-%d %H:%M} after '
                    f"{duration((end - incident.started_at).total_seconds())}</title></circle>"
                )
    bottom = 20 + len(names) * LANE
    axis = [
        f'<text x="{LEFT}" y="{bottom + 14}">{since:%Y-%m-%d}</text>',
        f'<text x="{WIDTH - 80}" y="{bottom + 14}">{until:%Y-%m-%d}</text>',
    ]
    return _svg(bottom + 24, [*lanes, *marks, *axis])


def _legend(names: list[str], y: float) -> str:
    return "".join(
        f'<rect x="{LEFT + i * 120}" y="{y - 9}" width="10" height="10" fill="{_colour(i)}"/>'
        f'<text x="{LEFT + i * 120 + 14}" y="{y}">{escape(name)}</text>'
        for i, name in enumerate(names)
    )


def _colour(index: int) -> str:
    return COLOURS[index % len(COLOURS)]


def _svg(height: float, content: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {WIDTH} {height:.0f}" role="img">{"".join(content)}</svg>'
    )
