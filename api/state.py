"""What the API process opens once at start-up and closes at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from conveyor.settings import Settings
from conveyor.storage import BlobStore
from conveyor.temporal import connect

T = TypeVar("T")


@dataclass
class AppState:
    """Settings, the DB engine, the blob store and a lazily (re)connected Temporal client."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    blobs: BlobStore
    _client: Client | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _shared: dict[str, Any] = field(default_factory=dict)

    def shared(self, key: str, make: Callable[[], T]) -> T:
        """The process's one ``key`` object of a pipeline (e.g. the webhook doorbell), made on first use."""
        if key not in self._shared:
            self._shared[key] = make()
        found: T = self._shared[key]
        return found

    async def temporal(self) -> Client:
        """The Temporal client, connecting on first use (the API starts even while Temporal is down)."""
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await connect(self.settings)
        return self._client
