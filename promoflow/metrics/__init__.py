"""Delivery metrics from the records: deployments, lead time, change failure rate, time to restore.

Pure computation over plain rows (`PromotionRow`, read by `promoflow.metrics.load`); the definitions are
the README's "Delivery metrics" section. States and kinds are compared by the names the records use.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from promoflow.errors import TerminalError

Band = Literal["elite", "high", "medium", "low"]
HOUR, DAY = 3600.0, 86400.0

# The bands of the Accelerate State of DevOps Report 2021 (DORA, Google Cloud), table "Software delivery
# performance": https://dora.dev/research/2021/dora-report/ . Its ranges leave gaps (lead time between one
# hour and one day, for one); a value in a gap takes the slower band. Each list is (band, upper bound)
# from the best band down; the last band takes the rest.
# Deployment frequency, per day: elite on demand (multiple a day), high at least once a month ("between once
# per week and once per month"), medium at least once every six months, low fewer.
FREQUENCY_BANDS: list[tuple[Band, float]] = [("elite", 1.0), ("high", 1 / 30), ("medium", 1 / 182.5)]
# Lead time for changes: elite under an hour, high under a week, medium under six months, low more.
LEAD_TIME_BANDS: list[tuple[Band, float]] = [("elite", HOUR), ("high", 7 * DAY), ("medium", 182.5 * DAY)]
# Time to restore service: elite under an hour, high under a day, medium under a week, low more.
RESTORE_BANDS: list[tuple[Band, float]] = [("elite", HOUR), ("high", DAY), ("medium", 7 * DAY)]
# Change failure rate: elite 0-15 %; the report gives high, medium and low the same 16-30 %, so a rate up to
# 30 % is high (the best band it fits) and a rate above every published range is low.
FAILURE_RATE_BANDS: list[tuple[Band, float]] = [("elite", 0.15), ("high", 0.30)]


@dataclass(frozen=True)
class PromotionRow:
    """What the metrics need of one promotion, its release and what happened to it afterwards."""

    id: int
    app: str
    environment: str
    kind: str  # "promotion", "rollback" or "baseline"
    release_id: str
    requested_at: datetime
    bundle_id: str | None = None
    rollback_of: int | None = None
    built_at: datetime | None = None  # when its release was made; None when no part of it says
    succeeded_at: datetime | None = None  # verified and recorded as the environment's known good release
    failed_verification_at: datetime | None = None
    rejected_at: datetime | None = None  # its release rejected in its environment afterwards, naming it


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime

    @property
    def days(self) -> float:
        return (self.until - self.since).total_seconds() / DAY

    def holds(self, moment: datetime | None) -> bool:
        return moment is not None and self.since <= moment < self.until


@dataclass
class Change:
    """What reached an environment as one: a promotion, or the members of one bundle promoted there."""

    members: list[PromotionRow]
    failed_at: datetime | None = None  # failed verification, rolled back or rejected: the earliest

    @property
    def succeeded_at(self) -> datetime | None:
        """When the last member succeeded, if every member did."""
        times = [m.succeeded_at for m in self.members]
        return max(times) if all(times) else None  # type: ignore[type-var]

    @property
    def reached_at(self) -> datetime | None:
        """When it ended in the environment: succeeded, or failed verification there."""
        times = [t for m in self.members if (t := m.succeeded_at or m.failed_verification_at)]
        return max(times) if times else None

    @property
    def built_at(self) -> datetime | None:
        """When its newest part was made; unknown if any member's release does not say."""
        times = [m.built_at for m in self.members]
        return max(times) if all(times) else None  # type: ignore[type-var]


@dataclass
class Incident:
    """From a failure in an app's environment until a good release runs there again."""

    started_at: datetime
    change: int  # id of the promotion whose change failed (a bundle's incidents share it)
    restored_at: datetime | None = None


