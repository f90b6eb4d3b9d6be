"""A promotion whose run is not named yet: `promote --no-wait` records the promotion, then creates its flow run and
names it. A reconcile in between must not read that as a run gone (it started a second run of the promotion, and
the first, started later, promoted the release once more)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows.resume import TAKE_OVER_SECONDS, status
from promoflow.records import Promotion


def promotion(age_seconds: float) -> Promotion:
    created = datetime.now(UTC) - timedelta(seconds=age_seconds)
    return Promotion(id=1, app="web", environment="staging", release_id="r1", requested_by="rita", created_at=created)


@pytest.mark.parametrize(
    ("age", "verdict"), [(1, "busy"), (TAKE_OVER_SECONDS - 5, "busy"), (TAKE_OVER_SECONDS + 5, "gone")]
)
def test_a_promotion_whose_run_is_not_named_yet_is_busy_until_the_take_over_time(age: float, verdict: str) -> None:
    found = status(None, promotion(age))  # type: ignore[arg-type]  # no run to read: no client needed
    assert found.verdict == verdict and found.run is None


def test_a_naive_creation_time_from_the_records_counts_as_utc() -> None:
    recorded = promotion(1)
    recorded.created_at = recorded.created_at.replace(tzinfo=None)  # as SQLite gives it back
    assert status(None, recorded).verdict == "busy"  # type: ignore[arg-type]
