"""The error taxonomy: one place that says what can go wrong, whether to retry, and which HTTP code it is.

Activities raise :class:`ConveyorError` subclasses (or let transient exceptions propagate); the worker's
interceptor turns a ``ConveyorError`` into a Temporal ``ApplicationError`` whose ``type`` is the error
*kind* and whose first detail is the business ``code`` (``UNKNOWN_TOOL``, ``INSUFFICIENT_CREDITS``…).
Workflows read failures back with :func:`failure_info`; the API maps kinds to HTTP codes with
:func:`http_status`. Nothing branches on message text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, ChildWorkflowError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError


class ErrorKind(StrEnum):
    """What kind of failure this is; used as the ``ApplicationError.type``."""

    RETRYABLE = "Retryable"
    BAD_INPUT = "BadInput"
    NOT_FOUND = "NotFound"
    CONFLICT = "Conflict"
    TOO_LARGE = "TooLarge"
    PAYMENT_REQUIRED = "PaymentRequired"
    RATE_LIMITED = "RateLimited"
    UNAUTHORIZED = "Unauthorized"
    FORBIDDEN = "Forbidden"
    EXTERNAL_SERVICE = "ExternalService"
    TIMEOUT = "Timeout"
    CANCELLED = "Cancelled"
    INTERNAL = "Internal"


_HTTP_STATUS: dict[ErrorKind, int] = {
    ErrorKind.RETRYABLE: 503,
    ErrorKind.BAD_INPUT: 400,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.PAYMENT_REQUIRED: 402,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.UNAUTHORIZED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.EXTERNAL_SERVICE: 502,
    ErrorKind.TIMEOUT: 504,
    ErrorKind.CANCELLED: 409,
    ErrorKind.INTERNAL: 500,
}

#: Kinds that will never succeed on a retry.
PERMANENT_KINDS: frozenset[ErrorKind] = frozenset(
    {
        ErrorKind.BAD_INPUT,
        ErrorKind.NOT_FOUND,
        ErrorKind.CONFLICT,
        ErrorKind.TOO_LARGE,
        ErrorKind.PAYMENT_REQUIRED,
        ErrorKind.CANCELLED,
        ErrorKind.UNAUTHORIZED,
        ErrorKind.FORBIDDEN,
    }
)

#: Python exception types that mean a programming or input error: never retried (as in the seeds).
NON_RETRYABLE_PYTHON_ERRORS: tuple[str, ...] = ("ValueError", "KeyError", "PermissionError", "TypeError")

#: The list every retry policy passes as ``non_retryable_error_types``.
NON_RETRYABLE_ERROR_TYPES: list[str] = [k.value for k in PERMANENT_KINDS] + list(NON_RETRYABLE_PYTHON_ERRORS)


def http_status(kind: ErrorKind | str) -> int:
    """HTTP status code for an error kind (500 for anything unknown)."""
    try:
        return _HTTP_STATUS[ErrorKind(kind)]
    except ValueError:
        return 500


class ConveyorError(Exception):
    """Base of every error Conveyor raises on purpose."""

    kind: ErrorKind = ErrorKind.INTERNAL
    default_code: str = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retry_after: timedelta | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.retry_after = retry_after
        self.details = details or {}

    @property
    def retryable(self) -> bool:
        """Whether retrying the same call may succeed."""
        return self.kind not in PERMANENT_KINDS

    @property
    def http_status(self) -> int:
        """HTTP status code of this error."""
        return http_status(self.kind)

    def to_application_error(self) -> ApplicationError:
        """The Temporal form of this error (type = kind, first detail = code)."""
        return ApplicationError(
            self.message,
            self.code,
            self.details,
            type=self.kind.value,
            non_retryable=not self.retryable,
            next_retry_delay=self.retry_after,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON body for API responses and ``--json`` CLI output."""
        body: dict[str, Any] = {"code": self.code, "kind": self.kind.value, "message": self.message}
        if self.details:
            body["details"] = self.details
        if self.retry_after is not None:
            body["retry_after"] = int(self.retry_after.total_seconds())
        return body


class BadInput(ConveyorError):
    """Input that will never succeed: a malformed file, an unknown name, a missing field."""

    kind = ErrorKind.BAD_INPUT
    default_code = "BAD_INPUT"


class NotFound(ConveyorError):
    """The thing asked for does not exist (or belongs to someone else)."""

    kind = ErrorKind.NOT_FOUND
    default_code = "NOT_FOUND"


class Conflict(ConveyorError):
    """The request conflicts with the current state (e.g. cancelling a finished task)."""

    kind = ErrorKind.CONFLICT
    default_code = "CONFLICT"


class TooLarge(ConveyorError):
    """An upload or input exceeds a configured size limit."""

    kind = ErrorKind.TOO_LARGE
    default_code = "TOO_LARGE"


class InsufficientCredits(ConveyorError):
    """The user cannot pay for the work; nothing was charged."""

    kind = ErrorKind.PAYMENT_REQUIRED
    default_code = "INSUFFICIENT_CREDITS"


class RateLimited(ConveyorError):
    """A provider asked us to slow down; retried after ``retry_after``."""

    kind = ErrorKind.RATE_LIMITED
    default_code = "RATE_LIMITED"


