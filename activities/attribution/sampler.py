"""The seed's BattleHardenedSampler as pure state a per-campaign workflow holds (light, deterministic, no I/O).

Each ad of a campaign has a Beta(alpha, beta) posterior over its conversion rate: the prior from
:class:`SamplerSettings` plus the successes and failures rewarded to it. Rewards carry a dedupe key and change
the posterior once per key. Allocations are Thompson sampling: N joint draws from the posteriors, the share of
draws each ad wins is the probability it is best, and the budget share is that probability lifted to an
exploration floor. Winners are ranked by a posterior lower credible bound, so an ad with three lucky
conversions does not outrank one with three hundred.

The state has no clock and no randomness of its own: :meth:`CampaignSampler.allocations` takes a
``random.Random`` (in a workflow, ``workflow.random()`` from a signal or update handler, never from a query,
whose calls are not replayed; or ``random.Random(seed)`` with a seed held in the state). It is a pydantic model,
so it travels as JSON through ``continue_as_new`` and the ``sampler show`` query unchanged.
"""

from __future__ import annotations

import math
import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from activities.attribution.beta import beta_quantile

DEDUPE_KEY_MAX_LENGTH = 128
"""Longest accepted dedupe key; callers pass a digest (a sha256 hex is 64) of the event's identity, not the event."""


class SamplerSettings(BaseModel):
    """The prior and the knobs of one campaign's sampler (the seed names the sampler, not its numbers)."""

    model_config = ConfigDict(frozen=True)

    prior_alpha: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    """Beta prior's pseudo-successes; 1/1 is the uniform prior: no opinion before evidence."""
    prior_beta: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    exploration_floor: float = Field(default=0.05, ge=0, le=1)
    """Least budget share any ad keeps, so a loser's posterior can still recover (capped at 1/ads)."""
    draws: int = Field(default=2000, ge=1, le=100_000)
    """Joint posterior draws per allocation: the probability-best estimate's error is about 1/(2 sqrt(draws))."""
    dedupe_window: int = Field(default=4096, ge=1, le=50_000)
    """How many recent dedupe keys the state remembers; see :class:`CampaignSampler`."""
    credibility: float = Field(default=0.95, gt=0, lt=1)
    """Winners are ranked by the posterior quantile at ``1 - credibility``."""


class ArmPosterior(BaseModel):
    """The evidence rewarded to one ad (the prior is added by the sampler)."""

    successes: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    failures: float = Field(default=0.0, ge=0, allow_inf_nan=False)

    @property
    def trials(self) -> float:
        """Evidence seen: successes plus failures (fractional under multi-touch attribution)."""
        return self.successes + self.failures


class Allocation(BaseModel):
    """One Thompson-sampling allocation: each ad's probability of being best and its budget share."""

    model_config = ConfigDict(frozen=True)

    draws: int
    p_best: dict[str, float]
    shares: dict[str, float]


class Winner(BaseModel):
    """An ad ranked by its posterior lower credible bound."""

    model_config = ConfigDict(frozen=True)

    ad_id: str
    lower_bound: float
    mean: float
    trials: float


