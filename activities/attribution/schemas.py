"""Inputs and outputs of the attribution workflows and activities (light: pydantic only)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from activities.attribution.sampler import Allocation, CampaignSampler

# --- ingest -------------------------------------------------------------------------------------------------------


class IngestState(BaseModel):
    """What a portal's ingest workflow carries across ``continue_as_new``."""

    portal_id: int
    batch_size: int = Field(500, ge=1)
    """Most events one batch applies (``CONVEYOR_ATTRIBUTION_BATCH_SIZE`` when the API started the workflow)."""
    batches: int = 0
    processed: int = 0
    failed: int = 0
    generation: int = 0


class BatchRequest(BaseModel):
    """Apply up to ``limit`` of a portal's pending inbox events, oldest first, in one transaction."""

    portal_id: int
    limit: int = Field(500, ge=1)


class Reward(BaseModel):
    """Evidence for one ad of a campaign's sampler, applied once per ``key``."""

    ad_id: str
    successes: float = 0.0
    failures: float = 0.0
    key: str


class RewardBatch(BaseModel):
    """Rewards for one owner's campaign; ``ads`` are the campaign's known ads (registered with the prior)."""

    owner: int
    campaign_id: str
    ads: list[str] = Field(default_factory=list)
    rewards: list[Reward] = Field(default_factory=list)


class BatchResult(BaseModel):
    """What one batch applied: events processed and failed, what is still pending, the sampler rewards it earned."""

    processed: int = 0
    failed: int = 0
    remaining: int = 0
    rewards: list[RewardBatch] = Field(default_factory=list)


class RewardsSent(BaseModel):
    """Sampler workflows the rewards were delivered to."""

    campaigns: int = 0
    rewards: int = 0


# --- sampler ------------------------------------------------------------------------------------------------------


class SamplerInput(BaseModel):
    """A campaign sampler's start (``state`` carried over by ``continue_as_new``)."""

    owner: int
    campaign_id: str
    state: CampaignSampler | None = None


class RewardsApplied(BaseModel):
    """The answer to a reward update: how many rewards changed the posteriors, and how many were repeats."""

    applied: int
    duplicates: int
    allocation: Allocation | None = None


class ArmView(BaseModel):
    """One ad's posterior as ``sampler show`` prints it."""

    ad_id: str
    alpha: float
    beta: float
    mean: float
    lower_bound: float
    trials: float


class SamplerView(BaseModel):
    """A campaign's sampler: posteriors, the allocation last chosen, and reward counts."""

    owner: int
    campaign_id: str
    arms: list[ArmView]
    allocation: Allocation | None
    rewards_applied: int
    duplicates_ignored: int


# --- fatigue and approvals ----------------------------------------------------------------------------------------


class ApprovalRequest(BaseModel):
    """An approval the fatigue monitor opened: the action a human must approve for a critical ad."""

    approval_id: int
    user_id: int
    ad_id: str
    action: Literal["pause", "rotate"]
    reasons: list[str] = Field(default_factory=list)
    timeout_s: float


class FatigueReport(BaseModel):
    """One fatigue run: ads assessed, flagged per level, and the approvals it opened."""

    assessed: int = 0
    warning: int = 0
    critical: int = 0
    approvals: list[ApprovalRequest] = Field(default_factory=list)


class Decision(BaseModel):
    """A human's answer to an approval."""

    approve: bool
    by: str = Field("web-ui", min_length=1, max_length=100)
    note: str = Field("", max_length=500)


class SignalDecision(BaseModel):
    """The input of the ``approve`` / ``reject`` signals (the Web UI sends JSON such as ``{"by": "ana"}``)."""

    by: str = Field("web-ui", min_length=1, max_length=100)
    note: str = Field("", max_length=500)


ApprovalStatus = Literal["pending", "executed", "rejected", "expired"]


class ApprovalClose(BaseModel):
    """How an approval ended, recorded once with its audit entry."""

    approval_id: int
    status: ApprovalStatus
    by: str
    note: str = ""


class ApprovalOutcome(BaseModel):
    """An approval's state (the workflow's query and result)."""

    approval_id: int
    ad_id: str
    action: str
    status: ApprovalStatus
    decided_by: str | None = None
    decided_at: datetime | None = None


# --- winner index -------------------------------------------------------------------------------------------------


class WinnerAd(BaseModel):
    """A winning ad: its posterior lower credible bound, mean and evidence."""

    ad_id: str
    campaign_id: str
    lower_bound: float
    mean: float
    trials: float


class OwnerWinners(BaseModel):
    """One owner's winners across its campaigns."""

    user_id: int
    winners: list[WinnerAd]


class WinnerSets(BaseModel):
    """Every owner's winners (what the index run embeds)."""

    owners: list[OwnerWinners] = Field(default_factory=list)


class IndexBuilt(BaseModel):
    """An owner's index switched to a new version."""

    user_id: int
    version: int
    vectors: int
    blob_prefix: str


class IndexReport(BaseModel):
    """One index run: the indexes built."""

    built: list[IndexBuilt] = Field(default_factory=list)


class SimilarRequest(BaseModel):
    """Creatives of an owner's winners nearest a text."""

    user_id: int
    text: str = Field(min_length=1, max_length=2000)
    k: int = Field(5, ge=1, le=50)


class SimilarCreative(BaseModel):
    """A winner's creative and its cosine similarity to the query."""

    ad_id: str
    campaign_id: str
    name: str
    hook: str
    offer: str
    tags: list[str]
    score: float
    lower_bound: float


class SimilarResult(BaseModel):
    """The nearest winners, best first, from index ``version`` (0: the owner has no index yet)."""

    version: int
    results: list[SimilarCreative]


class RewardDelivery(BaseModel):
    """The rewards one ingest batch earned, for the campaigns' sampler workflows."""

    batches: list[RewardBatch] = Field(default_factory=list)
