"""The attribution pipeline's tables: portals, ads and their metrics, the webhook inbox, deals and what they credit,
conversions, touchpoints, fatigue approvals with their audit trail, and each owner's current winner index.

Everything an owner sees carries ``user_id``. The inbox is the durable acceptance of a webhook: one row per distinct
event (``dedupe_key`` is unique), written before the API answers 200 and applied once by the portal's ingest
workflow. Revenue is never a running sum: a deal holds its current revenue and its current credits per attribution
model, replaced whenever it is revalued, so totals are sums over deals and cannot count a deal twice.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from conveyor.db import Base
from conveyor.models import utcnow


class HubSpotPortal(Base):
    """A HubSpot portal (account) connected to its owner: its deliveries' events are that owner's."""

    __tablename__ = "hubspot_portals"

    portal_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Ad(Base):
    """An ad of a campaign, with its creative (what the winner index embeds) and its fatigue verdict."""

    __tablename__ = "ads"
    __table_args__ = (UniqueConstraint("user_id", "ad_id", name="uq_ads_user_ad"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    ad_id: Mapped[str] = mapped_column(String(100))
    campaign_id: Mapped[str] = mapped_column(String(100), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    hook: Mapped[str] = mapped_column(Text, default="")
    script: Mapped[str] = mapped_column(Text, default="")
    offer: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | paused | rotated
    fatigue_level: Mapped[str] = mapped_column(String(16), default="none")  # none | warning | critical
    fatigue_reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    fatigue_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class AdMetric(Base):
    """One ad's delivery on one day (a repost of the day replaces it)."""

    __tablename__ = "ad_metrics"
    __table_args__ = (UniqueConstraint("user_id", "ad_id", "day", name="uq_ad_metrics_user_ad_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    ad_id: Mapped[str] = mapped_column(String(100))
    day: Mapped[date] = mapped_column(Date)
    impressions: Mapped[int] = mapped_column(BigInteger, default=0)
    clicks: Mapped[int] = mapped_column(BigInteger, default=0)
    spend: Mapped[float] = mapped_column(Float, default=0.0)
    frequency: Mapped[float] = mapped_column(Float, default=0.0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class WebhookEvent(Base):
    """One distinct HubSpot event, durably accepted: ``pending`` until its portal's ingest applies it, then
    ``processed`` (or ``failed`` naming why, e.g. a stage without a probability); ``ignored`` on arrival for a
    subscription type the pipeline does not process."""

    __tablename__ = "webhook_inbox"
    __table_args__ = (Index("ix_webhook_inbox_portal_status_id", "portal_id", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    portal_id: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    subscription_type: Mapped[str] = mapped_column(String(100))
    object_id: Mapped[int] = mapped_column(BigInteger)
    occurred_at_ms: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | processed | ignored | failed
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Deal(Base):
    """A HubSpot deal as its events left it: current stage, amount and revenue, and how it is attributed."""

    __tablename__ = "deals"
    __table_args__ = (UniqueConstraint("portal_id", "deal_id", name="uq_deals_portal_deal"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    portal_id: Mapped[int] = mapped_column(BigInteger)
    deal_id: Mapped[str] = mapped_column(String(32))
    stage: Mapped[str] = mapped_column(String(100), default="")
    amount: Mapped[str] = mapped_column(String(40), default="")
    currency: Mapped[str | None] = mapped_column(String(8), nullable=True)
    revenue_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    as_of_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    utm_content: Mapped[str | None] = mapped_column(String(200), nullable=True)
    utm_campaign: Mapped[str | None] = mapped_column(String(200), nullable=True)
    contact_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    model: Mapped[str] = mapped_column(String(16), default="none")  # utm | last_touch | none: what ads are paid by
    won_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class DealCredit(Base):
    """The part of a deal's current revenue one ad is credited with under one model (``ad_id`` NULL: unattributed).

    Models: ``utm`` (the deal's ``utm_content``), ``last_touch`` and ``linear`` (its contact's touchpoints). A deal's
    credits under a model always sum to its revenue; they are replaced, never added to, when it is revalued.
    """

    __tablename__ = "deal_credits"
    __table_args__ = (Index("ix_deal_credits_user_model_ad", "user_id", "model", "ad_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deal_pk: Mapped[int] = mapped_column(ForeignKey("deals.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(16))
    ad_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    campaign_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    revenue_cents: Mapped[int] = mapped_column(BigInteger, default=0)


class Conversion(Base):
    """One distinct deal event applied: the ad credited (NULL: unattributed) and the deal's revenue after it."""

    __tablename__ = "conversions"
    __table_args__ = (
        Index("ix_conversions_user_ad", "user_id", "ad_id"),
        Index("ix_conversions_portal_reward_pending", "portal_id", "reward_pending"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_key: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    portal_id: Mapped[int] = mapped_column(BigInteger)
    deal_id: Mapped[str] = mapped_column(String(32))
    ad_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    campaign_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    utm_content: Mapped[str | None] = mapped_column(String(200), nullable=True)
    """The ad id the deal named, kept even when no such ad exists (the conversion is then unattributed)."""
    model: Mapped[str] = mapped_column(String(16), default="none")
    stage: Mapped[str] = mapped_column(String(100), default="")
    revenue_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    delta_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    reward_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    """The deal was won by this event and its ad's sampler has not been told yet (an outbox: set in the batch's
    transaction, cleared once the sampler got the reward, so a worker dying in between loses no reward)."""


class Touchpoint(Base):
    """One ad interaction of a CRM contact (multi-touch attribution of that contact's deals)."""

    __tablename__ = "touchpoints"
    __table_args__ = (
        UniqueConstraint("user_id", "contact_id", "ad_id", "at", name="uq_touchpoints_user_contact_ad_at"),
        Index("ix_touchpoints_user_contact", "user_id", "contact_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    contact_id: Mapped[str] = mapped_column(String(64))
    ad_id: Mapped[str] = mapped_column(String(100))
    campaign_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Approval(Base):
    """A fatigue action (pause or rotate an ad) waiting for a human, and how it ended.

    ``pending`` → ``executed`` (approved; the action ran once) | ``rejected`` | ``expired`` (no decision within the
    timeout). ``open_key`` is set only while pending and is unique, so an ad has at most one open approval.
    """

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    ad_id: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(16))  # pause | rotate
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    open_key: Mapped[str | None] = mapped_column(String(120), nullable=True, unique=True)
    workflow_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    executed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditEntry(Base):
    """Who did what to an ad, when (an approved fatigue action, a rejection, an expiry)."""

    __tablename__ = "attribution_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    approval_id: Mapped[int | None] = mapped_column(ForeignKey("approvals.id", ondelete="SET NULL"), nullable=True)
    ad_id: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CreativeIndex(Base):
    """An owner's current winner index: the version whose FAISS file and metadata searches read."""

    __tablename__ = "creative_indexes"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    blob_prefix: Mapped[str] = mapped_column(String(200))
    vectors: Mapped[int] = mapped_column(Integer, default=0)
    built_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
