"""What a worker process opens once and shares between its activities: DB, blob store, and pipelines' clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from conveyor.db import create_engine, session_factory
from conveyor.settings import Settings
from conveyor.storage import BlobStore, blob_store_from_url

T = TypeVar("T")


@dataclass
class WorkerResources:
    """Settings, the DB engine and sessions, the blob store, and clients pipelines open on first use.

    A pipeline's activity factory asks for its own clients (a browser, a vector store, Whisper models) with
    :meth:`shared`, so one process opens each once, whichever of the pipeline's queues it serves, and closes
    them when the worker stops.
    """

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    blobs: BlobStore
    _shared: dict[str, Any] = field(default_factory=dict, repr=False)
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list, repr=False)

    def shared(self, key: str, make: Callable[[], T], close: Callable[[T], Awaitable[None]] | None = None) -> T:
        """The process's one ``key`` client, made by ``make`` on first use and closed by ``close`` at the end."""
        if key not in self._shared:
            value = make()
            self._shared[key] = value
            if close is not None:
                self._closers.append(lambda: close(value))
        found: T = self._shared[key]
        return found

    async def aclose(self) -> None:
        """Close the pipelines' clients (newest first), then the DB engine."""
        while self._closers:
            await self._closers.pop()()
        await self.engine.dispose()


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[WorkerResources]:
    """Open the DB engine and blob store a worker process shares between its activities."""
    engine = create_engine(settings.database_url_resolved)
    resources = WorkerResources(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        blobs=blob_store_from_url(settings.blob_url_resolved, s3_endpoint_url=settings.s3_endpoint_url),
    )
    try:
        yield resources
    finally:
        await resources.aclose()
