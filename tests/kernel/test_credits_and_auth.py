"""Users, API keys and credits against a real migrated SQLite database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from conveyor import credits
from conveyor.auth import KEY_PREFIX, add_key, create_user, hash_key, user_for_key
from conveyor.db import create_engine, migrate, session_factory
from conveyor.errors import Conflict, InsufficientCredits, NotFound
from conveyor.models import ApiKey, CreditHold, CreditLedgerEntry, User

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    """Sessions on a fresh SQLite file migrated to head."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'conveyor.db'}"
    await migrate(url)
    engine = create_engine(url)
    yield session_factory(engine)
    await engine.dispose()


async def _new_user(sessions: Sessions, name: str = "ada", initial: int = 100) -> tuple[int, str]:
    async with sessions.begin() as session:
        user, key = await create_user(session, name, initial)
        return user.id, key


async def _balance(sessions: Sessions, user_id: int) -> tuple[int, int]:
    """(credits on the user row, credits available after active holds)."""
    async with sessions() as session:
        user = await session.get(User, user_id)
        assert user is not None
        return user.credits, await credits.available_credits(session, user_id)


async def _ledger(sessions: Sessions, user_id: int) -> list[CreditLedgerEntry]:
    async with sessions() as session:
        rows = await session.scalars(
            select(CreditLedgerEntry).where(CreditLedgerEntry.user_id == user_id).order_by(CreditLedgerEntry.id)
        )
        return list(rows)


async def _hold(sessions: Sessions, user_id: int, reference: str, amount: int) -> CreditHold:
    async with sessions.begin() as session:
        return await credits.hold(session, user_id, reference, amount)


async def _capture(sessions: Sessions, reference: str) -> CreditLedgerEntry | None:
    async with sessions.begin() as session:
        return await credits.capture(session, reference, reason="analysis task")


async def _release(sessions: Sessions, reference: str) -> bool:
    async with sessions.begin() as session:
        return await credits.release(session, reference)


# ------------------------------------------------------------------------------------------------ users


async def test_new_user_gets_initial_credits_once(sessions: Sessions) -> None:
    user_id, _key = await _new_user(sessions, initial=250)
    assert await _balance(sessions, user_id) == (250, 250)
    ledger = await _ledger(sessions, user_id)
    assert [(e.kind, e.amount, e.balance_after, e.idempotency_key) for e in ledger] == [
        ("grant", 250, 250, f"initial:{user_id}")
    ]
    # granting again under the same key adds nothing
    async with sessions.begin() as session:
        user = await session.get(User, user_id)
        assert user is not None
        again = await credits.grant(session, user, 250, reason="initial credits", key=f"initial:{user_id}")
    assert again.id == ledger[0].id
    assert await _balance(sessions, user_id) == (250, 250)
    assert len(await _ledger(sessions, user_id)) == 1


async def test_user_with_no_initial_credits_has_no_ledger_entry(sessions: Sessions) -> None:
    user_id, _key = await _new_user(sessions, initial=0)
    assert await _balance(sessions, user_id) == (0, 0)
    assert await _ledger(sessions, user_id) == []


async def test_api_key_is_shown_once_and_stored_only_as_hash(sessions: Sessions) -> None:
    user_id, key = await _new_user(sessions)
    assert key.startswith(KEY_PREFIX)
    assert key.startswith("cvy_")
    assert len(key) > len(KEY_PREFIX) + 30
    async with sessions() as session:
        rows = (await session.execute(text("SELECT * FROM api_keys"))).mappings().all()
    assert len(rows) == 1
    assert rows[0]["user_id"] == user_id
    assert rows[0]["key_hash"] == hash_key(key)
    assert rows[0]["prefix"] == key[: len(KEY_PREFIX) + 6]
    for value in rows[0].values():
        assert value is None or key not in str(value)


async def test_user_for_key_finds_the_owner_and_rejects_other_keys(sessions: Sessions) -> None:
    ada_id, ada_key = await _new_user(sessions, "ada")
    bob_id, bob_key = await _new_user(sessions, "bob")
    async with sessions() as session:
        ada = await user_for_key(session, ada_key)
        bob = await user_for_key(session, bob_key)
        assert ada is not None and ada.id == ada_id and ada.name == "ada"
        assert bob is not None and bob.id == bob_id
        assert await user_for_key(session, ada_key + "x") is None
        assert await user_for_key(session, "cvy_not-a-key") is None
        assert await user_for_key(session, hash_key(ada_key)) is None  # the stored hash is not a key


