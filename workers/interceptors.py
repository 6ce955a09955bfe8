"""Worker interceptor: log context bound per activity, Conveyor errors turned into Temporal ones, others scrubbed."""

from __future__ import annotations

from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError, TemporalError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from conveyor.errors import ConveyorError, scrub_message
from conveyor.logging import get_logger

log = get_logger(__name__)

#: How deep a cause chain is copied (a longer one is cut there).
_MAX_CAUSES = 8


def public_failure(err: BaseException, depth: int = 0) -> BaseException:
    """What of ``err`` may leave the worker: the failure Temporal would record, with a scrubbed message.

    A ``ConveyorError`` becomes its ``ApplicationError``; a Temporal error (an ``ApplicationError`` raised on
    purpose, a cancellation) is kept as it is; any other exception becomes the ``ApplicationError`` Temporal
    would have made of it (``type`` = the class name, so retry policies treat it the same, not ``non_retryable``)
    with :func:`~conveyor.errors.scrub_message` applied to its message, and its causes the same way. The
    traceback is kept (it names code, not values).
    """
    if isinstance(err, TemporalError):
        return err
    if isinstance(err, ConveyorError):
        public: BaseException = err.to_application_error()
    else:
        public = ApplicationError(scrub_message(str(err)) or type(err).__name__, type=type(err).__name__)
    public.__traceback__ = err.__traceback__
    _set_cause(public, public_cause(err, depth))
    return public


def public_cause(err: BaseException, depth: int = 0) -> BaseException | None:
    """The scrubbed form of what ``err`` was raised from (its cause, else its unsuppressed context), or None."""
    cause = err.__cause__ if err.__cause__ is not None or err.__suppress_context__ else err.__context__
    if cause is None or depth >= _MAX_CAUSES:
        return None
    return public_failure(cause, depth + 1)


def _set_cause(err: BaseException, cause: BaseException | None) -> None:
    """Make ``cause`` the whole of ``err``'s chain (no implicit context behind it)."""
    err.__cause__ = cause
    err.__suppress_context__ = True


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
                cause = public_cause(err)
                if cause is not None:  # ours, raised from another's error: logged here, scrubbed for Temporal
                    log.warning("activity failed", error_type=type(err).__name__, error=str(err), exc_info=True)
                    _set_cause(err, cause)
                raise err.to_application_error() from err
            except TemporalError:
                raise
            except Exception as err:
                # not ours: its text may name server paths, DB URLs or credentials; the worker's log keeps it all
                log.warning("activity failed", error_type=type(err).__name__, error=str(err), exc_info=True)
                public = public_failure(err)
                raise public from public.__cause__  # the scrubbed chain, never err itself


class ConveyorInterceptor(Interceptor):
    """Binds workflow/activity ids into structlog's context, maps ``ConveyorError`` to ``ApplicationError`` and
    scrubs server paths, DB URLs and URL credentials from the messages of every other exception."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Wrap every activity execution."""
        return _ActivityInbound(super().intercept_activity(next))
