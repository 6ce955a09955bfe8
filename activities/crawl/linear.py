"""A small client of Linear's GraphQL API: file an issue idempotently, read one back."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx

from conveyor.errors import BadInput, ConveyorError, ExternalServiceError, RateLimited
from conveyor.outbound import OutboundClient

LINEAR_API_URL = "https://api.linear.app/graphql"

#: Used when Linear rate-limits without saying for how long.
DEFAULT_RETRY_AFTER = timedelta(seconds=60)
#: Linear's windows are an hour long: never wait longer than that, whatever a header says.
_MAX_RETRY_AFTER = timedelta(hours=1)

CREATE_ISSUE_MUTATION = """
mutation IssueCreate($input: IssueCreateInput!) {
  issueCreate(input: $input) {
    success
    issue { id identifier url }
  }
}
""".strip()

GET_ISSUE_QUERY = """
query Issue($id: String!) {
  issue(id: $id) { id identifier url }
}
""".strip()

_AUTH_TYPES = frozenset({"AUTHENTICATION_ERROR", "FORBIDDEN"})
_RATE_TYPES = frozenset({"RATELIMITED", "RATE_LIMITED"})
# Linear's "invalid input" errors and GraphQL validation failures: the same request will never pass.
_REJECTED_TYPES = frozenset(
    {"INVALID_INPUT", "INPUT_ERROR", "USER_ERROR", "GRAPHQL_ERROR", "GRAPHQL_VALIDATION_FAILED", "BAD_USER_INPUT"}
)

_ErrorClass = Literal["auth", "rate", "rejected", "unavailable"]


@dataclass(frozen=True)
class LinearIssue:
    """An issue as Linear knows it: its UUID, its team-scoped identifier (``ENG-123``) and its URL."""

    id: str
    identifier: str
    url: str


class _GraphQLErrors(Exception):
    """A GraphQL answer that carries errors (raised inside the client, never out of it)."""

    def __init__(self, errors: list[dict[str, Any]], error: ConveyorError) -> None:
        super().__init__(error.message)
        self.errors = errors
        self.error = error


class LinearClient(OutboundClient):
    """Files and reads Linear issues of one team with a personal API key."""

    def __init__(
        self,
        api_key: str,
        team_id: str,
        *,
        api_url: str = LINEAR_API_URL,
        timeout_s: float = 20.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if not api_key:
            raise BadInput("Linear API key is empty", code="LINEAR_AUTH_FAILED")
        if not team_id:
            raise BadInput("Linear team id is empty", code="LINEAR_REJECTED")
        self._api_key = api_key
        self._team_id = team_id
        self._api_url = api_url
        super().__init__(timeout_s=timeout_s, http=http)

    async def create_issue(
        self,
        *,
        issue_id: str,
        title: str,
        description: str,
        priority: int,
        label_ids: list[str] | None = None,
    ) -> LinearIssue:
        """Create the issue with the caller's UUID, or return the one an earlier attempt already created."""
        _check_issue(issue_id, title, priority)
        issue_input: dict[str, Any] = {
            "id": issue_id,
            "teamId": self._team_id,
            "title": title,
            "description": description,
            "priority": priority,
        }
        if label_ids:
            issue_input["labelIds"] = list(label_ids)
        try:
            data = await self._execute(CREATE_ISSUE_MUTATION, {"input": issue_input})
        except _GraphQLErrors as exc:
            if isinstance(exc.error, BadInput) and exc.error.code == "LINEAR_AUTH_FAILED":
                raise exc.error from None
            if isinstance(exc.error, RateLimited):
                raise exc.error from None
            # Most likely "Entity already exists": an earlier attempt created the issue but its answer was lost.
            existing = await self.get_issue(issue_id)
            if existing is not None:
                return existing
            raise exc.error from None
        created = data.get("issueCreate")
        issue = created.get("issue") if isinstance(created, dict) else None
        if isinstance(issue, dict):
            return _parse_issue(issue)
        existing = await self.get_issue(issue_id)
        if existing is not None:
            return existing
        raise ExternalServiceError("Linear issueCreate answered without an issue", code="LINEAR_UNAVAILABLE")

    async def get_issue(self, issue_id: str) -> LinearIssue | None:
        """The issue with this id (or identifier), or None when Linear does not know it."""
        try:
            data = await self._execute(GET_ISSUE_QUERY, {"id": issue_id})
        except _GraphQLErrors as exc:
            # Linear answers an unknown id with an "Entity not found" invalid-input error.
            if isinstance(exc.error, BadInput) and exc.error.code == "LINEAR_REJECTED":
                return None
            raise exc.error from None
        issue = data.get("issue")
        if issue is None:
            return None
        if not isinstance(issue, dict):
            raise ExternalServiceError("Linear answered an issue of an unexpected shape", code="LINEAR_UNAVAILABLE")
        return _parse_issue(issue)

    async def _execute(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """POST one GraphQL operation and return its ``data``; raise mapped errors, ``_GraphQLErrors`` for errors."""
        headers = {"Authorization": self._api_key, "Content-Type": "application/json"}
        payload = {"query": query, "variables": variables}
        try:
            # httpx's timeout bounds each phase; this bounds the whole exchange (a server dripping bytes).
            async with asyncio.timeout(self._timeout_s):
                response = await self._http.post(self._api_url, headers=headers, json=payload, timeout=self._timeout_s)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise ExternalServiceError(
                f"Linear did not answer within {self._timeout_s:g} s", code="LINEAR_UNAVAILABLE"
            ) from exc
        except httpx.HTTPError as exc:
            raise ExternalServiceError(
                self._redact(f"Linear unreachable: {type(exc).__name__}: {exc}"), code="LINEAR_UNAVAILABLE"
            ) from exc

        status = response.status_code
        if status in (401, 403):
            raise BadInput(f"Linear refused the API key (HTTP {status})", code="LINEAR_AUTH_FAILED")
        if status == 429:
            retry_after = _retry_after(response.headers)
            raise RateLimited(
                f"Linear rate limit reached; retry in {retry_after.total_seconds():g} s",
                code="LINEAR_RATE_LIMITED",
                retry_after=retry_after,
            )
        if status >= 500:
            raise ExternalServiceError(f"Linear answered HTTP {status}", code="LINEAR_UNAVAILABLE")

        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            if status >= 400:
                raise BadInput(f"Linear rejected the request (HTTP {status})", code="LINEAR_REJECTED")
            raise ExternalServiceError(
                f"Linear answered HTTP {status} with a body that is not a JSON object", code="LINEAR_UNAVAILABLE"
            )

        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            error_dicts = [e for e in errors if isinstance(e, dict)]
            raise _GraphQLErrors(error_dicts, self._map_errors(error_dicts, response.headers))
        if status >= 400:
            raise BadInput(f"Linear rejected the request (HTTP {status})", code="LINEAR_REJECTED")
        data = body.get("data")
        if not isinstance(data, dict):
            raise ExternalServiceError("Linear answered without data", code="LINEAR_UNAVAILABLE")
        return data

    def _map_errors(self, errors: list[dict[str, Any]], headers: httpx.Headers) -> ConveyorError:
        """The one error that stands for a list of GraphQL errors (the most telling kind wins)."""
        classes = [_classify(e) for e in errors] or ["unavailable"]
        message = "; ".join(str(e.get("message") or "unknown error") for e in errors)[:300] or "unknown error"
        message = self._redact(message)
        if "auth" in classes:
            return BadInput(f"Linear refused the API key: {message}", code="LINEAR_AUTH_FAILED")
        if "rate" in classes:
            retry_after = _retry_after(headers)
            return RateLimited(
                f"Linear rate limit reached; retry in {retry_after.total_seconds():g} s",
                code="LINEAR_RATE_LIMITED",
                retry_after=retry_after,
            )
        if "unavailable" in classes:
            return ExternalServiceError(f"Linear failed: {message}", code="LINEAR_UNAVAILABLE")
        return BadInput(f"Linear rejected the request: {message}", code="LINEAR_REJECTED")

    def _redact(self, text: str) -> str:
        """The text with the API key blanked out, should anything ever echo it."""
        return text.replace(self._api_key, "***")


def _check_issue(issue_id: str, title: str, priority: int) -> None:
    """Refuse, before any request, an issue Linear would reject."""
    try:
        uuid.UUID(issue_id)
    except (ValueError, TypeError):
        raise BadInput("Linear issue id must be a UUID", code="LINEAR_INVALID_ISSUE") from None
    if not title.strip():
        raise BadInput("Linear issue title is empty", code="LINEAR_INVALID_ISSUE")
    if isinstance(priority, bool) or not 0 <= priority <= 4:
        raise BadInput(f"Linear issue priority must be 0-4, not {priority!r}", code="LINEAR_INVALID_ISSUE")


def _classify(error: dict[str, Any]) -> _ErrorClass:
    """What one GraphQL error means for the caller, from its ``extensions.type``/``code``."""
    extensions = error.get("extensions")
    ext = extensions if isinstance(extensions, dict) else {}
    names = {
        str(value).strip().upper().replace(" ", "_").replace("-", "_")
        for value in (ext.get("type"), ext.get("code"))
        if value
    }
    if names & _AUTH_TYPES:
        return "auth"
    if names & _RATE_TYPES:
        return "rate"
    if names & _REJECTED_TYPES or ext.get("userError") is True:
        return "rejected"
    # Internal errors, lock timeouts and anything unknown may pass on a retry: the create is idempotent.
    return "unavailable"


def _parse_issue(issue: dict[str, Any]) -> LinearIssue:
    """A :class:`LinearIssue` from the ``{ id identifier url }`` selection."""
    fields = (issue.get("id"), issue.get("identifier"), issue.get("url"))
    if not all(isinstance(value, str) and value for value in fields):
        raise ExternalServiceError("Linear answered an issue without id, identifier or url", code="LINEAR_UNAVAILABLE")
    return LinearIssue(id=str(fields[0]), identifier=str(fields[1]), url=str(fields[2]))


def _retry_after(headers: httpx.Headers) -> timedelta:
    """How long Linear asks us to wait: ``Retry-After`` (seconds or a date), else the epoch-ms reset header."""
    raw = headers.get("retry-after")
    if raw:
        try:
            return _clamp(timedelta(seconds=float(raw)))
        except (ValueError, OverflowError):
            pass
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return _clamp(timedelta(seconds=when.timestamp() - time.time()))
    reset = headers.get("x-ratelimit-requests-reset")
    if reset:
        try:
            return _clamp(timedelta(milliseconds=float(reset) - time.time() * 1000))
        except (ValueError, OverflowError):
            pass
    return DEFAULT_RETRY_AFTER


def _clamp(delay: timedelta) -> timedelta:
    """At least a second (a reset already past still needs a pause), at most an hour."""
    return min(max(delay, timedelta(seconds=1)), _MAX_RETRY_AFTER)
