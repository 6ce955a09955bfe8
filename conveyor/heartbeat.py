"""Run blocking work from an async activity while heartbeating, and stop it when Temporal cancels."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from temporalio import activity

T = TypeVar("T")

#: How often a running activity tells Temporal it is alive (well inside every heartbeat timeout).
HEARTBEAT_INTERVAL_S = 2.0


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


async def run_blocking(
    fn: Callable[[], T],
    *,
    progress: ProgressBox | None = None,
    on_cancel: Callable[[], None] | None = None,
    interval: float = HEARTBEAT_INTERVAL_S,
) -> T:
    """Run ``fn`` in a thread, heartbeating ``progress`` every ``interval`` s.

    When the activity is cancelled (or its heartbeat times out), ``on_cancel`` is called so the blocking
    work can stop (interrupt a query, kill a subprocess), the thread is awaited, and the cancellation
    propagates.
    """
    box = progress or ProgressBox()
    task = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=interval)
            if done:
                return task.result()
            activity.heartbeat(box.get())
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        with contextlib.suppress(BaseException):
            await asyncio.shield(task)
        raise
