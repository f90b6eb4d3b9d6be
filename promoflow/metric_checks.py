"""Metric checks, judged: which checks a promotion runs, what one look means, and what all its looks so far say.

Pure: no HTTP, no database. The `verify` step asks Prometheus (`promoflow.prometheus`), records every look as a
`MetricSample`, and asks `judge` what the looks of each check add up to: passed, failed, unreachable (Prometheus
has not answered for longer than its `timeout_seconds`), or still looking (and when to look next).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from promoflow.config import App, Environment, MetricCheck
from promoflow.records import MetricSample


def applying(app: App, environment: Environment, kind: str) -> list[MetricCheck]:
    """The checks a promotion of `kind` into `environment` runs. A rollback runs none: for the length of their
    rate windows its metrics still show the release it replaces."""
    if environment.prometheus is None or kind == "rollback":
        return []
    return [c for c in app.metric_checks if c.environments is None or environment.name in c.environments]


def fill(query: str, **values: str) -> str:
    """The query with `{app}`, `{environment}`, `{namespace}`, `{release}` replaced (PromQL's braces stay)."""
    for name, value in values.items():
        query = query.replace(f"{{{name}}}", value)
    return query


def threshold(check: MetricCheck) -> str:
    """`max 0.01`, `min 5`, `min 1, max 5`."""
    return ", ".join(
        f"{word} {bound:g}" for word, bound in (("min", check.min), ("max", check.max)) if bound is not None
    )


def outcome(check: MetricCheck, value: float | None) -> Literal["pass", "fail", "no_data"]:
    """What one answered look says; NaN is no data (a ratio over no traffic)."""
    if value is None or math.isnan(value):
        return "no_data"
    too_high = check.max is not None and value > check.max
    too_low = check.min is not None and value < check.min
    return "fail" if too_high or too_low else "pass"


@dataclass(frozen=True)
class Verdict:
    state: Literal["passed", "failed", "unreachable", "looking"]
    looks: int  # looks that count (answered; with `no_data: wait`, with a value)
    failing: int
    next_look: datetime | None = None  # while looking
    reason: str = ""  # failed or unreachable: why, in words


def judge(check: MetricCheck, looks: Sequence[MetricSample], now: datetime, unreachable_after: float) -> Verdict:
    """What the check's looks so far (oldest first) add up to at `now`."""
    if not looks:
        return Verdict("looking", 0, 0, next_look=now)
    with_data = [s for s in looks if s.outcome in ("pass", "fail")]
    without = [s for s in looks if s.outcome == "no_data"]
    counted = with_data if check.no_data == "wait" else [s for s in looks if s.outcome != "error"]
    failing = [s for s in counted if s.outcome == "fail" or (s.outcome == "no_data" and check.no_data == "fail")]
    if len(failing) > check.failure_limit:
        return Verdict("failed", len(counted), len(failing), reason=_failed(check, counted, failing))
    errors = _trailing_errors(looks)
    if errors and (now - errors[0].taken_at).total_seconds() >= unreachable_after:
        reason = f"no answer since {errors[0].taken_at:%H:%M:%S} UTC: {errors[-1].message}"
        return Verdict("unreachable", len(counted), len(failing), reason=reason)
    window = timedelta(seconds=check.for_seconds)
    if check.no_data == "wait" and not with_data and without and without[-1].taken_at >= looks[0].taken_at + window:
        reason = f"no data in {len(without)} looks over {check.for_seconds:g} s (no_data: wait)"
        return Verdict("failed", 0, 0, reason=reason)
    start = (with_data[0] if check.no_data == "wait" and with_data else looks[0]).taken_at
    if any(s.taken_at >= start + window for s in counted):
        return Verdict("passed", len(counted), len(failing))
    next_look = looks[-1].taken_at + timedelta(seconds=check.interval_seconds)
    return Verdict("looking", len(counted), len(failing), next_look=next_look)


def _trailing_errors(looks: Sequence[MetricSample]) -> list[MetricSample]:
    """The looks Prometheus has not answered since it last did."""
    index = len(looks)
    while index and looks[index - 1].outcome == "error":
        index -= 1
    return list(looks[index:])


SHOWN_VALUES = 12


def _failed(check: MetricCheck, counted: Sequence[MetricSample], failing: Sequence[MetricSample]) -> str:
    """`2 of 5 looks failed (max 0.01, failure_limit 1): 0.002, 0.004, 0.031, 0.052, 0.049`."""
    values = values_text([s.value for s in counted])
    return (
        f"{len(failing)} of {len(counted)} looks failed ({threshold(check)}, no_data: {check.no_data}, "
        f"failure_limit {check.failure_limit}): {values}"
    )


def values_text(values: Sequence[float | None]) -> str:
    """The last values, as people read them: `0.002, 0.031, no data` (older ones elided)."""
    shown = ["no data" if v is None else f"{v:.4g}" for v in values[-SHOWN_VALUES:]]
    return ("…, " if len(values) > SHOWN_VALUES else "") + ", ".join(shown)


BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None]) -> str:
    """A one-line chart of the values, lowest `▁` to highest `█`; `·` where a look had no value."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 0.0)

    def bar(value: float | None) -> str:
        if value is None:
            return "·"
        if not math.isfinite(value):
            return BARS[-1] if value > 0 else BARS[0]
        if high == low:
            return BARS[len(BARS) // 2]
        return BARS[round((value - low) / (high - low) * (len(BARS) - 1))]

    return "".join(bar(v) for v in values)


def markdown(looks: Sequence[MetricSample]) -> list[str]:
    """A promotion's looks as a markdown table, one row and a sparkline per check, then the queries sent."""
    by_check: dict[str, list[MetricSample]] = {}
    for look in looks:
        by_check.setdefault(look.check_name, []).append(look)
    lines = [
        "| metric check | threshold | looks | outside it | no data | no answer | values | last |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in by_check.items():
        answered = [r for r in rows if r.outcome != "error"]
        count = {o: sum(r.outcome == o for r in rows) for o in ("fail", "no_data", "error")}
        last = values_text([answered[-1].value]) if answered else "-"
        lines.append(
            f"| {name} | {rows[-1].threshold} | {len(rows)} | {count['fail']} | {count['no_data']} | {count['error']} "
            f"| {sparkline([r.value for r in answered])} | {last} |"
        )
    lines.append("")
    lines += [f"- {name}: `{rows[-1].query.replace('`', '')}`" for name, rows in by_check.items()]
    return lines
