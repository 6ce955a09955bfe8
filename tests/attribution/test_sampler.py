"""The campaign sampler: exact posteriors, once-per-key rewards, stable Thompson allocations, credible bounds."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activities.attribution.beta import beta_cdf, beta_quantile
from activities.attribution.sampler import CampaignSampler, SamplerSettings


def _binomial_tail(x: float, a: int, b: int) -> float:
    """I_x(a, b) for integer a, b: P(Binomial(a + b - 1, x) >= a), an exact identity."""
    n = a + b - 1
    return sum(math.comb(n, j) * x**j * (1 - x) ** (n - j) for j in range(a, n + 1))


def _sampler(**settings_: float) -> CampaignSampler:
    return CampaignSampler(campaign_id="c1", settings=SamplerSettings.model_validate(settings_))


# --- the Beta distribution ------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.001, 0.025, 0.05, 0.5, 0.95, 0.999])
def test_beta_quantile_matches_closed_forms(p: float) -> None:
    assert beta_quantile(p, 1, 1) == pytest.approx(p, abs=1e-12)
    assert beta_quantile(p, 3, 1) == pytest.approx(p ** (1 / 3), abs=1e-12)
    assert beta_quantile(p, 1, 4) == pytest.approx(1 - (1 - p) ** (1 / 4), abs=1e-12)
    # Beta(1/2, 1/2) is the arcsine law: F(x) = (2/pi) asin(sqrt(x)), so x = sin(pi p / 2)^2
    assert beta_quantile(p, 0.5, 0.5) == pytest.approx(math.sin(math.pi * p / 2) ** 2, abs=1e-12)


def test_beta_cdf_known_values() -> None:
    # Beta(2, 2): F(x) = 3x^2 - 2x^3
    for x in (0.1, 0.3, 0.5, 0.8):
        assert beta_cdf(x, 2, 2) == pytest.approx(3 * x**2 - 2 * x**3, abs=1e-14)
    assert beta_cdf(0.0, 5, 5) == 0.0
    assert beta_cdf(1.0, 5, 5) == 1.0
    # Large evidence: 10,000 successes in 1,000,000 trials is centred on 1 % with sd ~1e-4
    assert beta_cdf(0.01, 10_001, 990_001) == pytest.approx(0.5, abs=0.01)


@settings(max_examples=200, deadline=None)
@given(
    x=st.floats(min_value=0.001, max_value=0.999),
    a=st.integers(min_value=1, max_value=60),
    b=st.integers(min_value=1, max_value=60),
)
def test_beta_cdf_equals_binomial_tail_for_integer_shapes(x: float, a: int, b: int) -> None:
    assert beta_cdf(x, a, b) == pytest.approx(_binomial_tail(x, a, b), abs=1e-11)


@settings(max_examples=200, deadline=None)
@given(
    p=st.floats(min_value=1e-6, max_value=1 - 1e-6),
    a=st.floats(min_value=0.2, max_value=500),
    b=st.floats(min_value=0.2, max_value=500),
)
def test_beta_quantile_inverts_the_cdf(p: float, a: float, b: float) -> None:
    """The CDF at the quantile is p, or p falls between the CDF at the neighbouring floats (a steep tail)."""
    q = beta_quantile(p, a, b)
    below, above = beta_cdf(math.nextafter(q, 0.0), a, b), beta_cdf(math.nextafter(q, 1.0), a, b)
    assert beta_cdf(q, a, b) == pytest.approx(p, abs=1e-9) or below - 1e-12 <= p <= above + 1e-12


def test_beta_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        beta_cdf(0.5, 0, 1)
    with pytest.raises(ValueError):
        beta_quantile(1.5, 1, 1)


# --- posteriors and rewards -----------------------------------------------------------------------------


def test_posteriors_after_a_known_reward_sequence() -> None:
    sampler = _sampler(prior_alpha=2.0, prior_beta=3.0)
    sampler.add_ad("idle")
    assert sampler.reward("a", 1, 0, "k1")
    assert sampler.reward("a", 0, 1, "k2")
    assert sampler.reward("b", 3, 7, "k3")
    assert sampler.reward("a", 0.5, 0, "k4")  # linear multi-touch credit is fractional
    assert sampler.reward("a", 2, 5, "k5")
    assert sampler.posterior("a") == (2.0 + 3.5, 3.0 + 6.0)
    assert sampler.posterior("b") == (5.0, 10.0)
    assert sampler.posterior("idle") == (2.0, 3.0)
    assert sampler.mean("b") == pytest.approx(1 / 3)
    assert sampler.rewards_applied == 5


def test_duplicate_keys_are_ignored() -> None:
    sampler = _sampler()
    assert sampler.reward("a", 1, 0, "event-1")
    assert not sampler.reward("a", 1, 0, "event-1")
    assert not sampler.reward("b", 5, 0, "event-1")  # the key, not the ad, identifies the event
    assert sampler.posterior("a") == (2.0, 1.0)
    assert "b" not in sampler.arms
    assert (sampler.rewards_applied, sampler.duplicates_ignored) == (1, 2)


@settings(max_examples=50, deadline=None)
@given(events=st.lists(st.tuples(st.sampled_from("abc"), st.booleans(), st.integers(0, 30)), max_size=80))
def test_redeliveries_change_nothing(events: list[tuple[str, bool, int]]) -> None:
    """Applying a stream with every event repeated equals applying each distinct event once."""
    once, twice = _sampler(), _sampler()
    for ad, converted, key in events:
        once.reward(ad, float(converted), float(not converted), f"k{key}")
        twice.reward(ad, float(converted), float(not converted), f"k{key}")
        twice.reward(ad, float(converted), float(not converted), f"k{key}")
    assert once.arms == twice.arms
    assert once.rewards_applied == twice.rewards_applied == len({key for _, _, key in events})


def test_dedupe_window_forgets_the_oldest_keys_first() -> None:
    sampler = _sampler(dedupe_window=3)
    for i in range(5):
        sampler.reward("a", 1, 0, f"k{i}")
    assert sampler.recent_keys == ["k2", "k3", "k4"]
    assert not sampler.reward("a", 1, 0, "k4")
    assert sampler.reward("a", 1, 0, "k0")  # beyond the window: the app's inbox is the long-term guard


@pytest.mark.parametrize(
    ("ad", "successes", "failures", "key"),
    [("a", -1, 0, "k"), ("a", 0, math.inf, "k"), ("a", math.nan, 0, "k"), ("a", 1, 0, ""), ("a", 1, 0, "x" * 129)],
)
def test_bad_rewards_are_refused(ad: str, successes: float, failures: float, key: str) -> None:
    sampler = _sampler()
    with pytest.raises(ValueError):
        sampler.reward(ad, successes, failures, key)
    assert sampler.arms == {} and sampler.recent_keys == []


def test_state_round_trips_through_json_and_keeps_deduplicating() -> None:
    sampler = _sampler(prior_alpha=1.5, dedupe_window=10)
    sampler.reward("a", 3, 1, "k1")
    sampler.reward("b", 0, 4, "k2")
    sampler.allocate(random.Random(7), draws=200)
    restored = CampaignSampler.model_validate_json(sampler.model_dump_json())
    assert restored == sampler
    assert restored.model_dump() == sampler.model_dump()
    assert not restored.reward("a", 3, 1, "k1")  # the carried keys survive continue-as-new
    assert restored.allocations(random.Random(1), 300) == sampler.allocations(random.Random(1), 300)


def test_carried_keys_beyond_the_window_are_trimmed_on_load() -> None:
    restored = CampaignSampler(
        campaign_id="c", settings=SamplerSettings(dedupe_window=2), recent_keys=["k1", "k2", "k3"]
    )
    assert restored.recent_keys == ["k2", "k3"]
    assert restored.reward("a", 1, 0, "k1")
    assert not restored.reward("a", 1, 0, "k3")


# --- allocations ----------------------------------------------------------------------------------------


def _three_ads() -> CampaignSampler:
    sampler = _sampler(exploration_floor=0.05)
    sampler.reward("strong", 30, 70, "s")
    sampler.reward("weak", 5, 95, "w")
    sampler.reward("newer", 2, 18, "n")
    return sampler


def test_allocations_are_identical_for_the_same_seed() -> None:
    first = _three_ads().allocations(random.Random(42), draws=1000)
    second = _three_ads().allocations(random.Random(42), draws=1000)
    assert first == second
    # insertion order of the ads does not matter: draws follow the sorted ad ids
    reordered = _sampler(exploration_floor=0.05)
    reordered.reward("newer", 2, 18, "n")
    reordered.reward("weak", 5, 95, "w")
    reordered.reward("strong", 30, 70, "s")
    assert reordered.allocations(random.Random(42), draws=1000) == first


def test_the_clearly_better_ad_gets_most_of_the_allocation() -> None:
    allocation = _three_ads().allocations(random.Random(3), draws=4000)
    assert sum(allocation.p_best.values()) == pytest.approx(1.0)
    assert sum(allocation.shares.values()) == pytest.approx(1.0)
    assert allocation.p_best["strong"] > 0.95
    assert allocation.p_best["weak"] < 0.01
    assert allocation.shares["strong"] > 0.85  # 0.05 + 0.85 * p_best
    assert allocation.shares["weak"] == pytest.approx(0.05, abs=0.01)  # the exploration floor keeps it alive


def test_an_untried_ad_is_explored() -> None:
    """A flat prior beats a posterior centred on 30 % in about 1 - 0.30 of draws: Thompson explores it."""
    sampler = _three_ads()
    sampler.add_ad("untried")
    allocation = sampler.allocations(random.Random(5), draws=4000)
    assert allocation.p_best["untried"] == pytest.approx(1 - 31 / 102, abs=0.05)


@settings(max_examples=40, deadline=None)
@given(
    arms=st.dictionaries(
        st.text("abcdef", min_size=1, max_size=3), st.tuples(st.integers(0, 50), st.integers(0, 50)), max_size=6
    ),
    floor=st.floats(0, 1),
    seed=st.integers(0, 2**32),
)
def test_allocations_are_distributions_above_the_floor(
    arms: dict[str, tuple[int, int]], floor: float, seed: int
) -> None:
    sampler = _sampler(exploration_floor=floor)
    for ad, (wins, losses) in arms.items():
        sampler.reward(ad, wins, losses, f"key-{ad}")
    allocation = sampler.allocate(random.Random(seed), draws=100)
    assert set(allocation.shares) == set(arms)
    assert sampler.allocation == allocation
    if arms:
        assert sum(allocation.p_best.values()) == pytest.approx(1.0)
        assert sum(allocation.shares.values()) == pytest.approx(1.0)
        assert min(allocation.shares.values()) >= min(floor, 1 / len(arms)) - 1e-12


def test_allocations_need_a_draw() -> None:
    with pytest.raises(ValueError):
        _three_ads().allocations(random.Random(0), draws=0)


# --- lower bounds and winners ---------------------------------------------------------------------------


def test_lower_bound_increases_with_evidence_at_the_same_rate() -> None:
    sampler = _sampler()
    bounds = []
    for i, trials in enumerate((10, 100, 1000, 10_000)):
        ad = f"ad{i}"
        sampler.reward(ad, trials * 0.2, trials * 0.8, f"k{i}")
        bounds.append(sampler.lower_bound(ad))
    assert bounds == sorted(bounds) and len(set(bounds)) == 4
    assert all(bound < 0.2 for bound in bounds)
    assert bounds[-1] > 0.19  # 10,000 trials pin the rate down
    # uniform prior, no evidence: the 5 % quantile of Beta(1, 1) is 0.05
    sampler.add_ad("fresh")
    assert sampler.lower_bound("fresh") == pytest.approx(0.05)
    assert sampler.lower_bound("fresh", credibility=0.5) == pytest.approx(0.5)


def test_winners_prefer_proven_ads_and_respect_min_trials() -> None:
    sampler = _sampler()
    sampler.reward("lucky", 3, 0, "k1")  # mean 0.8 on three trials
    sampler.reward("proven", 400, 200, "k2")  # mean 0.67 on six hundred
    sampler.reward("poor", 10, 290, "k3")
    assert sampler.mean("lucky") > sampler.mean("proven")
    ranked = sampler.winners(k=3)
    assert [w.ad_id for w in ranked] == ["proven", "lucky", "poor"]
    assert ranked[0].trials == 600 and ranked[0].lower_bound == pytest.approx(sampler.lower_bound("proven"))
    assert [w.ad_id for w in sampler.winners(k=1)] == ["proven"]
    assert [w.ad_id for w in sampler.winners(k=5, min_trials=100)] == ["proven", "poor"]
    assert sampler.winners(k=0) == []
