"""Deal revenue and its attribution to ads, in integer cents so every split adds up exactly. Pure.

A deal's revenue is its amount when closed-won and ``amount × probability`` of its stage otherwise
(:data:`DEFAULT_STAGE_PROBABILITIES` is HubSpot's default pipeline). A deal that moves stages is *revalued*:
:func:`revalue` returns the new revenue and the delta from the previous one, so applying deltas never counts a
deal twice. Attribution splits a revenue over ads by the deal's UTM parameters (:func:`attribute_by_utm`) or by
touchpoints (:func:`last_touch`, :func:`linear`); to move an ad's credit when a deal is revalued, attribute the
new revenue and apply :func:`credit_delta` against the previous credits rather than splitting the delta itself,
so each ad's running total always equals the split of the deal's current revenue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from conveyor.errors import BadInput

#: HubSpot's default sales pipeline: stage id → win probability.
DEFAULT_STAGE_PROBABILITIES: Mapping[str, Decimal] = {
    "appointmentscheduled": Decimal("0.2"),
    "qualifiedtobuy": Decimal("0.4"),
    "presentationscheduled": Decimal("0.6"),
    "decisionmakerboughtin": Decimal("0.8"),
    "contractsent": Decimal("0.9"),
    "closedwon": Decimal("1"),
    "closedlost": Decimal("0"),
}
#: Stages that count the full amount whatever the probability table says.
DEFAULT_WON_STAGES: frozenset[str] = frozenset({"closedwon"})

_CENT = Decimal("0.01")
#: Larger amounts are refused: no deal is worth this, and cents of it still fit Decimal's default precision.
MAX_AMOUNT = Decimal(10) ** 15


def parse_amount(value: str | Decimal | int | None) -> Decimal:
    """A deal amount as a Decimal (``None`` or ``""`` → 0); raises :class:`BadInput` ``INVALID_AMOUNT``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return Decimal(0)
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise BadInput(f"deal amount {value!r} is not a number", code="INVALID_AMOUNT") from None
    if not amount.is_finite() or amount < 0 or amount >= MAX_AMOUNT:
        raise BadInput(f"deal amount {value!r} is not a number from 0 to 10^15", code="INVALID_AMOUNT")
    return amount


def to_cents(amount: Decimal) -> int:
    """``amount`` rounded half-even to whole cents."""
    return int(amount.quantize(_CENT, rounding=ROUND_HALF_EVEN) * 100)


def deal_revenue_cents(
    amount: str | Decimal | int | None,
    stage: str,
    probabilities: Mapping[str, Decimal] = DEFAULT_STAGE_PROBABILITIES,
    won_stages: frozenset[str] = DEFAULT_WON_STAGES,
) -> int:
    """A deal's revenue in cents: the amount when ``stage`` is won, else amount × the stage's probability.

    Raises :class:`BadInput` ``UNKNOWN_DEAL_STAGE`` for a stage the table lacks and ``INVALID_AMOUNT``.
    """
    value = parse_amount(amount)
    if stage in won_stages:
        return to_cents(value)
    probability = probabilities.get(stage)
    if probability is None:
        raise BadInput(f"deal stage {stage!r} has no probability", code="UNKNOWN_DEAL_STAGE", details={"stage": stage})
    return to_cents(value * probability)


@dataclass(frozen=True)
class DealRevenue:
    """What a deal is worth now, and the ``occurredAt`` (ms) of the change that set it."""

    revenue_cents: int
    stage: str
    as_of_ms: int


@dataclass(frozen=True)
class RevenueChange:
    """The deal's revenue after a change and how much that changed the total (``delta_cents``)."""

    current: DealRevenue
    delta_cents: int


