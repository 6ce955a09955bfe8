"""attribution: HubSpot portals, ads and daily metrics, the webhook inbox, deals with their credits, conversions
(with their reward outbox), touchpoints, fatigue approvals with their audit trail, and each owner's winner index

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    """Create the attribution pipeline's tables."""
    op.create_table(
        "ad_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("ad_id", sa.String(length=100), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("impressions", sa.BigInteger(), nullable=False),
        sa.Column("clicks", sa.BigInteger(), nullable=False),
        sa.Column("spend", sa.Float(), nullable=False),
        sa.Column("frequency", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "ad_id", "day", name="uq_ad_metrics_user_ad_day"),
    )
    op.create_index(op.f("ix_ad_metrics_user_id"), "ad_metrics", ["user_id"], unique=False)
    op.create_table(
        "ads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("ad_id", sa.String(length=100), nullable=False),
        sa.Column("campaign_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("hook", sa.Text(), nullable=False),
        sa.Column("script", sa.Text(), nullable=False),
        sa.Column("offer", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("fatigue_level", sa.String(length=16), nullable=False),
        sa.Column("fatigue_reasons", sa.JSON(), nullable=False),
        sa.Column("fatigue_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "ad_id", name="uq_ads_user_ad"),
    )
    op.create_index(op.f("ix_ads_campaign_id"), "ads", ["campaign_id"], unique=False)
    op.create_index(op.f("ix_ads_user_id"), "ads", ["user_id"], unique=False)
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("ad_id", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("open_key", sa.String(length=120), nullable=True),
        sa.Column("workflow_id", sa.String(length=100), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("open_key"),
    )
    op.create_index(op.f("ix_approvals_user_id"), "approvals", ["user_id"], unique=False)
    op.create_table(
        "conversions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_key", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("portal_id", sa.BigInteger(), nullable=False),
        sa.Column("deal_id", sa.String(length=32), nullable=False),
        sa.Column("ad_id", sa.String(length=100), nullable=True),
        sa.Column("campaign_id", sa.String(length=100), nullable=True),
        sa.Column("utm_content", sa.String(length=200), nullable=True),
        sa.Column("model", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=100), nullable=False),
        sa.Column("revenue_cents", sa.BigInteger(), nullable=False),
        sa.Column("delta_cents", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reward_pending", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_key"),
    )
    op.create_index(
        "ix_conversions_portal_reward_pending", "conversions", ["portal_id", "reward_pending"], unique=False
    )
    op.create_index("ix_conversions_user_ad", "conversions", ["user_id", "ad_id"], unique=False)
    op.create_index(op.f("ix_conversions_user_id"), "conversions", ["user_id"], unique=False)
    op.create_table(
        "creative_indexes",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("blob_prefix", sa.String(length=200), nullable=False),
        sa.Column("vectors", sa.Integer(), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "deals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("portal_id", sa.BigInteger(), nullable=False),
        sa.Column("deal_id", sa.String(length=32), nullable=False),
        sa.Column("stage", sa.String(length=100), nullable=False),
        sa.Column("amount", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=True),
        sa.Column("revenue_cents", sa.BigInteger(), nullable=False),
        sa.Column("as_of_ms", sa.BigInteger(), nullable=False),
        sa.Column("utm_content", sa.String(length=200), nullable=True),
        sa.Column("utm_campaign", sa.String(length=200), nullable=True),
        sa.Column("contact_ids", sa.JSON(), nullable=False),
        sa.Column("model", sa.String(length=16), nullable=False),
        sa.Column("won_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("portal_id", "deal_id", name="uq_deals_portal_deal"),
    )
    op.create_index(op.f("ix_deals_user_id"), "deals", ["user_id"], unique=False)
    op.create_table(
        "hubspot_portals",
        sa.Column("portal_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("portal_id"),
    )
    op.create_index(op.f("ix_hubspot_portals_user_id"), "hubspot_portals", ["user_id"], unique=False)
    op.create_table(
        "touchpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.Column("ad_id", sa.String(length=100), nullable=False),
        sa.Column("campaign_id", sa.String(length=100), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "contact_id", "ad_id", "at", name="uq_touchpoints_user_contact_ad_at"),
    )
    op.create_index("ix_touchpoints_user_contact", "touchpoints", ["user_id", "contact_id"], unique=False)
    op.create_table(
        "webhook_inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.Column("portal_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("subscription_type", sa.String(length=100), nullable=False),
        sa.Column("object_id", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    op.create_index("ix_webhook_inbox_portal_status_id", "webhook_inbox", ["portal_id", "status", "id"], unique=False)
    op.create_index(op.f("ix_webhook_inbox_user_id"), "webhook_inbox", ["user_id"], unique=False)
    op.create_table(
        "attribution_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("approval_id", sa.Integer(), nullable=True),
        sa.Column("ad_id", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["approval_id"], ["approvals.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_attribution_audit_user_id"), "attribution_audit", ["user_id"], unique=False)
    op.create_table(
        "deal_credits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deal_pk", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=16), nullable=False),
        sa.Column("ad_id", sa.String(length=100), nullable=True),
        sa.Column("campaign_id", sa.String(length=100), nullable=True),
        sa.Column("revenue_cents", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["deal_pk"], ["deals.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_deal_credits_deal_pk"), "deal_credits", ["deal_pk"], unique=False)
    op.create_index("ix_deal_credits_user_model_ad", "deal_credits", ["user_id", "model", "ad_id"], unique=False)


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_deal_credits_user_model_ad", table_name="deal_credits")
    op.drop_index(op.f("ix_deal_credits_deal_pk"), table_name="deal_credits")
    op.drop_table("deal_credits")
    op.drop_index(op.f("ix_attribution_audit_user_id"), table_name="attribution_audit")
    op.drop_table("attribution_audit")
    op.drop_index(op.f("ix_webhook_inbox_user_id"), table_name="webhook_inbox")
    op.drop_index("ix_webhook_inbox_portal_status_id", table_name="webhook_inbox")
    op.drop_table("webhook_inbox")
    op.drop_index("ix_touchpoints_user_contact", table_name="touchpoints")
    op.drop_table("touchpoints")
    op.drop_index(op.f("ix_hubspot_portals_user_id"), table_name="hubspot_portals")
    op.drop_table("hubspot_portals")
    op.drop_index(op.f("ix_deals_user_id"), table_name="deals")
    op.drop_table("deals")
    op.drop_table("creative_indexes")
    op.drop_index(op.f("ix_conversions_user_id"), table_name="conversions")
    op.drop_index("ix_conversions_user_ad", table_name="conversions")
    op.drop_index("ix_conversions_portal_reward_pending", table_name="conversions")
    op.drop_table("conversions")
    op.drop_index(op.f("ix_approvals_user_id"), table_name="approvals")
    op.drop_table("approvals")
    op.drop_index(op.f("ix_ads_user_id"), table_name="ads")
    op.drop_index(op.f("ix_ads_campaign_id"), table_name="ads")
    op.drop_table("ads")
    op.drop_index(op.f("ix_ad_metrics_user_id"), table_name="ad_metrics")
    op.drop_table("ad_metrics")