@dataclass
class Summary:
    """The numbers of one scope (an environment, or an app in it), with the counts behind each."""

    deployments: int
    deployment_frequency_per_day: float
    lead_time_seconds: dict[str, float | None]
    lead_time_counts: dict[str, int]
    change_failure_rate: float | None
    change_failure_counts: dict[str, int]
    time_to_restore_seconds: dict[str, float | None]
    time_to_restore_counts: dict[str, int]
    bands: dict[str, Band | None]
    # for the charts: (time, seconds) of each measured lead time; failures and restores as they happened
    lead_times: list[tuple[datetime, float]] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    deployed_at: list[datetime] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "deployments": self.deployments,
            "deployment_frequency_per_day": self.deployment_frequency_per_day,
            "lead_time_seconds": self.lead_time_seconds,
            "change_failure_rate": self.change_failure_rate,
            "time_to_restore_seconds": self.time_to_restore_seconds,
            "bands": self.bands,
            "counts": {
                "deployments": self.deployments,
                "lead_time": self.lead_time_counts,
                "change_failure": self.change_failure_counts,
                "time_to_restore": self.time_to_restore_counts,
            },
        }


@dataclass
class EnvironmentReport:
    environment: str
    summary: Summary
    apps: dict[str, Summary]


@dataclass
class Report:
    period: Period
    scope: str  # "all apps", an app, or a group
    environments: list[EnvironmentReport]

    def as_json(self) -> dict[str, Any]:
        return {
            "period": {
                "since": self.period.since.isoformat(),
                "until": self.period.until.isoformat(),
                "days": round(self.period.days, 3),
                "scope": self.scope,
            },
            "environments": [
                {
                    "environment": e.environment,
                    **e.summary.as_json(),
                    "apps": [{"app": app, **s.as_json()} for app, s in sorted(e.apps.items())],
                }
                for e in self.environments
            ],
        }


def period(since: str | None, until: str | None, now: datetime, default_days: int = 30) -> Period:
    """The period from the command line: dates or times (ISO 8601, UTC unless they say), `until` now and
    `since` `default_days` before it when not given. Raises a TerminalError saying what to type."""
    end = _moment(until, "--until") if until else now
    start = _moment(since, "--since") if since else end - timedelta(days=default_days)
    if start >= end:
        raise TerminalError(f"--since ({start:%Y-%m-%d %H:%M}) must be before --until ({end:%Y-%m-%d %H:%M}).")
    return Period(start, end)


