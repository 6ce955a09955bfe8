"""A real stack in the test process: dev server, SQLite, local blobs, every pipeline's workers and the API."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.app import create_app
from conveyor.auth import create_user
from conveyor.db import migrate
from conveyor.resources import WorkerResources, open_resources
from conveyor.settings import Settings
from conveyor.storage import BlobStore
from conveyor.temporal import free_port
from tests.helpers import TEST_CHROMIUM_ARGS
from tests.helpers.hubspot import SECRET as HUBSPOT_SECRET
from workers.pipelines import all_queues
from workers.run import build_workers, executor_size


@dataclass
class Stack:
    """Handles on the running test stack."""

    settings: Settings
    client: Client
    sessions: async_sessionmaker[AsyncSession]
    blobs: BlobStore
    api_url: str
    resources: WorkerResources
    closed_url: str = ""
    """A loopback URL the stack's network policy allows but where nothing listens (unreachable-start tests)."""

    async def new_user(self, credits: int = 10_000, *, admin: bool = False) -> tuple[int, str]:
        """A fresh user with ``credits`` (enough for any test's runs) and its API key (an operator with ``admin``)."""
        async with self.sessions.begin() as session:
            role = "admin" if admin else "user"
            user, key = await create_user(session, f"user-{uuid.uuid4().hex[:8]}", credits, role=role)
            return user.id, key

    def http(self, key: str | None) -> httpx.AsyncClient:
        """An API client sending ``key``."""
        headers = {"X-API-Key": key} if key else {}
        return httpx.AsyncClient(base_url=self.api_url, headers=headers, timeout=30)


def stack_settings(
    var: Path, temporal_address: str, *, allowed_hosts: tuple[str, ...] = (), **overrides: Any
) -> Settings:
    """Settings of a test stack under ``var`` (small upload cap, JSON logs, Chromium kept on loopback).

    Crawls may reach exactly ``allowed_hosts`` (the suite's own loopback servers) and the demo's sample site.
    """
    demo_port = free_port()
    values: dict[str, Any] = {
        "demo_site_port": demo_port,
        "crawl_allowed_hosts": [*allowed_hosts, f"127.0.0.1:{demo_port}"],
        # nothing the crawler or Chromium asks for leaves the machine, not even a DNS lookup
        "crawl_only_allowed_hosts": True,
        # the suite's users make requests far faster than any tenant should (the edge tests check the limit)
        "rate_limit_per_minute": 60_000,
        "rate_limit_burst": 10_000,
        "var_dir": var,
        "temporal_address": temporal_address,
        "api_port": free_port(),
        "max_upload_bytes": 2_000_000,
        "log_json": True,
        "chromium_args": TEST_CHROMIUM_ARGS,
        "worker_legacy_queues": False,
        "hubspot_client_secret": HUBSPOT_SECRET,
        **overrides,
    }
    return Settings(**values)


@asynccontextmanager
async def run_stack(client: Client, settings: Settings, queues: Sequence[str] | None = None) -> AsyncIterator[Stack]:
    """Workers for ``queues`` (every queue by default) and the API on a real port, until the block ends."""
    await migrate(settings.database_url_resolved)
    async with open_resources(settings) as resources:
        served = list(queues or all_queues())
        with concurrent.futures.ThreadPoolExecutor(max_workers=executor_size(served)) as executor:
            workers = build_workers(client, resources, served, executor)
            runs = [asyncio.create_task(w.run()) for w in workers]
            try:
                async with serve_api(settings) as url:
                    yield Stack(settings, client, resources.sessions, resources.blobs, url, resources)
            finally:
                await asyncio.gather(*(w.shutdown() for w in workers))
                await asyncio.gather(*runs, return_exceptions=True)


@asynccontextmanager
async def serve_api(settings: Settings) -> AsyncIterator[str]:
    """The API alone, in this process, on the settings' port; its URL."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=settings.api_port, log_config=None, access_log=False
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # it could not start: its error
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.api_port}"
    finally:
        server.should_exit = True
        await serving
