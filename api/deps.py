"""FastAPI dependencies: settings, DB session, Temporal client, blob store, the current user (or admin), the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.caller import Caller
from api.middleware import SCOPE_OWNER
from api.state import AppState
from conveyor.auth import KeyOwner, authenticate
from conveyor.errors import Forbidden, Unauthorized
from conveyor.models import User
from conveyor.settings import Settings
from conveyor.storage import BlobStore


def get_state(request: Request) -> AppState:
    """The application state opened by the lifespan."""
    state: AppState = request.app.state.conveyor
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_settings_dep(state: StateDep) -> Settings:
    """The settings the app was started with."""
    return state.settings


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    """A DB session for one request."""
    async with state.sessions() as session:
        yield session


async def get_temporal(state: StateDep) -> Client:
    """The Temporal client."""
    return await state.temporal()


def get_blobs(state: StateDep) -> BlobStore:
    """The blob store."""
    return state.blobs


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
TemporalDep = Annotated[Client, Depends(get_temporal)]
BlobDep = Annotated[BlobStore, Depends(get_blobs)]


async def get_current_user(
    request: Request, session: SessionDep, x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None
) -> User:
    """The user whose API key came in ``X-API-Key`` (401 without a live one).

    The edge middleware has already resolved the key and left its owner on the scope: the user is attached to this
    request's session without another lookup. Without the middleware (an app built otherwise) the key is looked up.
    """
    owner: KeyOwner | None = request.scope.get(SCOPE_OWNER)
    if owner is None:
        if not x_api_key:
            raise Unauthorized("send your API key in X-API-Key", code="API_KEY_MISSING")
        owner = await authenticate(session, x_api_key)
        return owner.user
    return await session.merge(owner.user, load=False)


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_key_owner(request: Request) -> KeyOwner | None:
    """The owner of the request's key when one was sent and is live (public paths take requests without one)."""
    owner: KeyOwner | None = request.scope.get(SCOPE_OWNER)
    return owner


async def get_admin(user: CurrentUser) -> User:
    """The current user, who must have the ``admin`` role (403 otherwise)."""
    if not user.is_admin:
        raise Forbidden("this endpoint is for operators (the admin role)", code="ADMIN_ONLY")
    return user


def get_owner_id(request: Request) -> int:
    """The id of the key's owner as the edge middleware resolved it, with no DB session of the request's own.

    Routes that only need whose request it is (the workflow routes, the event stream) use this, so a long-lived
    stream holds no database connection: a pool's worth of open streams must not starve every other request.
    """
    owner: KeyOwner | None = request.scope.get(SCOPE_OWNER)
    if owner is None:
        raise Unauthorized("send your API key in X-API-Key", code="API_KEY_MISSING")
    return owner.user.id


KeyOwnerDep = Annotated[KeyOwner | None, Depends(get_key_owner)]
OwnerId = Annotated[int, Depends(get_owner_id)]
AdminUser = Annotated[User, Depends(get_admin)]


async def get_caller(
    user: CurrentUser, session: SessionDep, client: TemporalDep, blobs: BlobDep, settings: SettingsDep
) -> Caller:
    """The request's caller (its session is the one ``CurrentUser`` used: FastAPI caches dependencies per request)."""
    return Caller(user=user, session=session, client=client, blobs=blobs, settings=settings)


CallerDep = Annotated[Caller, Depends(get_caller)]