def _moment(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TerminalError(
            f"{option} {text[:40]!r} is not a date: write it like 2026-11-01 or 2026-11-01T09:30."
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def report(rows: Iterable[PromotionRow], period: Period, environments: Sequence[str], scope: str) -> Report:
    """The metrics of every environment (in the order given; others the records hold after them, by name)."""
    by_env: dict[str, list[PromotionRow]] = defaultdict(list)
    for row in rows:
        by_env[row.environment].append(row)
    names = [*environments, *sorted(set(by_env) - set(environments))]
    result = []
    for env in names:
        env_rows = by_env.get(env, [])
        by_app: dict[str, list[PromotionRow]] = defaultdict(list)
        for row in env_rows:
            by_app[row.app].append(row)
        apps = {app: summarize(app_rows, period, bundles=False) for app, app_rows in by_app.items()}
        result.append(EnvironmentReport(env, summarize(env_rows, period, bundles=True), apps))
    return Report(period, scope, result)


def summarize(rows: list[PromotionRow], period: Period, bundles: bool) -> Summary:
    """The numbers of one environment's rows (one app's, or every app's: then a bundle counts once)."""
    changes = _changes(rows, bundles)
    counted = [c for c in changes if period.holds(c.reached_at)]
    deployed = sorted(t for c in counted if (t := c.succeeded_at))
    measured = sorted(
        (t, (t - built).total_seconds()) for c in counted if (t := c.succeeded_at) and (built := c.built_at)
    )
    failed = [c for c in counted if c.failed_at]
    incidents = [i for i in _incidents(rows, changes, merge=bundles) if period.holds(i.started_at)]
    restores = [
        (end - i.started_at).total_seconds() for i in incidents if (end := i.restored_at) and end < period.until
    ]
    frequency = len(deployed) / period.days
    rate = len(failed) / len(counted) if counted else None
    lead, restore = _spread([s for _, s in measured]), _spread(restores)
    return Summary(
        deployments=len(deployed),
        deployment_frequency_per_day=round(frequency, 4),
        lead_time_seconds=lead,
        lead_time_counts={"measured": len(measured), "without_creation_time": len(deployed) - len(measured)},
        change_failure_rate=None if rate is None else round(rate, 4),
        change_failure_counts={"failed": len(failed), "changes": len(counted)},
        time_to_restore_seconds=restore,
        time_to_restore_counts={"restored": len(restores), "not_restored": len(incidents) - len(restores)},
        bands={
            # no deployment in the period says nothing about how often a team deploys
            "deployment_frequency": _band(frequency if deployed else None, FREQUENCY_BANDS, higher_is_better=True),
            "lead_time": _band(lead["median"], LEAD_TIME_BANDS),
            "change_failure_rate": _band(rate, FAILURE_RATE_BANDS, inclusive=True),
            "time_to_restore": _band(restore["median"], RESTORE_BANDS),
        },
        lead_times=measured,
        incidents=incidents,
        deployed_at=deployed,
    )


def _changes(rows: list[PromotionRow], bundles: bool) -> list[Change]:
    """The changes that reached the environment, oldest request first, each with when it failed, if it did."""
    rollbacks: dict[int, datetime] = {}
    for row in rows:
        if row.kind == "rollback" and row.rollback_of is not None:
            rollbacks[row.rollback_of] = min(row.requested_at, rollbacks.get(row.rollback_of, row.requested_at))
    reached = sorted(
        (r for r in rows if r.kind == "promotion" and (r.succeeded_at or r.failed_verification_at)),
        key=lambda r: (r.requested_at, r.id),
    )
    changes: list[Change] = []
    open_bundles: dict[str, Change] = {}
    for row in reached:
        change = open_bundles.get(row.bundle_id) if bundles and row.bundle_id else None
        # a bundle's run promotes each member once: a member seen again starts the bundle's next change
        if change is None or any(m.app == row.app for m in change.members):
            change = Change([])
            changes.append(change)
            if bundles and row.bundle_id:
                open_bundles[row.bundle_id] = change
        change.members.append(row)
        failures = [t for t in (row.failed_verification_at, rollbacks.get(row.id), row.rejected_at) if t]
        if failures:
            change.failed_at = min([*failures, *([change.failed_at] if change.failed_at else [])])
    return changes


def _incidents(rows: list[PromotionRow], changes: list[Change], merge: bool) -> list[Incident]:
    """Per app: a failed verification or a rollback's request opens an incident (unless one is open: a
    rollback of a rollback belongs to the incident it could not end), the next success ends it. With `merge`,
    the incidents of one bundle's change are one, from the first failure to the last restore."""
    change_of = {m.id: c.members[0].id for c in changes for m in c.members}
    by_app: dict[str, list[tuple[datetime, int, int]]] = defaultdict(list)  # (when, 0 failure / 1 restore, id)
    for row in rows:
        if row.failed_verification_at:
            by_app[row.app].append((row.failed_verification_at, 0, row.id))
        if row.kind == "rollback":
            by_app[row.app].append((row.requested_at, 0, row.rollback_of or row.id))
        if row.succeeded_at:
            by_app[row.app].append((row.succeeded_at, 1, row.id))
    incidents: list[Incident] = []
    for events in by_app.values():
        current: Incident | None = None
        for when, restore, promotion in sorted(events):
            if not restore and current is None:
                current = Incident(when, change_of.get(promotion, promotion))
                incidents.append(current)
            elif restore and current is not None:
                current.restored_at, current = when, None
    if not merge:
        return sorted(incidents, key=lambda i: i.started_at)
    merged: dict[int, Incident] = {}
    for incident in incidents:
        seen = merged.get(incident.change)
        if seen is None:
            merged[incident.change] = Incident(incident.started_at, incident.change, incident.restored_at)
            continue
        seen.started_at = min(seen.started_at, incident.started_at)
        ends = [seen.restored_at, incident.restored_at]
        seen.restored_at = max(ends) if all(ends) else None  # type: ignore[type-var]
    return sorted(merged.values(), key=lambda i: i.started_at)


def _spread(values: list[float]) -> dict[str, float | None]:
    """Median and 90th percentile (nearest rank: the smallest value with 90 % of them at or below it)."""
    if not values:
        return {"median": None, "p90": None}
    ordered = sorted(values)
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return {"median": round(median, 3), "p90": round(ordered[math.ceil(0.9 * n) - 1], 3)}


def _band(
    value: float | None, bands: list[tuple[Band, float]], higher_is_better: bool = False, inclusive: bool = False
) -> Band | None:
    if value is None:
        return None
    for band, bound in bands:
        if (value >= bound) if higher_is_better else (value <= bound if inclusive else value < bound):
            return band
    return "low"