class CampaignSampler(BaseModel):
    """One campaign's posteriors, recent dedupe keys and last chosen allocation.

    Dedupe window: the app's inbox already drops redelivered webhooks by their unique key, so the keys here
    only guard against the same reward reaching the workflow twice — an activity or signal retried after the
    workflow applied it, or a batch replayed after a worker died. Those repeats arrive within a few batches of
    the original, so 4,096 keys (≥ 40 batches of HubSpot's 100 events) is ample, and at ≤ 128 characters per
    key the carried list stays under ~0.5 MB, a quarter of Temporal's 2 MB payload limit for the
    ``continue_as_new`` input. The oldest key is forgotten first.
    """

    campaign_id: str
    settings: SamplerSettings = Field(default_factory=SamplerSettings)
    arms: dict[str, ArmPosterior] = Field(default_factory=dict)
    recent_keys: list[str] = Field(default_factory=list)
    """Dedupe keys of applied rewards, oldest first, at most ``settings.dedupe_window`` of them."""
    rewards_applied: int = 0
    duplicates_ignored: int = 0
    allocation: Allocation | None = None
    """The allocation last chosen by :meth:`allocate` (what the ``allocations`` query returns)."""

    _seen: set[str] = PrivateAttr(default_factory=set)

    def model_post_init(self, context: Any, /) -> None:
        """Trim the carried keys to the window and index them for O(1) lookups."""
        del self.recent_keys[: max(0, len(self.recent_keys) - self.settings.dedupe_window)]
        self._seen = set(self.recent_keys)

    def add_ad(self, ad_id: str) -> None:
        """Register an ad with the prior alone (a no-op for a known ad)."""
        if not ad_id:
            raise ValueError("ad_id must not be empty")
        self.arms.setdefault(ad_id, ArmPosterior())

    def posterior(self, ad_id: str) -> tuple[float, float]:
        """The ad's (alpha, beta): the prior plus its rewarded successes and failures."""
        arm = self.arms[ad_id]
        return self.settings.prior_alpha + arm.successes, self.settings.prior_beta + arm.failures

    def mean(self, ad_id: str) -> float:
        """The ad's posterior mean conversion rate."""
        alpha, beta = self.posterior(ad_id)
        return alpha / (alpha + beta)

    def reward(self, ad_id: str, successes: float, failures: float, dedupe_key: str) -> bool:
        """Add evidence to an ad once per ``dedupe_key``; ``False`` when the key was already applied."""
        if not dedupe_key or len(dedupe_key) > DEDUPE_KEY_MAX_LENGTH:
            raise ValueError(f"dedupe_key must have 1 to {DEDUPE_KEY_MAX_LENGTH} characters")
        for name, value in (("successes", successes), ("failures", failures)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and non-negative, got {value}")
        if dedupe_key in self._seen:
            self.duplicates_ignored += 1
            return False
        self.add_ad(ad_id)
        arm = self.arms[ad_id]
        arm.successes += successes
        arm.failures += failures
        self._remember(dedupe_key)
        self.rewards_applied += 1
        return True

    def _remember(self, key: str) -> None:
        self.recent_keys.append(key)
        self._seen.add(key)
        while len(self.recent_keys) > self.settings.dedupe_window:
            self._seen.discard(self.recent_keys.pop(0))

    def allocations(self, rng: random.Random, draws: int | None = None) -> Allocation:
        """Thompson sampling: each ad's share of ``draws`` joint posterior draws it wins, and its budget share."""
        n_draws = self.settings.draws if draws is None else draws
        if n_draws < 1:
            raise ValueError(f"draws must be at least 1, got {n_draws}")
        ad_ids = sorted(self.arms)  # a fixed order, so a fixed seed gives the same draws whatever the history
        if not ad_ids:
            return Allocation(draws=n_draws, p_best={}, shares={})
        params = [self.posterior(ad_id) for ad_id in ad_ids]
        wins = [0] * len(ad_ids)
        for _ in range(n_draws):
            samples = [rng.betavariate(alpha, beta) for alpha, beta in params]
            wins[max(range(len(samples)), key=samples.__getitem__)] += 1
        p_best = {ad_id: won / n_draws for ad_id, won in zip(ad_ids, wins, strict=True)}
        floor = min(self.settings.exploration_floor, 1.0 / len(ad_ids))
        spread = 1.0 - floor * len(ad_ids)
        shares = {ad_id: floor + spread * p for ad_id, p in p_best.items()}
        return Allocation(draws=n_draws, p_best=p_best, shares=shares)

    def allocate(self, rng: random.Random, draws: int | None = None) -> Allocation:
        """Compute an allocation and keep it as the campaign's current one."""
        self.allocation = self.allocations(rng, draws)
        return self.allocation

    def lower_bound(self, ad_id: str, credibility: float | None = None) -> float:
        """The one-sided posterior lower credible bound: P(rate >= bound) = ``credibility``."""
        level = self.settings.credibility if credibility is None else credibility
        if not 0.0 < level < 1.0:
            raise ValueError(f"credibility must lie strictly between 0 and 1, got {level}")
        alpha, beta = self.posterior(ad_id)
        return beta_quantile(1.0 - level, alpha, beta)

    def winners(self, k: int, min_trials: float = 0.0, credibility: float | None = None) -> list[Winner]:
        """Up to ``k`` ads with at least ``min_trials`` of evidence, best lower credible bound first."""
        if k < 0:
            raise ValueError(f"k must not be negative, got {k}")
        ranked = [
            Winner(
                ad_id=ad_id,
                lower_bound=self.lower_bound(ad_id, credibility),
                mean=self.mean(ad_id),
                trials=arm.trials,
            )
            for ad_id, arm in self.arms.items()
            if arm.trials >= min_trials
        ]
        ranked.sort(key=lambda w: (-w.lower_bound, w.ad_id))
        return ranked[:k]
