"""Time as promotions.yaml and the CLI write it: durations, moments, windows in their zones (daylight saving
included), read without a clock of their own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from promoflow import timing
from promoflow.config import Window

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("24h", 86400), ("2d", 172800), ("1h30m", 5400), (600, 600)]
)
def test_durations(text: object, seconds: int) -> None:
    assert timing.duration(text) == timedelta(seconds=seconds)
    assert timing.duration(timing.words(timing.duration(text))) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "h", "24", "1.5h", "-1h", "0s", "400d", True])
def test_durations_refused(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        timing.duration(text)


def test_moments_are_iso_with_a_zone_or_from_now() -> None:
    assert timing.moment("+2h", NOW) == NOW + timedelta(hours=2)
    assert timing.moment("2026-12-24T18:00:00+01:00", NOW) == datetime(2026, 12, 24, 17, 0, tzinfo=UTC)
    assert timing.moment("2026-12-24T18:00Z", NOW) == datetime(2026, 12, 24, 18, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="has no time zone"):
        timing.moment("2026-12-24T18:00", NOW)
    with pytest.raises(ValueError, match="is not a time"):
        timing.moment("tomorrow", NOW)


def window(**fields: object) -> timing.Opening:
    return Window.model_validate(fields).opening()


def test_a_cron_window_follows_its_zone_across_daylight_saving() -> None:
    """New York moves its clocks on Sunday 14 March 2027: 10:00 there is 15:00 UTC before, 14:00 UTC after."""
    opening = window(cron="0 10 * * 1-5", duration="2h", timezone="America/New_York")
    assert not opening.open_at(datetime(2027, 3, 12, 14, 30, tzinfo=UTC))
    assert opening.open_at(datetime(2027, 3, 12, 15, 0, tzinfo=UTC))
    assert opening.open_at(datetime(2027, 3, 15, 14, 30, tzinfo=UTC))
    assert not opening.open_at(datetime(2027, 3, 15, 16, 0, tzinfo=UTC))
    assert opening.next_opening(datetime(2027, 3, 12, 18, 0, tzinfo=UTC)) == datetime(2027, 3, 15, 14, 0, tzinfo=UTC)


def test_hours_past_midnight_belong_to_the_day_they_start() -> None:
    opening = window(days=["fri"], hours="22:00-06:00")
    assert opening.open_at(datetime(2026, 12, 4, 23, 0, tzinfo=UTC))  # Friday night
    assert opening.open_at(datetime(2026, 12, 5, 5, 59, tzinfo=UTC))  # Saturday morning, still Friday's
    assert not opening.open_at(datetime(2026, 12, 5, 23, 0, tzinfo=UTC))  # Saturday night
    assert not opening.open_at(datetime(2026, 12, 4, 5, 0, tzinfo=UTC))  # Friday morning is Thursday's
    assert opening.next_opening(datetime(2026, 12, 5, 7, 0, tzinfo=UTC)) == datetime(2026, 12, 11, 22, 0, tzinfo=UTC)


def test_a_window_of_days_alone_is_open_all_day() -> None:
    opening = window(days=["sat", "sun"], timezone="Asia/Tokyo")
    assert opening.open_at(datetime(2026, 12, 4, 15, 0, tzinfo=UTC))  # Saturday 00:00 in Tokyo
    assert not opening.open_at(datetime(2026, 12, 4, 14, 59, tzinfo=UTC))
