"""API keys and roles: keys are shown once, stored as SHA-256 hashes, expire, are revoked and rotate."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from conveyor import credits
from conveyor.errors import BadInput, Conflict, ExternalServiceError, NotFound, Unauthorized
from conveyor.models import ADMIN_ROLE, ROLES, USER_ROLE, ApiKey, User

KEY_PREFIX = "cvy_"
#: How many characters of a key stay readable (``cvy_`` and six more): logs, listings and revoking show these.
PREFIX_LENGTH = len(KEY_PREFIX) + 6


def hash_key(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_prefix(key: str) -> str:
    """The readable prefix of a key (safe to log)."""
    return key[:PREFIX_LENGTH]


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _expiry(expires_in_days: float | None) -> datetime | None:
    """The expiry of a key issued now that lasts ``expires_in_days`` (None: never expires)."""
    if expires_in_days is None:
        return None
    if expires_in_days <= 0:
        raise BadInput("a key must last more than 0 days", code="BAD_EXPIRY", details={"expires_in_days": 0})
    return datetime.now(UTC) + timedelta(days=expires_in_days)


async def create_user(
    session: AsyncSession,
    name: str,
    initial_credits: int,
    *,
    role: str = USER_ROLE,
    expires_in_days: float | None = None,
) -> tuple[User, str]:
    """Create a user with credits and one API key; returns the user and the key (shown only now)."""
    if role not in ROLES:
        raise BadInput(f"unknown role {role!r}", code="UNKNOWN_ROLE", details={"roles": list(ROLES)})
    if await session.scalar(select(User).where(User.name == name)) is not None:
        raise Conflict(f"user {name!r} already exists", code="USER_EXISTS")
    user = User(name=name, credits=0, credits_held=0, role=role)
    session.add(user)
    await session.flush()
    if initial_credits:
        await credits.grant(session, user, initial_credits, reason="initial credits", key=f"initial:{user.id}")
    key = await add_key(session, user, expires_in_days=expires_in_days)
    return user, key


async def default_owner(session: AsyncSession, named: str, setting: str, local_user: str, local_credits: int) -> int:
    """The user that owns what arrives unclaimed (a webhook of a portal or bot nobody connected): the user ``named``
    by ``setting`` (``ExternalServiceError`` ``DEFAULT_OWNER_MISSING`` if it does not exist), else the CLI's local
    user, created like the CLI creates it when missing."""
    name = named or local_user
    user_id = await session.scalar(select(User.id).where(User.name == name))
    if user_id is not None:
        return int(user_id)
    if named:
        raise ExternalServiceError(f"{setting} names user {name!r}, which does not exist", code="DEFAULT_OWNER_MISSING")
    async with session.begin_nested():
        user, _key = await create_user(session, name, local_credits)
    return user.id


async def add_key(session: AsyncSession, user: User, *, expires_in_days: float | None = None) -> str:
    """Issue another API key for ``user`` (expiring after ``expires_in_days`` when given)."""
    key = new_key()
    session.add(
        ApiKey(user_id=user.id, key_hash=hash_key(key), prefix=key_prefix(key), expires_at=_expiry(expires_in_days))
    )
    await session.flush()
    return key


@dataclass(frozen=True)
class KeyOwner:
    """Who a presented key belongs to, and the key's readable prefix (for logs and rate limits)."""

    user: User
    key_id: int
    prefix: str


async def authenticate(session: AsyncSession, key: str) -> KeyOwner:
    """The owner of a live key; :class:`Unauthorized` for an unknown, revoked or expired one (one lookup)."""
    row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if row is None:
        raise Unauthorized("the API key is not valid", code="API_KEY_INVALID")
    if row.revoked_at is not None:
        raise Unauthorized("the API key was revoked", code="API_KEY_REVOKED")
    expires_at = _aware(row.expires_at)
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise Unauthorized("the API key has expired", code="API_KEY_EXPIRED")
    user = await session.get(User, row.user_id)
    if user is None:
        raise Unauthorized("the API key is not valid", code="API_KEY_INVALID")
    return KeyOwner(user=user, key_id=row.id, prefix=row.prefix)


async def user_for_key(session: AsyncSession, key: str) -> User | None:
    """The user a live (unrevoked, unexpired) key belongs to, if any."""
    try:
        return (await authenticate(session, key)).user
    except Unauthorized:
        return None


async def user_named(session: AsyncSession, name: str) -> User:
    """The user called ``name`` (NotFound otherwise)."""
    user = await session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"user {name!r} not found", code="USER_NOT_FOUND")
    return user


async def set_role(session: AsyncSession, name: str, role: str) -> User:
    """Give the user called ``name`` the ``role`` (``user`` or ``admin``)."""
    if role not in ROLES:
        raise BadInput(f"unknown role {role!r}", code="UNKNOWN_ROLE", details={"roles": list(ROLES)})
    user = await user_named(session, name)
    user.role = role
    await session.flush()
    return user


async def keys_of(session: AsyncSession, user_id: int) -> list[ApiKey]:
    """Every key of a user, newest first (live, revoked and expired alike)."""
    rows = await session.scalars(select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id.desc()))
    return list(rows)


async def revoke_prefix(session: AsyncSession, prefix: str, *, user_id: int | None = None) -> ApiKey:
    """Revoke the one live key starting with ``prefix`` (of ``user_id`` when given: others' keys are not found)."""
    if len(prefix) < PREFIX_LENGTH:
        raise BadInput(
            f"give the key's first {PREFIX_LENGTH} characters", code="BAD_KEY_PREFIX", details={"length": len(prefix)}
        )
    query = select(ApiKey).where(ApiKey.prefix == prefix[:PREFIX_LENGTH], ApiKey.revoked_at.is_(None))
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    rows = list(await session.scalars(query))
    if not rows:
        raise NotFound(f"no live key starts with {prefix[:PREFIX_LENGTH]!r}", code="KEY_NOT_FOUND")
    if len(rows) > 1:
        raise Conflict(
            f"{len(rows)} live keys start with {prefix[:PREFIX_LENGTH]!r}; revoke them by user",
            code="KEY_PREFIX_AMBIGUOUS",
        )
    rows[0].revoked_at = datetime.now(UTC)
    await session.flush()
    return rows[0]


async def revoke_all(session: AsyncSession, user_id: int, *, keep_key_id: int | None = None) -> int:
    """Revoke every live key of a user (but ``keep_key_id``); returns how many were revoked."""
    query = update(ApiKey).where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
    if keep_key_id is not None:
        query = query.where(ApiKey.id != keep_key_id)
    result = await session.execute(query.values(revoked_at=datetime.now(UTC)))
    await session.flush()
    return int(getattr(result, "rowcount", 0) or 0)


async def rotate(session: AsyncSession, user: User, *, expires_in_days: float | None = None) -> tuple[str, int]:
    """A new key for ``user`` with every older key revoked; returns the key (shown once) and how many were revoked."""
    revoked = await revoke_all(session, user.id)
    return await add_key(session, user, expires_in_days=expires_in_days), revoked


__all__ = [
    "ADMIN_ROLE",
    "KEY_PREFIX",
    "PREFIX_LENGTH",
    "KeyOwner",
    "add_key",
    "authenticate",
    "create_user",
    "hash_key",
    "key_prefix",
    "keys_of",
    "new_key",
    "revoke_all",
    "revoke_prefix",
    "rotate",
    "set_role",
    "user_for_key",
    "user_named",
]
