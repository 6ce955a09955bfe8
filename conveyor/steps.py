"""How a workflow calls an activity, declared once beside the workflow: a :class:`Step`.

A step names the activity (by the contract's name, so the workflow never imports the worker side) and carries the
seed's limits: start-to-close timeout, heartbeat timeout for anything long, retry policy, task queue and priority.
Workflows declare their steps as named constants (``PURGE = Step(contract.PURGE_WORK, timedelta(minutes=30), …)``)
and call ``await PURGE.run(request, PurgeResult)``. The commands sent to Temporal are exactly those of
``workflow.execute_activity`` with the same options, so histories recorded before steps existed replay unchanged.
Pure and safe inside the workflow sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.workflow import ActivityCancellationType

from conveyor.errors import NON_RETRYABLE_ERROR_TYPES

T = TypeVar("T")


def retries(
    attempts: int, *, first: timedelta = timedelta(seconds=1), most: timedelta | None = None, backoff: float = 2.0
) -> RetryPolicy:
    """``attempts`` attempts in all, ``first`` apart and growing by ``backoff`` up to ``most``; never retrying the
    taxonomy's permanent errors (bad input, not found, conflict, … are not worth a second try)."""
    return RetryPolicy(
        initial_interval=first,
        backoff_coefficient=backoff,
        maximum_interval=most,
        maximum_attempts=attempts,
        non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
    )


@dataclass(frozen=True)
class Step:
    """An activity call's name and options: the seed's time limits, retries, queue and priority."""

    activity: str
    timeout: timedelta
    """Start-to-close: the longest one attempt may take."""
    retry: RetryPolicy
    heartbeat: timedelta | None = None
    """Needed for anything longer than a few seconds: a lost worker is noticed, and cancellation reaches it."""
    queue: str | None = None
    """The task queue of the activity (default: the workflow's)."""
    priority: Priority = Priority.default
    cancellation: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL

    def on(self, queue: str) -> Step:
        """The same step on another task queue."""
        return replace(self, queue=queue)

    async def run(self, arg: Any, result_type: type[T]) -> T:
        """Run the activity with ``arg`` and return its result as ``result_type`` (workflow code only)."""
        result: T = await self._execute(arg, result_type)
        return result

    async def call(self, arg: Any) -> None:
        """Run an activity that returns nothing (workflow code only)."""
        await self._execute(arg, None)

    def start(self, arg: Any, result_type: type[T]) -> workflow.ActivityHandle[T]:
        """Start the activity and return its handle at once, to await among others (workflow code only)."""
        return workflow.start_activity(self.activity, arg, result_type=result_type, **self._options())

    async def _execute(self, arg: Any, result_type: type[Any] | None) -> Any:
        return await workflow.execute_activity(self.activity, arg, result_type=result_type, **self._options())

    def _options(self) -> dict[str, Any]:
        return {
            "task_queue": self.queue,
            "start_to_close_timeout": self.timeout,
            "heartbeat_timeout": self.heartbeat,
            "retry_policy": self.retry,
            "priority": self.priority,
            "cancellation_type": self.cancellation,
        }
