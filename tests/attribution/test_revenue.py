"""Deal revenue and attribution: stage probabilities, revaluation deltas, exact splits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activities.attribution.revenue import (
    DEFAULT_STAGE_PROBABILITIES,
    Credit,
    DealRevenue,
    Touchpoint,
    attribute_by_utm,
    credit_delta,
    deal_revenue_cents,
    last_touch,
    linear,
    parse_amount,
    revalue,
    split_evenly,
)
from conveyor.errors import BadInput

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def _touch(ad: str, minutes: int, campaign: str | None = "camp-1") -> Touchpoint:
    return Touchpoint(ad, campaign, T0 + timedelta(minutes=minutes))


@pytest.mark.parametrize(
    ("stage", "cents"),
    [
        ("appointmentscheduled", 20_000),
        ("qualifiedtobuy", 40_000),
        ("presentationscheduled", 60_000),
        ("decisionmakerboughtin", 80_000),
        ("contractsent", 90_000),
        ("closedwon", 100_000),
        ("closedlost", 0),
    ],
)
def test_default_pipeline_revenue(stage: str, cents: int) -> None:
    assert deal_revenue_cents("1000", stage) == cents


def test_default_table_covers_hubspots_default_pipeline() -> None:
    assert set(DEFAULT_STAGE_PROBABILITIES) == {
        "appointmentscheduled",
        "qualifiedtobuy",
        "presentationscheduled",
        "decisionmakerboughtin",
        "contractsent",
        "closedwon",
        "closedlost",
    }


def test_closed_won_is_the_full_amount_whatever_the_table() -> None:
    assert deal_revenue_cents("99.99", "closedwon", {"closedwon": Decimal("0.5")}) == 9_999


def test_custom_table_and_won_stages() -> None:
    table = {"1234": Decimal("0.35")}
    assert deal_revenue_cents("200", "1234", table) == 7_000
    assert deal_revenue_cents("200", "won-1", table, frozenset({"won-1"})) == 20_000


def test_probability_rounds_half_even_to_cents() -> None:
    assert deal_revenue_cents("0.125", "closedwon") == 12
    assert deal_revenue_cents("0.135", "closedwon") == 14
    assert deal_revenue_cents("33.33", "qualifiedtobuy") == 1_333  # 13.332


def test_unknown_stage_is_bad_input() -> None:
    with pytest.raises(BadInput) as excinfo:
        deal_revenue_cents("100", "custom-stage")
    assert excinfo.value.code == "UNKNOWN_DEAL_STAGE"


@pytest.mark.parametrize("value", [None, "", "  "])
def test_missing_amount_is_zero(value: str | None) -> None:
    assert parse_amount(value) == 0
    assert deal_revenue_cents(value, "closedwon") == 0


@pytest.mark.parametrize("value", ["abc", "-5", "NaN", "Infinity", "1e999999999999"])
def test_invalid_amount_is_bad_input(value: str) -> None:
    with pytest.raises(BadInput) as excinfo:
        parse_amount(value)
    assert excinfo.value.code == "INVALID_AMOUNT"


def test_amount_accepts_decimals_and_ints() -> None:
    assert parse_amount(" 1500.50 ") == Decimal("1500.50")
    assert parse_amount(7) == Decimal(7)


def test_deal_moving_from_open_stage_to_closed_won_is_not_counted_twice() -> None:
    first = revalue(None, "1000", "contractsent", 1_000)
    assert (first.current.revenue_cents, first.delta_cents) == (90_000, 90_000)
    won = revalue(first.current, "1000", "closedwon", 2_000)
    assert (won.current.revenue_cents, won.delta_cents) == (100_000, 10_000)
    assert first.delta_cents + won.delta_cents == won.current.revenue_cents


def test_deal_moving_to_closed_lost_gives_back_its_revenue() -> None:
    open_ = revalue(None, "500", "qualifiedtobuy", 1)
    lost = revalue(open_.current, "500", "closedlost", 2)
    assert lost.delta_cents == -20_000
    assert open_.delta_cents + lost.delta_cents == 0


def test_same_change_twice_has_zero_delta() -> None:
    won = revalue(None, "1000", "closedwon", 5)
    again = revalue(won.current, "1000", "closedwon", 5)
    assert again.delta_cents == 0


def test_out_of_order_older_change_is_ignored() -> None:
    won = revalue(None, "1000", "closedwon", 2_000)
    late = revalue(won.current, "1000", "appointmentscheduled", 1_000)
    assert late.delta_cents == 0
    assert late.current == DealRevenue(100_000, "closedwon", 2_000)


@given(
    steps=st.lists(
        st.tuples(st.integers(0, 10_000_000), st.sampled_from(sorted(DEFAULT_STAGE_PROBABILITIES))),
        min_size=1,
        max_size=20,
    )
)
def test_deltas_always_sum_to_current_revenue(steps: list[tuple[int, str]]) -> None:
    state: DealRevenue | None = None
    total = 0
    for at, (cents, stage) in enumerate(steps):
        change = revalue(state, Decimal(cents) / 100, stage, at)
        total += change.delta_cents
        state = change.current
    assert state is not None
    assert total == state.revenue_cents


def test_utm_attribution() -> None:
    assert attribute_by_utm(5_000, "ad-7", "camp-2") == [Credit("ad-7", "camp-2", 5_000)]
    assert attribute_by_utm(5_000, "  ", None) == [Credit(None, None, 5_000)]
    assert attribute_by_utm(5_000, None, "camp-2") == [Credit(None, "camp-2", 5_000)]


def test_last_touch_takes_the_latest_before_conversion() -> None:
    touches = [_touch("ad-1", 0), _touch("ad-3", 30), _touch("ad-2", 10)]
    assert last_touch(1_000, touches) == [Credit("ad-3", "camp-1", 1_000)]
    assert last_touch(1_000, touches, converted_at=T0 + timedelta(minutes=20)) == [Credit("ad-2", "camp-1", 1_000)]


def test_no_touchpoints_is_unattributed() -> None:
    assert last_touch(1_000, []) == [Credit(None, None, 1_000)]
    assert linear(1_000, [_touch("ad-1", 60)], converted_at=T0) == [Credit(None, None, 1_000)]


def test_linear_split_is_exact_and_merges_repeat_ads() -> None:
    touches = [_touch("ad-1", 0), _touch("ad-2", 10), _touch("ad-1", 20)]
    credits = linear(1_000, touches)
    assert credits == [Credit("ad-1", "camp-1", 667), Credit("ad-2", "camp-1", 333)]
    assert sum(c.revenue_cents for c in credits) == 1_000


def test_linear_keeps_campaigns_apart() -> None:
    credits = linear(100, [_touch("ad-1", 0, "a"), _touch("ad-1", 1, "b")])
    assert credits == [Credit("ad-1", "a", 50), Credit("ad-1", "b", 50)]


def test_split_evenly() -> None:
    assert split_evenly(10, 3) == [4, 3, 3]
    assert split_evenly(-10, 3) == [-4, -3, -3]
    assert split_evenly(0, 2) == [0, 0]
    with pytest.raises(ValueError):
        split_evenly(5, 0)


@given(total=st.integers(-(10**12), 10**12), parts=st.integers(1, 500))
def test_split_evenly_sums_exactly_and_is_fair(total: int, parts: int) -> None:
    shares = split_evenly(total, parts)
    assert len(shares) == parts
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1


touchpoints = st.lists(
    st.builds(
        Touchpoint,
        ad_id=st.sampled_from(["ad-1", "ad-2", "ad-3", "ad-4"]),
        campaign_id=st.sampled_from([None, "c1", "c2"]),
        at=st.integers(0, 10_000).map(lambda m: T0 + timedelta(minutes=m)),
    ),
    max_size=30,
)


@given(revenue=st.integers(-(10**9), 10**9), touches=touchpoints)
def test_every_model_credits_exactly_the_revenue(revenue: int, touches: list[Touchpoint]) -> None:
    for credits in (linear(revenue, touches), last_touch(revenue, touches)):
        assert sum(c.revenue_cents for c in credits) == revenue
        assert len({(c.ad_id, c.campaign_id) for c in credits}) == len(credits)


@given(old=st.integers(0, 10**9), new=st.integers(0, 10**9), touches=touchpoints)
def test_credit_delta_moves_running_totals_to_the_new_split(old: int, new: int, touches: list[Touchpoint]) -> None:
    before, after = linear(old, touches), linear(new, touches)
    running = {(c.ad_id, c.campaign_id): c.revenue_cents for c in before}
    for delta in credit_delta(before, after):
        key = (delta.ad_id, delta.campaign_id)
        running[key] = running.get(key, 0) + delta.revenue_cents
    expected = {(c.ad_id, c.campaign_id): c.revenue_cents for c in after}
    assert {k: v for k, v in running.items() if v} == {k: v for k, v in expected.items() if v}


def test_credit_delta_when_attribution_changes_ads() -> None:
    before = attribute_by_utm(90_000, "ad-1", "c")
    after = attribute_by_utm(100_000, "ad-2", "c")
    assert credit_delta(before, after) == [Credit("ad-1", "c", -90_000), Credit("ad-2", "c", 100_000)]
    assert credit_delta(after, after) == []
