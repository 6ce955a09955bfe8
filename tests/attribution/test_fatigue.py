"""Fatigue grading on synthetic daily series: flat, saturating, too short, gappy and malformed."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from activities.attribution.fatigue import (
    DailyMetrics,
    FatigueLevel,
    FatigueThresholds,
    assess_fatigue,
    least_squares_slope,
)

START = date(2024, 3, 1)


def _series(
    days: int = 7,
    *,
    frequency: float = 1.5,
    frequency_step: float = 0.0,
    ctr: float = 0.02,
    ctr_step: float = 0.0,
    cpm: float = 10.0,
    cpm_step: float = 0.0,
    impressions: int = 100_000,
) -> list[DailyMetrics]:
    """``days`` of metrics that move linearly by the given steps per day."""
    return [
        DailyMetrics(
            day=START + timedelta(days=i),
            impressions=impressions,
            clicks=round(impressions * (ctr + ctr_step * i)),
            spend=(cpm + cpm_step * i) * impressions / 1000,
            frequency=frequency + frequency_step * i,
        )
        for i in range(days)
    ]


def test_least_squares_slope_of_a_line_and_of_noise_free_points() -> None:
    assert least_squares_slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert least_squares_slope([0, 1, 2], [4, 4, 4]) == 0.0
    assert least_squares_slope([2, 2], [1, 5]) == 0.0
    # y = 1, 2, 2, 5 over x = 0..3: the textbook fit has slope 1.2
    assert least_squares_slope([0, 1, 2, 3], [1, 2, 2, 5]) == pytest.approx(1.2)
    with pytest.raises(ValueError):
        least_squares_slope([0, 1], [1])


def test_flat_series_is_not_fatigued() -> None:
    result = assess_fatigue("ad-1", _series())
    assert result.level is FatigueLevel.NONE
    assert result.reasons == [] and result.action is None and not result.needs_approval
    assert result.days == 7
    assert result.ctr is not None and result.ctr.mean == pytest.approx(0.02)
    assert result.cpm is not None and result.cpm.mean == pytest.approx(10.0)
    assert result.frequency is not None and result.frequency.slope == 0.0


def test_rising_frequency_and_falling_ctr_is_critical_and_asks_to_rotate() -> None:
    # frequency 1.5 → 2.7 (+0.2/day on a mean of 2.1 ≈ +9.5 %/day); CTR 2.0 % → 1.4 % (≈ -5.9 %/day)
    result = assess_fatigue("ad-1", _series(frequency_step=0.2, ctr_step=-0.001))
    assert result.level is FatigueLevel.CRITICAL
    assert result.needs_approval and result.action == "rotate"
    assert result.frequency is not None and result.frequency.relative == pytest.approx(0.2 / 2.1)
    assert result.ctr is not None and result.ctr.slope == pytest.approx(-0.001)
    assert [reason.split()[0] for reason in result.reasons] == ["CTR", "frequency"]


def test_falling_ctr_with_rising_cpm_is_critical_and_asks_to_pause() -> None:
    result = assess_fatigue("ad-1", _series(ctr_step=-0.001, cpm_step=0.6))
    assert result.level is FatigueLevel.CRITICAL and result.action == "pause"
    assert any(reason.startswith("CPM rising") for reason in result.reasons)


def test_a_single_signal_is_only_a_warning() -> None:
    rising = assess_fatigue("ad-1", _series(frequency_step=0.2))
    falling = assess_fatigue("ad-1", _series(ctr_step=-0.001))
    for result in (rising, falling):
        assert result.level is FatigueLevel.WARNING
        assert len(result.reasons) == 1 and not result.needs_approval and result.action is None


def test_frequency_at_the_ceiling_counts_as_saturation() -> None:
    result = assess_fatigue("ad-1", _series(frequency=4.0, ctr_step=-0.001))
    assert result.level is FatigueLevel.CRITICAL and result.action == "rotate"
    assert any("at or above 3.50" in reason for reason in result.reasons)


def test_too_few_days_is_none_with_a_reason() -> None:
    result = assess_fatigue("ad-1", _series(days=3, frequency_step=0.5, ctr_step=-0.003))
    assert result.level is FatigueLevel.NONE and not result.needs_approval
    assert result.reasons == ["only 3 day(s) with impressions in the last 7; need 4"]
    assert result.ctr is None
    assert assess_fatigue("ad-1", []).reasons == ["no metrics"]


def test_days_without_impressions_do_not_count() -> None:
    series = _series(days=5) + [
        DailyMetrics(day=START + timedelta(days=5 + i), impressions=0, clicks=0, spend=0, frequency=0) for i in range(2)
    ]
    thresholds = FatigueThresholds(min_days=6)
    result = assess_fatigue("ad-1", series, thresholds)
    assert result.level is FatigueLevel.NONE and result.days == 5 and result.reasons[0].startswith("only 5 day(s)")


def test_the_window_ends_at_as_of_and_ignores_older_days() -> None:
    # two weeks: a healthy first week, then a fatiguing second week
    healthy = _series(days=7)
    tired = [
        m.model_copy(update={"day": m.day + timedelta(days=7)})
        for m in _series(days=7, frequency_step=0.2, ctr_step=-0.001)
    ]
    assert assess_fatigue("ad-1", healthy + tired).level is FatigueLevel.CRITICAL
    assert assess_fatigue("ad-1", healthy + tired, as_of=START + timedelta(days=6)).level is FatigueLevel.NONE


def test_a_missing_day_keeps_the_calendar_spacing() -> None:
    series = [m for i, m in enumerate(_series(days=8, frequency_step=0.2)) if i != 3]
    result = assess_fatigue("ad-1", series)
    assert result.frequency is not None and result.frequency.slope == pytest.approx(0.2)


def test_thresholds_come_from_settings() -> None:
    gentle = _series(ctr_step=-0.0003, frequency_step=0.03)  # ≈ -1.6 %/day CTR, ≈ +1.6 %/day frequency
    assert assess_fatigue("ad-1", gentle).level is FatigueLevel.NONE
    strict = FatigueThresholds(ctr_decline=0.01, frequency_rise=0.01)
    assert assess_fatigue("ad-1", gentle, strict).level is FatigueLevel.CRITICAL


def test_malformed_input_is_refused() -> None:
    with pytest.raises(ValueError, match="more than one row"):
        assess_fatigue("ad-1", _series(days=4) + _series(days=1))
    with pytest.raises(ValidationError):
        DailyMetrics(day=START, impressions=10, clicks=11, spend=1, frequency=1)
    with pytest.raises(ValidationError):
        FatigueThresholds(window_days=5, min_days=6)


@settings(max_examples=60, deadline=None)
@given(
    frequency=st.floats(0.5, 3.0),
    ctr=st.floats(0.005, 0.1),
    cpm=st.floats(1, 50),
    noise=st.lists(st.floats(-0.005, 0.005), min_size=7, max_size=7),
)
def test_near_flat_series_never_need_approval(frequency: float, ctr: float, cpm: float, noise: list[float]) -> None:
    """Day-to-day jitter of ±0.5 % around a constant never raises a critical verdict."""
    series = [
        DailyMetrics(
            day=START + timedelta(days=i),
            impressions=1_000_000,
            clicks=round(1_000_000 * ctr * (1 + n)),
            spend=cpm * 1000 * (1 + n),
            frequency=frequency * (1 + n),
        )
        for i, n in enumerate(noise)
    ]
    result = assess_fatigue("ad-1", series)
    assert result.level is FatigueLevel.NONE and not result.needs_approval
