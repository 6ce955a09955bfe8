"""What every CLI command sets up: settings and logging, the DB, blobs, Temporal, the acting user, error exits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.caller import Caller
from cli.output import fail
from conveyor.client import WorkflowStatus
from conveyor.errors import BadInput, ConveyorError, NotFound
from conveyor.logging import configure_logging
from conveyor.models import User
from conveyor.settings import Settings, get_settings
from conveyor.storage import BlobStore, blob_store_from_url

T = TypeVar("T")


def cli_settings() -> Settings:
    """The process settings, with logging configured from them."""
    settings = get_settings()
    configure_logging(settings)
    return settings


def bad_option(err: ValidationError) -> BadInput:
    """The first problem of an option that did not validate, as one readable line."""
    first = err.errors()[0]
    field = ".".join(str(x) for x in first["loc"]) or "input"
    return BadInput(f"{field}: {first['msg']}", code="BAD_OPTION", details={"field": field})


def run_command(coro: Coroutine[Any, Any, T], *, as_json: bool) -> T:
    """Run a command's coroutine; a ConveyorError (or a bad option) becomes one readable line and an exit code."""
    try:
        return asyncio.run(coro)
    except ValidationError as err:
        fail(bad_option(err), as_json=as_json)
    except ConveyorError as err:
        fail(err, as_json=as_json)


async def resolve_user(session: AsyncSession, settings: Settings, name: str | None) -> User:
    """The named user; without a name, the local CLI user (created with starter credits if missing)."""
    from conveyor.auth import create_user

    wanted = name or settings.local_user
    user = await session.scalar(select(User).where(User.name == wanted))
    if user is not None:
        return user
    if name is not None and name != settings.local_user:
        raise NotFound(f"user {name!r} not found; create it with `conveyor users create {name}`", code="USER_NOT_FOUND")
    user, _key = await create_user(session, wanted, settings.local_user_credits)
    await session.commit()
    return user


@dataclass
class Cli:
    """A command's handles: settings, DB sessions, the blob store, Temporal, and the user it acts as."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    blobs: BlobStore
    client: Client
    user: User

    @asynccontextmanager
    async def caller(self) -> AsyncIterator[Caller]:
        """The acting user as the services' caller, with a DB session of its own (closed at the end)."""
        async with self.sessions() as session:
            yield Caller(user=self.user, session=session, client=self.client, blobs=self.blobs, settings=self.settings)


@asynccontextmanager
async def cli_context(settings: Settings, user_name: str | None) -> AsyncIterator[Cli]:
    """Migrate the DB, open it, connect to Temporal and resolve the acting user; close it all at the end."""
    from conveyor.db import create_engine, migrate, session_factory
    from conveyor.temporal import connect

    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    try:
        sessions = session_factory(engine)
        blobs = blob_store_from_url(settings.blob_url_resolved, s3_endpoint_url=settings.s3_endpoint_url)
        async with sessions() as session:
            user = await resolve_user(session, settings, user_name)
        yield Cli(settings, sessions, blobs, await connect(settings), user)
    finally:
        await engine.dispose()


@dataclass
class DemoRun:
    """One pipeline run of the demo, as the summary table shows it."""

    pipeline: str
    workflow_id: str
    status: str
    seconds: float
    outputs: str
    link: str


@dataclass
class DemoContext:
    """What each pipeline's demo gets: settings, an API client with a key, and a Temporal client."""

    settings: Settings
    http: httpx.AsyncClient
    client: Client
    show: bool

    def run(self, pipeline: str, final: WorkflowStatus, started: float, status: str, outputs: str) -> DemoRun:
        """A summary row for a finished workflow (its seconds from Temporal's times when it has them)."""
        seconds = (
            (final.closed_at - final.started_at).total_seconds()
            if final.closed_at and final.started_at
            else time.monotonic() - started
        )
        wf = final.workflow_id
        return DemoRun(pipeline, wf, status, seconds, outputs, self.settings.workflow_ui_url(wf))
