"""Your API keys: list them, issue another, rotate (a new key, every older one revoked), revoke one by prefix."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CurrentUser, SessionDep
from conveyor import auth
from conveyor.models import ApiKey

router = APIRouter(prefix="/api/keys", tags=["keys"])

#: The longest lifetime a key issued over the API may ask for, in days.
MAX_EXPIRES_IN_DAYS = 3650


class KeyOut(BaseModel):
    """One of your keys, by its readable prefix (the key itself is never shown again)."""

    model_config = ConfigDict(from_attributes=True)

    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class NewKeyIn(BaseModel):
    """How long a new key lasts (null: until revoked)."""

    expires_in_days: float | None = Field(None, gt=0, le=MAX_EXPIRES_IN_DAYS, description="null: never expires")


class NewKeyOut(BaseModel):
    """A new key, shown only in this answer."""

    api_key: str
    prefix: str
    expires_at: datetime | None
    revoked: int = Field(0, description="How many older keys this request revoked (rotate).")


def key_out(row: ApiKey) -> KeyOut:
    """The public form of a key row (SQLite returns naive datetimes; they are UTC)."""
    out = KeyOut.model_validate(row)
    for name in ("created_at", "expires_at", "revoked_at"):
        value = getattr(out, name)
        if value is not None and value.tzinfo is None:
            setattr(out, name, value.replace(tzinfo=UTC))
    return out


async def _new_key_out(session: SessionDep, user_id: int, key: str, revoked: int) -> NewKeyOut:
    rows = await auth.keys_of(session, user_id)
    row = next(r for r in rows if r.key_hash == auth.hash_key(key))
    return NewKeyOut(api_key=key, prefix=row.prefix, expires_at=key_out(row).expires_at, revoked=revoked)


@router.get("", response_model=list[KeyOut])
async def list_keys(user: CurrentUser, session: SessionDep) -> list[KeyOut]:
    """Every key of yours, newest first: live, expired and revoked."""
    return [key_out(row) for row in await auth.keys_of(session, user.id)]


@router.post("", response_model=NewKeyOut, status_code=201)
async def create_key(body: NewKeyIn, user: CurrentUser, session: SessionDep) -> NewKeyOut:
    """Issue another key (shown once)."""
    key = await auth.add_key(session, user, expires_in_days=body.expires_in_days)
    out = await _new_key_out(session, user.id, key, 0)
    await session.commit()
    return out


@router.post("/rotate", response_model=NewKeyOut, status_code=201)
async def rotate_keys(body: NewKeyIn, user: CurrentUser, session: SessionDep) -> NewKeyOut:
    """A new key (shown once); every older key of yours, the one this request used included, is revoked."""
    key, revoked = await auth.rotate(session, user, expires_in_days=body.expires_in_days)
    out = await _new_key_out(session, user.id, key, revoked)
    await session.commit()
    return out


@router.post("/{prefix}/revoke", response_model=KeyOut)
async def revoke_key(prefix: str, user: CurrentUser, session: SessionDep) -> KeyOut:
    """Revoke one of your keys by its prefix (another user's key is not found)."""
    row = await auth.revoke_prefix(session, prefix, user_id=user.id)
    out = key_out(row)
    await session.commit()
    return out
