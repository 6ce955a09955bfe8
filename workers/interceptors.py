"""Worker interceptor: log context bound per activity, and Conveyor errors turned into Temporal ones."""

from __future__ import annotations

from typing import Any

import structlog
from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from conveyor.errors import ConveyorError


class _ActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        with structlog.contextvars.bound_contextvars(
            workflow_id=info.workflow_id,
            run_id=info.workflow_run_id,
            activity_id=info.activity_id,
            activity_type=info.activity_type,
            attempt=info.attempt,
        ):
            try:
                return await super().execute_activity(input)
            except ConveyorError as err:
                raise err.to_application_error() from err


class ConveyorInterceptor(Interceptor):
    """Binds workflow/activity ids into structlog's context and maps ``ConveyorError`` to ``ApplicationError``."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Wrap every activity execution."""
        return _ActivityInbound(super().intercept_activity(next))