class Unauthorized(ConveyorError):
    """The request carries no valid API key (missing, unknown, revoked or expired)."""

    kind = ErrorKind.UNAUTHORIZED
    default_code = "API_KEY_INVALID"


class Forbidden(ConveyorError):
    """The caller is known but may not do this (an operator-only endpoint)."""

    kind = ErrorKind.FORBIDDEN
    default_code = "FORBIDDEN"


class ExternalServiceError(ConveyorError):
    """A dependency (S3, an HTTP API, the database) failed in a way that may pass."""

    kind = ErrorKind.EXTERNAL_SERVICE
    default_code = "EXTERNAL_SERVICE_ERROR"


class Retryable(ConveyorError):
    """A transient failure of our own; the retry policy handles it."""

    kind = ErrorKind.RETRYABLE
    default_code = "TRANSIENT_ERROR"


class OperationTimeout(ConveyorError):
    """A time limit was reached."""

    kind = ErrorKind.TIMEOUT
    default_code = "TIMEOUT"


class Cancelled(ConveyorError):
    """The work was cancelled on request."""

    kind = ErrorKind.CANCELLED
    default_code = "CANCELLED"


_BY_KIND: dict[ErrorKind, type[ConveyorError]] = {
    cls.kind: cls
    for cls in (
        BadInput,
        NotFound,
        Conflict,
        TooLarge,
        InsufficientCredits,
        RateLimited,
        Unauthorized,
        Forbidden,
        ExternalServiceError,
        Retryable,
        OperationTimeout,
        Cancelled,
    )
}


@dataclass(frozen=True)
class FailureInfo:
    """What a workflow needs to know about a failed activity or child: code, kind, message."""

    code: str
    kind: ErrorKind
    message: str

    def to_error(self) -> ConveyorError:
        """Rebuild the matching :class:`ConveyorError` (for API/CLI callers)."""
        cls = _BY_KIND.get(self.kind, ConveyorError)
        return cls(self.message, code=self.code)

    def to_application_error(self, message: str | None = None) -> ApplicationError:
        """A non-retryable ``ApplicationError`` of this kind and code (how a workflow fails with it)."""
        return ApplicationError(message or self.message, self.code, type=self.kind.value, non_retryable=True)


def failure_info(err: BaseException) -> FailureInfo:
    """Describe a failure caught in a workflow or client, walking Temporal's cause chain. Pure."""
    cur: BaseException | None = err
    while cur is not None:
        if isinstance(cur, ConveyorError):
            return FailureInfo(cur.code, cur.kind, cur.message)
        if isinstance(cur, ApplicationError):
            try:
                kind = ErrorKind(cur.type or "")
            except ValueError:
                return FailureInfo("INTERNAL_ERROR", ErrorKind.INTERNAL, cur.message)
            default = _BY_KIND.get(kind, ConveyorError).default_code
            return FailureInfo(str(cur.details[0]) if cur.details else default, kind, cur.message)
        if isinstance(cur, TemporalTimeoutError):
            return FailureInfo("TIMEOUT", ErrorKind.TIMEOUT, "time limit reached")
        if isinstance(cur, CancelledError):
            return FailureInfo("CANCELLED", ErrorKind.CANCELLED, "cancelled")
        if isinstance(cur, ActivityError | ChildWorkflowError | WorkflowFailureError) and cur.cause is not None:
            cur = cur.cause
            continue
        cur = cur.__cause__
    return FailureInfo("INTERNAL_ERROR", ErrorKind.INTERNAL, str(err) or type(err).__name__)


#: ``scheme://user:pass@`` (or ``scheme://token@``): the credentials part of a URL.
_URL_CREDENTIALS = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*)://[^\s/@'\"`<>]+@")
#: A whole database (or broker) URL: its host, port and database name say where the data lives.
_DB_URL = re.compile(
    r"\b((?:postgres(?:ql)?|mysql|mariadb|sqlite|oracle|mssql|redis|rediss|mongodb(?:\+srv)?|amqps?)"
    r"(?:\+[\w-]+)?)://[^\s'\"`<>]*",
    re.IGNORECASE,
)
#: ``file://`` URLs are paths.
_FILE_URL = re.compile(r"\bfile://[^\s'\"`<>]*", re.IGNORECASE)
#: An absolute path (POSIX, ``~/…`` or ``C:\\…``), not a URL's path and not a ratio such as ``1/2``.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~\\-])(?:~|[A-Za-z]:)?[/\\](?=[\w.~-])[^\s'\"`,;:()\[\]{}<>|]*")
#: The bound parameters SQLAlchemy puts in its errors (row values: user data).
_SQL_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\s*(?:\n|\(Background|$))", re.DOTALL)


def scrub_message(message: str) -> str:
    """``message`` without server paths, database URLs or URL credentials (what a tenant may see of an error). Pure.

    The kernel applies it to every exception that is not Conveyor's own before it leaves a worker (the full text
    is logged there); Conveyor's own messages are written for users and are left alone.
    """
    text = _DB_URL.sub(lambda m: f"{m.group(1)}://<redacted>", message)
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}://<redacted>@", text)
    text = _FILE_URL.sub("file://<path>", text)
    text = _SQL_PARAMETERS.sub("[parameters: <redacted>]", text)
    return _ABSOLUTE_PATH.sub("<path>", text)
