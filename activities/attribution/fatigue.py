"""Ad fatigue from daily metrics (light, pure): trends of frequency, CPM and CTR → none, warning or critical.

The seed's ``monitor_fatigue`` "detects fatiguing ads before CTR crashes" by watching "frequency, CPM and
engagement trends" and sends critical ads to SafeExecutor for approval; it gives no numbers, so the defaults of
:class:`FatigueThresholds` are ours. A trend is the least-squares slope over the window's days, divided by the
metric's mean over the window: a relative change per day, so one threshold fits a 0.5 % CTR and a 5 % CTR alike.

Rules: each trend past its threshold (and a frequency at or above the ceiling) is a *signal* with a reason.
No signal → ``none``; any signal → ``warning``; CTR falling together with a saturation signal (frequency rising,
frequency at the ceiling, or CPM rising) → ``critical``, which needs a human approval before the action runs.
The action is ``rotate`` (a fresh creative for a saturated audience) when frequency signals fire, else ``pause``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FatigueLevel(StrEnum):
    """How fatigued an ad is."""

    NONE = "none"
    WARNING = "warning"
    CRITICAL = "critical"


FatigueAction = Literal["pause", "rotate"]


class FatigueThresholds(BaseModel):
    """When a trend counts as fatigue (relative slopes are fractions of the window's mean per day)."""

    model_config = ConfigDict(frozen=True)

    window_days: int = Field(default=7, ge=2, le=90)
    """Calendar days ending on ``as_of`` that the trends are fitted over."""
    min_days: int = Field(default=4, ge=2)
    """Fewer days with impressions in the window → no verdict (level none, with a reason)."""
    frequency_rise: float = Field(default=0.03, gt=0)
    """Frequency growing by 3 % of its mean a day: the same people see the ad again and again."""
    frequency_ceiling: float = Field(default=3.5, gt=0)
    """Latest day's frequency at or above this is a saturation signal on its own."""
    cpm_rise: float = Field(default=0.03, gt=0)
    ctr_decline: float = Field(default=0.03, gt=0)
    """CTR falling by 3 % of its mean a day (≈ a fifth lost over a week)."""

    @model_validator(mode="after")
    def _min_days_fit_window(self) -> FatigueThresholds:
        if self.min_days > self.window_days:
            raise ValueError("min_days must not exceed window_days")
        return self


class DailyMetrics(BaseModel):
    """One ad's delivery on one day (what ``POST /api/ad-metrics`` stores)."""

    model_config = ConfigDict(frozen=True)

    day: date
    impressions: int = Field(ge=0)
    clicks: int = Field(ge=0)
    spend: float = Field(ge=0, allow_inf_nan=False)
    frequency: float = Field(ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _clicks_within_impressions(self) -> DailyMetrics:
        if self.clicks > self.impressions:
            raise ValueError("clicks must not exceed impressions")
        return self

    @property
    def ctr(self) -> float:
        """Clicks per impression."""
        return self.clicks / self.impressions if self.impressions else 0.0

    @property
    def cpm(self) -> float:
        """Spend per thousand impressions."""
        return 1000.0 * self.spend / self.impressions if self.impressions else 0.0


class Trend(BaseModel):
    """A metric's least-squares slope per day and that slope relative to the metric's mean."""

    model_config = ConfigDict(frozen=True)

    slope: float
    relative: float
    mean: float


class FatigueAssessment(BaseModel):
    """One ad's verdict: level, why, the fitted trends and the action a critical verdict asks approval for."""

    model_config = ConfigDict(frozen=True)

    ad_id: str
    level: FatigueLevel
    reasons: list[str]
    days: int
    frequency: Trend | None = None
    cpm: Trend | None = None
    ctr: Trend | None = None
    action: FatigueAction | None = None

    @property
    def needs_approval(self) -> bool:
        """Whether a human must approve the action before it runs (critical only)."""
        return self.level is FatigueLevel.CRITICAL


def least_squares_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The slope of the least-squares line through the points (0 when the xs do not vary)."""
    if len(xs) != len(ys) or not xs:
        raise ValueError("need as many ys as xs, at least one")
    mean_x = sum(xs) / len(xs)
    mean_y = sum(ys) / len(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx


def _trend(xs: Sequence[float], ys: Sequence[float]) -> Trend:
    slope = least_squares_slope(xs, ys)
    mean = sum(ys) / len(ys)
    return Trend(slope=slope, relative=slope / mean if mean > 0 else 0.0, mean=mean)


def assess_fatigue(
    ad_id: str,
    metrics: Sequence[DailyMetrics],
    thresholds: FatigueThresholds | None = None,
    as_of: date | None = None,
) -> FatigueAssessment:
    """Fit the ad's trends over the window ending ``as_of`` (default: its latest day) and grade its fatigue."""
    limits = thresholds or FatigueThresholds()
    days = [m.day for m in metrics]
    if len(set(days)) != len(days):
        raise ValueError(f"ad {ad_id}: more than one row for a day")
    if not metrics:
        return FatigueAssessment(ad_id=ad_id, level=FatigueLevel.NONE, reasons=["no metrics"], days=0)
    end = as_of or max(days)
    start = end - timedelta(days=limits.window_days - 1)
    window = sorted((m for m in metrics if start <= m.day <= end and m.impressions > 0), key=lambda m: m.day)
    if len(window) < limits.min_days:
        reason = f"only {len(window)} day(s) with impressions in the last {limits.window_days}; need {limits.min_days}"
        return FatigueAssessment(ad_id=ad_id, level=FatigueLevel.NONE, reasons=[reason], days=len(window))

    xs = [float((m.day - start).days) for m in window]  # calendar days, so a missing day does not bend the line
    frequency = _trend(xs, [m.frequency for m in window])
    cpm = _trend(xs, [m.cpm for m in window])
    ctr = _trend(xs, [m.ctr for m in window])

    saturation: list[str] = []
    if frequency.relative >= limits.frequency_rise:
        saturation.append(f"frequency rising {frequency.relative:+.1%}/day (threshold {limits.frequency_rise:.1%})")
    if window[-1].frequency >= limits.frequency_ceiling:
        saturation.append(f"frequency {window[-1].frequency:.2f} at or above {limits.frequency_ceiling:.2f}")
    frequency_signals = len(saturation)
    if cpm.relative >= limits.cpm_rise:
        saturation.append(f"CPM rising {cpm.relative:+.1%}/day (threshold {limits.cpm_rise:.1%})")
    ctr_falling = ctr.relative <= -limits.ctr_decline
    reasons = list(saturation)
    if ctr_falling:
        reasons.insert(0, f"CTR falling {ctr.relative:+.1%}/day (threshold -{limits.ctr_decline:.1%})")

    if ctr_falling and saturation:
        level = FatigueLevel.CRITICAL
        action: FatigueAction | None = "rotate" if frequency_signals else "pause"
    else:
        level = FatigueLevel.WARNING if reasons else FatigueLevel.NONE
        action = None
    return FatigueAssessment(
        ad_id=ad_id,
        level=level,
        reasons=reasons,
        days=len(window),
        frequency=frequency,
        cpm=cpm,
        ctr=ctr,
        action=action,
    )
