"""FastAPI dependencies: settings, DB session, Temporal client, blob store, the current user and the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.caller import Caller
from api.state import AppState
from conveyor.auth import user_for_key
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
    session: SessionDep, x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None
) -> User:
    """The user whose API key came in ``X-API-Key`` (401 without a valid one)."""
    if not x_api_key:
        raise HTTPException(401, detail={"code": "API_KEY_MISSING", "message": "send your key in X-API-Key"})
    user = await user_for_key(session, x_api_key)
    if user is None:
        raise HTTPException(401, detail={"code": "API_KEY_INVALID", "message": "the API key is not valid"})
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_caller(
    user: CurrentUser, session: SessionDep, client: TemporalDep, blobs: BlobDep, settings: SettingsDep
) -> Caller:
    """The request's caller (its session is the one ``CurrentUser`` used: FastAPI caches dependencies per request)."""
    return Caller(user=user, session=session, client=client, blobs=blobs, settings=settings)


CallerDep = Annotated[Caller, Depends(get_caller)]
