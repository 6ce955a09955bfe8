"""API keys: generated once, shown once, stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from conveyor import credits
from conveyor.errors import Conflict
from conveyor.models import ApiKey, User

KEY_PREFIX = "cvy_"


def hash_key(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


async def create_user(session: AsyncSession, name: str, initial_credits: int) -> tuple[User, str]:
    """Create a user with credits and one API key; returns the user and the key (shown only now)."""
    if await session.scalar(select(User).where(User.name == name)) is not None:
        raise Conflict(f"user {name!r} already exists", code="USER_EXISTS")
    user = User(name=name, credits=0, credits_held=0)
    session.add(user)
    await session.flush()
    if initial_credits:
        await credits.grant(session, user, initial_credits, reason="initial credits", key=f"initial:{user.id}")
    key = await add_key(session, user)
    return user, key


async def add_key(session: AsyncSession, user: User) -> str:
    """Issue another API key for ``user``."""
    key = new_key()
    session.add(ApiKey(user_id=user.id, key_hash=hash_key(key), prefix=key[: len(KEY_PREFIX) + 6]))
    await session.flush()
    return key


async def user_for_key(session: AsyncSession, key: str) -> User | None:
    """The user an unrevoked key belongs to, if any."""
    row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)))
    return None if row is None else await session.get(User, row.user_id)
