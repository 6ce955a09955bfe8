"""Progress from running activities: heartbeat the latest detail, copy it onto the run's row, run blocking work.

:func:`reporting` is the one progress writer: about once a second it heartbeats the newest detail of a
:class:`ProgressBox` (a retry resumes from it; a cancellation reaches the activity in the heartbeat's reply)
and, when the detail changed, hands it to a row writer (:func:`conveyor.records.row_writer`) so the API shows
live progress. :func:`run_blocking` runs blocking libraries (FFmpeg, DuckDB, Chroma, Whisper) in a thread
under it, with a hook that stops them when Temporal cancels.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from temporalio import activity

T = TypeVar("T")

#: How often a running activity tells Temporal it is alive (well inside every heartbeat timeout).
HEARTBEAT_INTERVAL_S = 1.0

RowWriter = Callable[[Any], Awaitable[None]]


class ProgressBox:
    """Thread-safe holder of the latest progress detail a worker thread reports."""

    def __init__(self, initial: Any = None) -> None:
        self._lock = threading.Lock()
        self._value = initial

    def set(self, value: Any) -> None:
        """Record the newest detail."""
        with self._lock:
            self._value = value

    def get(self) -> Any:
        """The newest detail."""
        with self._lock:
            return self._value


async def _report_loop(box: ProgressBox, write: RowWriter | None, interval: float) -> None:
    last: Any = object()
    while True:
        # the first beat comes after one interval: work that finishes sooner costs no heartbeat at all
        await asyncio.sleep(interval)
        detail = box.get()
        activity.heartbeat(detail)
        if write is not None and detail != last:
            last = detail
            await write(detail)


@contextlib.asynccontextmanager
async def reporting(
    box: ProgressBox, *, write: RowWriter | None = None, interval: float = HEARTBEAT_INTERVAL_S
) -> AsyncIterator[ProgressBox]:
    """While the block runs: heartbeat ``box`` every ``interval`` s and pass each new detail to ``write``."""
    task = asyncio.create_task(_report_loop(box, write, interval))
    try:
        yield box
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_blocking(
    fn: Callable[[], T],
    *,
    progress: ProgressBox | None = None,
    write: RowWriter | None = None,
    on_cancel: Callable[[], None] | None = None,
    interval: float = HEARTBEAT_INTERVAL_S,
) -> T:
    """Run ``fn`` in a thread under :func:`reporting` (heartbeats of ``progress``, rows through ``write``).

    When the activity is cancelled (or its heartbeat times out), ``on_cancel`` is called so the blocking
    work can stop (interrupt a query, kill a subprocess), the thread is awaited, and the cancellation
    propagates.
    """
    box = progress or ProgressBox()
    work = asyncio.ensure_future(asyncio.to_thread(fn))
    async with reporting(box, write=write, interval=interval):
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            if on_cancel is not None:
                on_cancel()
            with contextlib.suppress(BaseException):
                await work
            raise
