"""Credits: holds taken before work starts, captured exactly once when it succeeds, released otherwise.

Every balance change is one conditional ``UPDATE`` (atomic on SQLite and PostgreSQL alike), so concurrent
runs of the same user cannot spend the same credits, and a retried or late call cannot charge twice or
charge a hold that was already given back.
"""

from __future__ import annotations

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from conveyor.errors import InsufficientCredits, NotFound
from conveyor.models import CreditHold, CreditLedgerEntry, User


async def available_credits(session: AsyncSession, user_id: int) -> int:
    """Balance minus credits held by running work."""
    user = await session.get(User, user_id, populate_existing=True)
    if user is None:
        raise NotFound(f"user {user_id} not found", code="USER_NOT_FOUND")
    return user.credits - user.credits_held


async def grant(session: AsyncSession, user: User, amount: int, *, reason: str, key: str) -> CreditLedgerEntry:
    """Add credits once per ``key`` (a repeat returns the first entry)."""
    existing = await session.scalar(select(CreditLedgerEntry).where(CreditLedgerEntry.idempotency_key == key))
    if existing is not None:
        return existing
    await session.execute(update(User).where(User.id == user.id).values(credits=User.credits + amount))
    await session.refresh(user)
    entry = CreditLedgerEntry(
        user_id=user.id, amount=amount, kind="grant", reason=reason, idempotency_key=key, balance_after=user.credits
    )
    session.add(entry)
    await session.flush()
    return entry


async def _claimed_hold(session: AsyncSession, reference: str) -> CreditHold:
    """The hold this transaction just changed (it can only be gone if its user was deleted meanwhile)."""
    held = await session.get(CreditHold, reference, populate_existing=True)
    if held is None:
        raise NotFound(f"credit hold {reference} not found", code="HOLD_NOT_FOUND")
    return held


def _rows(result: object) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


async def hold(session: AsyncSession, user_id: int, reference: str, amount: int) -> CreditHold:
    """Set ``amount`` aside for ``reference``; raises INSUFFICIENT_CREDITS (charging nothing) if unavailable.

    Idempotent: an active or captured hold for the same reference is returned as it is.
    """
    existing = await session.get(CreditHold, reference)
    if existing is not None and existing.status in ("active", "captured"):
        return existing
    taken = await session.execute(
        update(User)
        .where(User.id == user_id, User.credits - User.credits_held >= amount)
        .values(credits_held=User.credits_held + amount)
    )
    if _rows(taken) == 0:
        available = await available_credits(session, user_id)  # NotFound if the user is gone
        raise InsufficientCredits(
            f"this run costs {amount} credits but only {available} are available",
            details={"required": amount, "available": available},
        )
    if existing is not None:
        existing.status = "active"
        existing.amount = amount
        await session.flush()
        return existing
    new = CreditHold(reference=reference, user_id=user_id, amount=amount, status="active")
    session.add(new)
    await session.flush()
    return new


async def capture(session: AsyncSession, reference: str, *, reason: str) -> CreditLedgerEntry | None:
    """Charge an active hold exactly once; a repeat returns the first charge, a released hold charges nothing."""
    key = f"charge:{reference}"
    claimed = await session.execute(
        update(CreditHold)
        .where(CreditHold.reference == reference, CreditHold.status == "active")
        .values(status="captured")
    )
    if _rows(claimed) == 0:
        return await session.scalar(select(CreditLedgerEntry).where(CreditLedgerEntry.idempotency_key == key))
    held = await _claimed_hold(session, reference)
    await session.execute(
        update(User)
        .where(User.id == held.user_id)
        .values(credits=User.credits - held.amount, credits_held=User.credits_held - held.amount)
    )
    user = await session.get(User, held.user_id, populate_existing=True)
    if user is None:
        raise NotFound(f"user {held.user_id} not found", code="USER_NOT_FOUND")
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
    await session.flush()
    return entry


async def release(session: AsyncSession, reference: str) -> bool:
    """Give back an active hold (failure or cancellation); True if one was released."""
    released = await session.execute(
        update(CreditHold)
        .where(CreditHold.reference == reference, CreditHold.status == "active")
        .values(status="released")
    )
    if _rows(released) == 0:
        return False
    held = await _claimed_hold(session, reference)
    await session.execute(
        update(User).where(User.id == held.user_id).values(credits_held=User.credits_held - held.amount)
    )
    return True


def settle_sync(session: Session, held: CreditHold, due: int, *, reason: str) -> int:
    """Charge ``due`` (at most the hold) of an active hold and give back the rest, once; the credits charged.

    The partial capture of a run that ended: a completed run pays for what it delivered, a failed or cancelled one
    for what it delivered before it stopped. A hold already settled (or released) charges nothing again. Runs in a
    sync session (the run lifecycle settles inside a flush); :func:`settle` is the async form.
    """
    charged = max(0, min(int(due), held.amount))
    claimed = session.execute(
        update(CreditHold)
        .where(CreditHold.reference == held.reference, CreditHold.status == "active")
        .values(status="captured" if charged else "released")
        .execution_options(synchronize_session=False)
    )
    if _rows(claimed) == 0:
        return 0
    session.execute(
        update(User)
        .where(User.id == held.user_id)
        .values(credits=User.credits - charged, credits_held=User.credits_held - held.amount)
        .execution_options(synchronize_session=False)
    )
    if charged:
        balance = session.scalar(select(User.credits).where(User.id == held.user_id))
        session.add(
            CreditLedgerEntry(
                user_id=held.user_id,
                amount=-charged,
                kind="charge",
                reason=reason[:200],
                reference=held.reference,
                idempotency_key=f"charge:{held.reference}",
                balance_after=int(balance or 0),
            )
        )
    return charged


async def settle(session: AsyncSession, reference: str, due: int, *, reason: str) -> int:
    """Charge ``due`` (at most the hold) of the active hold ``reference`` and give back the rest; charged credits."""
    held = await session.get(CreditHold, reference, populate_existing=True)
    if held is None or held.status != "active":
        return 0

    def run(sync: Session) -> int:
        return settle_sync(sync, held, due, reason=reason)

    return await session.run_sync(run)


async def charge_usage(session: AsyncSession, user_id: int, amount: int, *, reason: str, key: str) -> bool:
    """Charge ``amount`` for work already done, once per ``key``; ``False`` if ``key`` was charged before.

    Metered usage (events a webhook delivered) is billed in full in the caller's transaction, even past the balance:
    the work cannot be refused after the data was accepted. A balance below zero makes every later start a 402.
    """
    if amount <= 0:
        return False
    if await session.scalar(select(CreditLedgerEntry.id).where(CreditLedgerEntry.idempotency_key == key)) is not None:
        return False
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(credits=User.credits - amount)
        .execution_options(synchronize_session=False)
    )
    balance = await session.scalar(select(User.credits).where(User.id == user_id))
    session.add(
        CreditLedgerEntry(
            user_id=user_id,
            amount=-amount,
            kind="charge",
            reason=reason[:200],
            reference=key[:200],
            idempotency_key=key,
            balance_after=int(balance or 0),
        )
    )
    await session.flush()
    return True