async def test_second_key_works_and_revoked_key_does_not(sessions: Sessions) -> None:
    user_id, first = await _new_user(sessions)
    async with sessions.begin() as session:
        user = await session.get(User, user_id)
        assert user is not None
        second = await add_key(session, user)
    assert second != first
    async with sessions.begin() as session:
        found = await user_for_key(session, second)
        assert found is not None and found.id == user_id
        row = (await session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(first)))).one()
        row.revoked_at = func.now()
    async with sessions() as session:
        assert await user_for_key(session, first) is None
        assert await user_for_key(session, second) is not None


async def test_duplicate_user_name_is_a_conflict(sessions: Sessions) -> None:
    await _new_user(sessions, "ada", 100)
    with pytest.raises(Conflict) as caught:
        async with sessions.begin() as session:
            await create_user(session, "ada", 500)
    assert caught.value.code == "USER_EXISTS"
    assert caught.value.http_status == 409
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 1
        assert await session.scalar(select(func.sum(User.credits))) == 100


# ---------------------------------------------------------------------------------------------- credits


async def test_hold_more_than_available_charges_nothing(sessions: Sessions) -> None:
    user_id, _ = await _new_user(sessions, initial=10)
    with pytest.raises(InsufficientCredits) as caught:
        await _hold(sessions, user_id, "analysis:t1", 11)
    assert caught.value.code == "INSUFFICIENT_CREDITS"
    assert caught.value.http_status == 402
    assert caught.value.details == {"required": 11, "available": 10}
    assert await _balance(sessions, user_id) == (10, 10)
    assert [e.kind for e in await _ledger(sessions, user_id)] == ["grant"]
    async with sessions() as session:
        assert await session.get(CreditHold, "analysis:t1") is None


async def test_hold_sets_credits_aside_without_charging(sessions: Sessions) -> None:
    user_id, _ = await _new_user(sessions, initial=10)
    held = await _hold(sessions, user_id, "analysis:t1", 7)
    assert (held.status, held.amount) == ("active", 7)
    assert await _balance(sessions, user_id) == (10, 3)
    assert [e.kind for e in await _ledger(sessions, user_id)] == ["grant"]


async def test_two_holds_cannot_spend_the_same_balance(sessions: Sessions) -> None:
    user_id, _ = await _new_user(sessions, initial=10)
    await _hold(sessions, user_id, "analysis:first", 8)
    with pytest.raises(InsufficientCredits) as caught:
        await _hold(sessions, user_id, "analysis:second", 8)
    assert caught.value.details == {"required": 8, "available": 2}
    assert await _balance(sessions, user_id) == (10, 2)
    # what is left can still be held
    await _hold(sessions, user_id, "analysis:third", 2)
    assert await _balance(sessions, user_id) == (10, 0)


async def test_repeating_a_hold_for_the_same_reference_holds_once(sessions: Sessions) -> None:
    user_id, _ = await _new_user(sessions, initial=10)
    await _hold(sessions, user_id, "analysis:t1", 6)
    again = await _hold(sessions, user_id, "analysis:t1", 6)  # an activity retry
    assert again.status == "active"
    assert await _balance(sessions, user_id) == (10, 4)


async def test_hold_for_unknown_user_is_not_found(sessions: Sessions) -> None:
    with pytest.raises(NotFound) as caught:
        await _hold(sessions, 999, "analysis:t1", 1)
    assert caught.value.code == "USER_NOT_FOUND"


async def test_capture_charges_exactly_once(sessions: Sessions) -> None:
    user_id, _ = await _new_user(sessions, initial=10)
    await _hold(sessions, user_id, "analysis:t1", 4)
    first = await _capture(sessions, "analysis:t1")
    second = await _capture(sessions, "analysis:t1")  # an activity retry
    assert first is not None and second is not None
    assert second.id == first.id
    assert await _balance(sessions, user_id) == (6, 6)
    charges = [e for e in await _ledger(sessions, user_id) if e.kind == "charge"]
    assert len(charges) == 1
    assert (charges[0].amount, charges[0].balance_after) == (-4, 6)
    assert charges[0].idempotency_key == "charge:analysis:t1"
    assert charges[0].reference == "analysis:t1"
    async with sessions() as session:
        held = await session.get(CreditHold, "analysis:t1")
        assert held is not None and held.status == "captured"


