"""Tables every pipeline shares: users, their API keys, the credits ledger with holds, and worker checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from conveyor.db import Base


def utcnow() -> datetime:
    """Timezone-aware now, for column defaults."""
    return datetime.now(UTC)


#: The roles a user can have: tenants are ``user``; operators are ``admin``.
USER_ROLE = "user"
ADMIN_ROLE = "admin"
ROLES = (USER_ROLE, ADMIN_ROLE)


class User(Base):
    """Someone who owns resources and pays credits for work."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    credits: Mapped[int] = mapped_column(Integer, default=0)
    credits_held: Mapped[int] = mapped_column(Integer, default=0)
    role: Mapped[str] = mapped_column(String(20), default="user", server_default="user")  # user | admin
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, server_default=func.now())

    @property
    def is_admin(self) -> bool:
        """Whether this user may call operator endpoints."""
        return self.role == ADMIN_ROLE


class ApiKey(Base):
    """An API key, stored as a SHA-256 hash; only its prefix is kept readable."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CreditLedgerEntry(Base):
    """One append-only change to a user's credits; ``idempotency_key`` makes each change happen once."""

    __tablename__ = "credit_ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    amount: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))  # grant | charge | refund
    reason: Mapped[str] = mapped_column(String(200), default="")
    reference: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    balance_after: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CreditHold(Base):
    """Credits set aside for running work, so two runs cannot spend the same balance."""

    __tablename__ = "credit_holds"
    __table_args__ = (
        Index("ix_credit_holds_run", "run_table", "run_id"),
        Index("ix_credit_holds_user_pipeline_status", "user_id", "pipeline", "status"),
    )

    reference: Mapped[str] = mapped_column(String(200), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    amount: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | captured | released
    pipeline: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """The pipeline whose run took the hold (holds taken by admission; NULL for older holds)."""
    run_table: Mapped[str | None] = mapped_column(String(64), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The run row the hold is settled against when that row ends."""
    run_group: Mapped[str | None] = mapped_column(String(200), nullable=True)
    """The workflow the run belongs to: the per-user cap counts distinct groups with an active hold."""
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """What the run's price was computed from (units, baselines), read back when it is settled."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class WorkerCheck(Base):
    """The latest result of one scheduled worker check (a pipeline's health schedule), shown by ``/api/health``."""

    __tablename__ = "worker_checks"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(Text, default="")
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
