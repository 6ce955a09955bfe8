"""What the API process opens once at start-up and closes at shutdown."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from conveyor.settings import Settings
from conveyor.storage import BlobStore
from conveyor.temporal import connect


@dataclass
class AppState:
    """Settings, the DB engine, the blob store and a lazily (re)connected Temporal client."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    blobs: BlobStore
    _client: Client | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def temporal(self) -> Client:
        """The Temporal client, connecting on first use (the API starts even while Temporal is down)."""
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await connect(self.settings)
        return self._client
