"""Credits: holds taken before work starts, captured exactly once when it succeeds, released otherwise."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from conveyor.errors import InsufficientCredits, NotFound
from conveyor.models import CreditHold, CreditLedgerEntry, User


async def available_credits(session: AsyncSession, user_id: int) -> int:
    """Balance minus credits held by running work."""
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found", code="USER_NOT_FOUND")
    held = await session.scalar(
        select(func.coalesce(func.sum(CreditHold.amount), 0)).where(
            CreditHold.user_id == user_id, CreditHold.status == "active"
        )
    )
    return user.credits - int(held or 0)


async def grant(session: AsyncSession, user: User, amount: int, *, reason: str, key: str) -> CreditLedgerEntry:
    """Add credits once per ``key`` (a repeat returns the first entry)."""
    existing = await session.scalar(select(CreditLedgerEntry).where(CreditLedgerEntry.idempotency_key == key))
    if existing is not None:
        return existing
    user.credits += amount
    entry = CreditLedgerEntry(
        user_id=user.id, amount=amount, kind="grant", reason=reason, idempotency_key=key, balance_after=user.credits
    )
    session.add(entry)
    return entry


async def hold(session: AsyncSession, user_id: int, reference: str, amount: int) -> CreditHold:
    """Set ``amount`` aside for ``reference``; raises INSUFFICIENT_CREDITS (charging nothing) if unavailable.

    Idempotent: an active or captured hold for the same reference is returned as it is.
    """
    user = await session.get(User, user_id, with_for_update=True)
    if user is None:
        raise NotFound(f"user {user_id} not found", code="USER_NOT_FOUND")
    existing = await session.get(CreditHold, reference)
    if existing is not None and existing.status in ("active", "captured"):
        return existing
    available = await available_credits(session, user_id)
    if available < amount:
        raise InsufficientCredits(
            f"this run costs {amount} credits but only {available} are available",
            details={"required": amount, "available": available},
        )
    if existing is not None:
        existing.status = "active"
        existing.amount = amount
        return existing
    new = CreditHold(reference=reference, user_id=user_id, amount=amount, status="active")
    session.add(new)
    return new


async def capture(session: AsyncSession, reference: str, *, reason: str) -> CreditLedgerEntry | None:
    """Charge the held credits exactly once: a second call (e.g. an activity retry) charges nothing."""
    key = f"charge:{reference}"
    existing = await session.scalar(select(CreditLedgerEntry).where(CreditLedgerEntry.idempotency_key == key))
    if existing is not None:
        return existing
    held = await session.get(CreditHold, reference, with_for_update=True)
    if held is None or held.amount == 0:
        return None
    user = await session.get(User, held.user_id, with_for_update=True)
    if user is None:
        raise NotFound(f"user {held.user_id} not found", code="USER_NOT_FOUND")
    user.credits -= held.amount
    held.status = "captured"
    entry = CreditLedgerEntry(
        user_id=user.id,
        amount=-held.amount,
        kind="charge",
        reason=reason,
        reference=reference,
        idempotency_key=key,
        balance_after=user.credits,
    )
    session.add(entry)
    return entry


async def release(session: AsyncSession, reference: str) -> bool:
    """Give back an active hold (failure or cancellation); True if one was released."""
    held = await session.get(CreditHold, reference, with_for_update=True)
    if held is None or held.status != "active":
        return False
    held.status = "released"
    return True