async def test_hold_after_capture_does_not_hold_again(sessions: Sessions) -> None:
    user_id, _ = await _new_user(sessions, initial=10)
    await _hold(sessions, user_id, "analysis:t1", 4)
    await _capture(sessions, "analysis:t1")
    again = await _hold(sessions, user_id, "analysis:t1", 4)  # a late retry of hold_credits
    assert again.status == "captured"
    assert await _balance(sessions, user_id) == (6, 6)


async def test_capture_without_a_hold_charges_nothing(sessions: Sessions) -> None:
    user_id, _ = await _new_user(sessions, initial=10)
    assert await _capture(sessions, "analysis:never-held") is None
    assert await _balance(sessions, user_id) == (10, 10)
    assert [e.kind for e in await _ledger(sessions, user_id)] == ["grant"]


async def test_release_gives_the_hold_back(sessions: Sessions) -> None:
    user_id, _ = await _new_user(sessions, initial=10)
    await _hold(sessions, user_id, "analysis:t1", 9)
    assert await _balance(sessions, user_id) == (10, 1)
    assert await _release(sessions, "analysis:t1") is True
    assert await _release(sessions, "analysis:t1") is False  # nothing left to release
    assert await _balance(sessions, user_id) == (10, 10)
    assert [e.kind for e in await _ledger(sessions, user_id)] == ["grant"]


async def test_release_after_capture_refunds_nothing(sessions: Sessions) -> None:
    user_id, _ = await _new_user(sessions, initial=10)
    await _hold(sessions, user_id, "analysis:t1", 3)
    await _capture(sessions, "analysis:t1")
    assert await _release(sessions, "analysis:t1") is False
    assert await _balance(sessions, user_id) == (7, 7)


async def test_release_of_unknown_reference_is_false(sessions: Sessions) -> None:
    assert await _release(sessions, "analysis:nothing") is False


async def test_capture_after_release_charges_nothing(sessions: Sessions) -> None:
    user_id, _ = await _new_user(sessions, initial=10)
    await _hold(sessions, user_id, "analysis:t1", 4)
    await _release(sessions, "analysis:t1")
    assert await _capture(sessions, "analysis:t1") is None
    assert await _balance(sessions, user_id) == (10, 10)
    assert [e.kind for e in await _ledger(sessions, user_id)] == ["grant"]


async def test_hold_after_release_reactivates_with_the_new_amount(sessions: Sessions) -> None:
    user_id, _ = await _new_user(sessions, initial=10)
    await _hold(sessions, user_id, "analysis:t1", 4)
    await _release(sessions, "analysis:t1")
    again = await _hold(sessions, user_id, "analysis:t1", 6)
    assert (again.status, again.amount) == ("active", 6)
    assert await _balance(sessions, user_id) == (10, 4)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(CreditHold)) == 1
    entry = await _capture(sessions, "analysis:t1")
    assert entry is not None and entry.amount == -6
    assert await _balance(sessions, user_id) == (4, 4)


async def test_reactivating_a_released_hold_still_checks_the_balance(sessions: Sessions) -> None:
    user_id, _ = await _new_user(sessions, initial=10)
    await _hold(sessions, user_id, "analysis:t1", 4)
    await _release(sessions, "analysis:t1")
    await _hold(sessions, user_id, "analysis:other", 8)
    with pytest.raises(InsufficientCredits):
        await _hold(sessions, user_id, "analysis:t1", 4)
    async with sessions() as session:
        held = await session.get(CreditHold, "analysis:t1")
        assert held is not None and held.status == "released"
    assert await _balance(sessions, user_id) == (10, 2)


async def test_concurrent_holds_cannot_overdraw(sessions: Sessions) -> None:
    user_id, _ = await _new_user(sessions, initial=10)
    for round_ in range(3):

        async def hold_8(i: int, round_: int = round_) -> CreditHold:
            return await _hold(sessions, user_id, f"analysis:{round_}-{i}", 8)

        await asyncio.gather(*(hold_8(i) for i in range(8)), return_exceptions=True)
        _credits, available = await _balance(sessions, user_id)
        assert available >= 0
        async with sessions() as session:
            active = list(await session.scalars(select(CreditHold.reference).where(CreditHold.status == "active")))
        for reference in active:
            assert await _release(sessions, reference)