def revalue(
    previous: DealRevenue | None,
    amount: str | Decimal | int | None,
    stage: str,
    occurred_at_ms: int,
    probabilities: Mapping[str, Decimal] = DEFAULT_STAGE_PROBABILITIES,
    won_stages: frozenset[str] = DEFAULT_WON_STAGES,
) -> RevenueChange:
    """The deal's revenue after a change at ``occurred_at_ms``; the delta is what to add to running totals.

    A change older than the one ``previous`` reflects (an out-of-order delivery) changes nothing (delta 0).
    """
    if previous is not None and occurred_at_ms < previous.as_of_ms:
        return RevenueChange(previous, 0)
    cents = deal_revenue_cents(amount, stage, probabilities, won_stages)
    current = DealRevenue(cents, stage, occurred_at_ms)
    return RevenueChange(current, cents - (previous.revenue_cents if previous else 0))


@dataclass(frozen=True)
class Touchpoint:
    """One ad interaction of the deal's contact."""

    ad_id: str
    campaign_id: str | None
    at: datetime


@dataclass(frozen=True)
class Credit:
    """Revenue credited to one ad (``ad_id`` ``None``: unattributed)."""

    ad_id: str | None
    campaign_id: str | None
    revenue_cents: int


def attribute_by_utm(revenue_cents: int, utm_content: str | None, utm_campaign: str | None) -> list[Credit]:
    """All of ``revenue_cents`` to the ad named by ``utm_content`` (unattributed when there is none)."""
    ad_id = (utm_content or "").strip() or None
    campaign_id = (utm_campaign or "").strip() or None
    return [Credit(ad_id, campaign_id, revenue_cents)]


def _eligible(touchpoints: Iterable[Touchpoint], converted_at: datetime | None) -> list[Touchpoint]:
    """Touchpoints at or before the conversion, oldest first (ties keep their given order)."""
    kept = [t for t in touchpoints if converted_at is None or t.at <= converted_at]
    return sorted(kept, key=lambda t: t.at)


def last_touch(
    revenue_cents: int, touchpoints: Iterable[Touchpoint], converted_at: datetime | None = None
) -> list[Credit]:
    """All of ``revenue_cents`` to the latest touchpoint at or before ``converted_at`` (else unattributed)."""
    kept = _eligible(touchpoints, converted_at)
    if not kept:
        return [Credit(None, None, revenue_cents)]
    last = kept[-1]
    return [Credit(last.ad_id, last.campaign_id, revenue_cents)]


def split_evenly(total_cents: int, parts: int) -> list[int]:
    """``total_cents`` in ``parts`` shares differing by at most one cent that sum to it exactly (extra cents go
    to the first shares; a negative total splits as the negation of its absolute value)."""
    if parts <= 0:
        raise ValueError("parts must be positive")
    sign = -1 if total_cents < 0 else 1
    base, extra = divmod(abs(total_cents), parts)
    return [sign * (base + (1 if i < extra else 0)) for i in range(parts)]


def linear(revenue_cents: int, touchpoints: Iterable[Touchpoint], converted_at: datetime | None = None) -> list[Credit]:
    """``revenue_cents`` split equally over the touchpoints at or before ``converted_at``, summed per
    (ad, campaign), in order of first touch; the credits sum to ``revenue_cents`` exactly."""
    kept = _eligible(touchpoints, converted_at)
    if not kept:
        return [Credit(None, None, revenue_cents)]
    totals: dict[tuple[str, str | None], int] = {}
    for touch, share in zip(kept, split_evenly(revenue_cents, len(kept)), strict=True):
        key = (touch.ad_id, touch.campaign_id)
        totals[key] = totals.get(key, 0) + share
    return [Credit(ad, campaign, cents) for (ad, campaign), cents in totals.items()]


def credit_delta(previous: Sequence[Credit], current: Sequence[Credit]) -> list[Credit]:
    """Per (ad, campaign), what to add to running totals to move from ``previous`` credits to ``current``.

    Zero changes are left out; the deltas sum to ``sum(current) - sum(previous)`` exactly.
    """
    totals: dict[tuple[str | None, str | None], int] = {}
    for credit in previous:
        key = (credit.ad_id, credit.campaign_id)
        totals[key] = totals.get(key, 0) - credit.revenue_cents
    for credit in current:
        key = (credit.ad_id, credit.campaign_id)
        totals[key] = totals.get(key, 0) + credit.revenue_cents
    return [Credit(ad, campaign, cents) for (ad, campaign), cents in totals.items() if cents]
