"""Delivery metrics against crafted histories whose answers are worked out by hand below.

The history (prod, four weeks from Monday 2026-11-02, hours from then):
  1 web   built 0, requested 1, succeeded 3                              lead 3 h
  2 web   built 24, requested 25, succeeded 26; rolled back by 3 at 30     lead 2 h, failed
  3 web   rollback of 2: requested 30, succeeded 31                       incident 30-31
  4 web   rollback of rollback 3: requested 32, failed verification 33    incident 32-36 (4 and 5 belong to it)
  5 web   rollback of 4: requested 34, succeeded 36
  6 web   release without creation time: requested 100, succeeded 101    not measured
  7 web   built 120, requested 121, failed verification 122               failed, incident 122-123
  8 web   rollback of 7: requested 122.5, succeeded 123
  9,10    bundle b1: web built 200 req 201 ok 202, api built 199 req 202 ok 203   one change, lead 3 h
  11,12   bundle b2: web built 300 ok 302, api failed verification 303    one failed change
  13      web rollback of 11 (bundle b2): requested 304, succeeded 305     env incident 303-305
  14      api rollback of 12: requested 303.5, succeeded 304.5
  15 web  before the period: requested -48, succeeded -47                 not counted
  16 web  baseline                                                        not a deployment
  17 api  built 600, failed verification 601, never restored             failed, incident not restored
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from promoflow import metrics
from promoflow.errors import TerminalError
from promoflow.metrics import Period, PromotionRow
from promoflow.metrics.load import promotion_rows
from promoflow.records import Database, Promotion, Rejection, Release, Step

T0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
PERIOD = Period(T0, T0 + timedelta(days=28))
H = 3600.0


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def row(
    id: int, app: str, requested: float, kind: str = "promotion", **times: float | int | str | None
) -> PromotionRow:
    moments = {k: at(v) for k, v in times.items() if k.endswith("_at") and isinstance(v, (int, float))}
    others = {k: v for k, v in times.items() if not k.endswith("_at")}
    return PromotionRow(id, app, "prod", kind, f"r{id}", at(requested), **moments, **others)  # type: ignore[arg-type]


HISTORY = [
    row(1, "web", 1, built_at=0, succeeded_at=3),
    row(2, "web", 25, built_at=24, succeeded_at=26, rejected_at=30),
    row(3, "web", 30, "rollback", rollback_of=2, succeeded_at=31),
    row(4, "web", 32, "rollback", rollback_of=3, failed_verification_at=33),
    row(5, "web", 34, "rollback", rollback_of=4, succeeded_at=36),
    row(6, "web", 100, succeeded_at=101),
    row(7, "web", 121, built_at=120, failed_verification_at=122),
    row(8, "web", 122.5, "rollback", rollback_of=7, succeeded_at=123),
    row(9, "web", 201, bundle_id="b1", built_at=200, succeeded_at=202),
    row(10, "api", 202, bundle_id="b1", built_at=199, succeeded_at=203),
    row(11, "web", 301, bundle_id="b2", built_at=300, succeeded_at=302),
    row(12, "api", 302, bundle_id="b2", built_at=300, failed_verification_at=303),
    row(13, "web", 304, "rollback", bundle_id="b2", rollback_of=11, succeeded_at=305),
    row(14, "api", 303.5, "rollback", rollback_of=12, succeeded_at=304.5),
    row(15, "web", -48, built_at=-50, succeeded_at=-47),
    row(16, "web", 0, "baseline"),
    row(17, "api", 600, built_at=600, failed_verification_at=601),
]


def summary_json(environment: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in environment.items() if k not in ("environment", "apps")}


def test_environment_numbers_count_a_bundle_once_and_merge_its_incidents() -> None:
    report = metrics.report(HISTORY, PERIOD, ["dev", "prod"], "all apps").as_json()
    dev, prod = report["environments"]
    assert dev["environment"] == "dev" and dev["deployments"] == 0 and dev["bands"]["deployment_frequency"] is None
    assert summary_json(prod) == {
        "deployments": 4,  # 1, 2, 6 and bundle b1
        "deployment_frequency_per_day": round(4 / 28, 4),
        "lead_time_seconds": {"median": 3 * H, "p90": 3 * H},  # 3 h, 2 h, b1: 203 - max(200, 199)
        "change_failure_rate": round(4 / 7, 4),  # 2, 7, b2, 17 of 1, 2, 6, 7, b1, b2, 17
        "time_to_restore_seconds": {"median": (1 * H + 2 * H) / 2, "p90": 4 * H},  # 1, 1, 2 (b2: 303-305), 4
        "bands": {"deployment_frequency": "high", "lead_time": "high", "change_failure_rate": "low",
                  "time_to_restore": "high"},
        "counts": {
            "deployments": 4,
            "lead_time": {"measured": 3, "without_creation_time": 1},
            "change_failure": {"failed": 4, "changes": 7},
            "time_to_restore": {"restored": 4, "not_restored": 1},
        },
    }  # fmt: skip


def test_app_numbers_count_each_member_of_a_bundle() -> None:
    (prod,) = metrics.report(HISTORY, PERIOD, ["prod"], "all apps").as_json()["environments"]
    apps = {a["app"]: a for a in prod["apps"]}
    web, api = apps["web"], apps["api"]
    assert web["deployments"] == 5  # 1, 2, 6, 9, 11 (11 succeeded, then its bundle was rolled back)
    assert web["lead_time_seconds"] == {"median": 2 * H, "p90": 3 * H}  # 3, 2, 2, 2 h
    assert web["change_failure_rate"] == 0.5 and web["counts"]["change_failure"] == {"failed": 3, "changes": 6}
    assert web["time_to_restore_seconds"] == {"median": 1 * H, "p90": 4 * H}  # 1, 4, 1, 1 h
    assert api["deployments"] == 1 and api["lead_time_seconds"] == {"median": 4 * H, "p90": 4 * H}
    assert api["change_failure_rate"] == round(2 / 3, 4)
    assert api["time_to_restore_seconds"] == {"median": 1.5 * H, "p90": 1.5 * H}
    assert api["counts"]["time_to_restore"] == {"restored": 1, "not_restored": 1}


def test_a_restore_after_the_period_is_not_counted_and_nothing_before_it_is() -> None:
    short = Period(at(300), at(304.6))  # b2 fails at 303, api is restored at 304.5, web at 305
    (prod,) = metrics.report(HISTORY, short, ["prod"], "web").as_json()["environments"]
    assert prod["counts"]["time_to_restore"] == {"restored": 0, "not_restored": 1}  # the bundle's incident
    apps = {a["app"]: a for a in prod["apps"]}
    assert apps["api"]["time_to_restore_seconds"]["median"] == 1.5 * H
    assert prod["deployments"] == 0 and prod["counts"]["change_failure"] == {"failed": 1, "changes": 1}


@pytest.mark.parametrize(
    ("value", "bands", "expected"),
    [
        (59 * 60, metrics.LEAD_TIME_BANDS, "elite"),
        (3600, metrics.LEAD_TIME_BANDS, "high"),  # one hour to a day: a gap in the report, the slower band
        (7 * 86400, metrics.LEAD_TIME_BANDS, "medium"),
        (200 * 86400, metrics.LEAD_TIME_BANDS, "low"),
        (0.15, metrics.FAILURE_RATE_BANDS, "elite"),
        (0.3, metrics.FAILURE_RATE_BANDS, "high"),
        (0.31, metrics.FAILURE_RATE_BANDS, "low"),
        (86399, metrics.RESTORE_BANDS, "high"),
        (86400 * 8, metrics.RESTORE_BANDS, "low"),
    ],
)
def test_bands_follow_the_published_thresholds(value: float, bands: list[tuple[str, float]], expected: str) -> None:
    inclusive = bands is metrics.FAILURE_RATE_BANDS
    assert metrics._band(value, bands, inclusive=inclusive) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("per_day", "expected"), [(2, "elite"), (1, "elite"), (0.5, "high"), (0.01, "medium")])
def test_frequency_bands(per_day: float, expected: str) -> None:
    assert metrics._band(per_day, metrics.FREQUENCY_BANDS, higher_is_better=True) == expected


def test_the_period_from_the_command_line() -> None:
    now = datetime(2026, 12, 4, 12, tzinfo=UTC)
    assert metrics.period(None, None, now) == Period(now - timedelta(days=30), now)
    assert metrics.period("2026-11-01", "2026-11-08T00:00+01:00", now) == Period(
        datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 7, 23, tzinfo=UTC)
    )
    with pytest.raises(TerminalError, match=r"--since '2026-13-01' is not a date: write it like 2026-11-01"):
        metrics.period("2026-13-01", None, now)
    with pytest.raises(TerminalError, match=r"--since \(2026-12-05 00:00\) must be before --until"):
        metrics.period("2026-12-05", None, now)


# -- the loader, over records written through the records API at chosen times --------------------------


def write(db: Database, *rows: object) -> None:
    with db.session() as s:
        for r in rows:
            s.add(r)
            s.commit()


def promotion(id: int, release: str, requested: float, ended: float, state: str, **fields: object) -> Promotion:
    return Promotion(
        id=id, app="web", environment="prod", release_id=release, state=state, requested_by="rita",
        created_at=at(requested), updated_at=at(ended), ended_at=at(ended), **fields,
    )  # fmt: skip


def step(promotion_id: int, name: str, outcome: str, ended: float, attempt: int = 1) -> Step:
    return Step(
        promotion_id=promotion_id, name=name, attempt=attempt, outcome=outcome, started_at=at(ended - 0.1),
        ended_at=at(ended),
    )  # fmt: skip


def release(id: str, built: float | None) -> Release:
    return Release(
        id=id, app="web", label=id, images="[]", origin="test", built_at=at(built) if built is not None else None,
        created_at=at(0),
    )  # fmt: skip


def test_the_loader_reads_success_failure_and_rejection_from_steps_and_rejections(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'records.db'}")
    write(
        db,
        release("r1", 0), release("r2", 24), release("r3", None),
        # 1: a transient verify failure, retried, then verified: not a failed verification
        promotion(1, "r1", 1, 3, "succeeded"), step(1, "verify", "failed", 2), step(1, "verify", "succeeded", 2.5, 2),
        step(1, "finalize", "succeeded", 3),
        # 2: verified, then rolled back by 3 (the rollback rewrote its end), its release rejected naming it
        promotion(2, "r2", 25, 30, "rolled_back"), step(2, "verify", "succeeded", 25.9),
        step(2, "finalize", "succeeded", 26),
        promotion(3, "r1", 30, 31, "succeeded", kind="rollback", rollback_of=2), step(3, "finalize", "succeeded", 31),
        Rejection(app="web", environment="prod", release_id="r2", promotion_id=2, created_at=at(30)),
        # 4: failed verification; ended long before the period: not read
        promotion(4, "r3", -100, -99, "failed"), step(4, "verify", "failed", -99),
        promotion(5, "r3", 100, 101, "failed"), step(5, "verify", "failed", 101),
    )  # fmt: skip
    rows = {r.id: r for r in promotion_rows(db, PERIOD, ["web"], None)}
    assert set(rows) == {1, 2, 3, 5}
    assert rows[1] == PromotionRow(1, "web", "prod", "promotion", "r1", at(1), built_at=at(0), succeeded_at=at(3))
    assert rows[2].succeeded_at == at(26) and rows[2].rejected_at == at(30) and rows[2].built_at == at(24)
    assert rows[3].kind == "rollback" and rows[3].rollback_of == 2 and rows[3].succeeded_at == at(31)
    assert rows[5].failed_verification_at == at(101) and rows[5].built_at is None and rows[5].succeeded_at is None
    assert promotion_rows(db, PERIOD, ["api"], None) == [] and promotion_rows(db, PERIOD, None, "dev") == []

    (prod,) = metrics.report(rows.values(), PERIOD, ["prod"], "web").as_json()["environments"]
    assert prod["deployments"] == 2 and prod["lead_time_seconds"] == {"median": 2.5 * H, "p90": 3 * H}
    assert prod["counts"]["change_failure"] == {"failed": 2, "changes": 3}  # 2 (rolled back) and 5
    assert prod["counts"]["time_to_restore"] == {"restored": 1, "not_restored": 1}  # 30-31; 101 never
    assert json.loads(json.dumps(prod))  # JSON-ready
