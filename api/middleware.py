"""The API's edge: key, size, rate and stream limits checked before a body is read; one access log line per request.

A pure ASGI middleware (it never buffers a body): it answers 401 without a live key on every path that is not
declared public, and 429 past the key's rate or stream allowance, before the app sees the request. The body cap
is the route's: when the app first asks for the body (routing is done by then, nothing has been read yet) the
declared ``Content-Length`` is checked against it, then a running count of the bytes handed over; past it the app
gets no more and the client gets 413. The key is resolved once and its owner put on the scope, where
:func:`api.deps.get_current_user` picks it up.

Counters (rate buckets, open streams) live in this process: N API replicas allow N times the configured rates.
"""

from __future__ import annotations

import json
import logging
import math
import time
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi import params
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.auth import KeyOwner, authenticate
from conveyor.errors import BadInput, ConveyorError, RateLimited, TooLarge, Unauthorized
from conveyor.settings import Settings

#: Paths anyone may call without an API key: exact paths, or prefixes ending in ``/``. Each of them is public for a
#: reason: health, the API docs, the tool catalogue and the price list say nothing about any tenant; the codec
#: server checks its own credential; webhooks check their provider's signature. Add to this list (never bypass
#: the middleware) when a route authenticates another way.
PUBLIC_PATHS: tuple[str, ...] = (
    "/api/health",
    "/api/tools",
    "/api/pricing",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/openapi.json",
    "/codec/",
    "/webhooks/",
)

#: Routes that hold a connection open for a long time, counted per key: (method, path template).
STREAM_ROUTES: tuple[tuple[str, str], ...] = (("GET", "/api/workflows/{workflow_id}/events"),)
_STREAM_PATTERNS = [(method, compile_path(template)[0]) for method, template in STREAM_ROUTES]

#: The codec server's payload routes: their bodies are Temporal payloads (up to 2 MB each, base64 in JSON), capped
#: by ``max_codec_bytes`` rather than ``max_json_bytes`` (its sign-in form keeps the JSON cap).
CODEC_ROUTES: tuple[str, ...] = ("/codec/decode", "/codec/encode")
#: Room for multipart boundaries, part headers and the small form fields beside the files of an upload.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
#: What a client refused for too many open streams is told to wait, in seconds.
STREAM_RETRY_AFTER_S = 5
#: Key on the ASGI scope where the owner of the request's key is kept for the route's dependencies.
SCOPE_OWNER = "conveyor.owner"
#: The header the key comes in.
KEY_HEADER = b"x-api-key"

access_log = logging.getLogger("conveyor.access")


def is_public(path: str, public: Iterable[str] = PUBLIC_PATHS) -> bool:
    """Whether ``path`` may be called without an API key."""
    return any(path.startswith(p) if p.endswith("/") else path == p for p in public)


def is_stream(scope: Scope) -> bool:
    """Whether the request opens one of the long-lived streams counted per key."""
    method, path = scope.get("method", ""), scope.get("path", "")
    return any(method == m and pattern.match(path) for m, pattern in _STREAM_PATTERNS)


def _is_list(annotation: Any) -> bool:
    """Whether a parameter annotation is a list (or an optional list) of something."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(arg) for arg in typing.get_args(annotation))
    return origin in (list, tuple, set, Sequence)


def _file_params(dependant: Dependant) -> list[Any]:
    """The ``File(...)`` body parameters of a route and of every dependency it uses."""
    found = [p for p in dependant.body_params if isinstance(p.field_info, params.File)]
    for sub in dependant.dependencies:
        found += _file_params(sub)
    return found


def body_cap(route: BaseRoute | None, settings: Settings) -> int:
    """The largest body ``route`` accepts: the upload cap for each file it takes, the codec cap, else the JSON cap."""
    if isinstance(route, APIRoute):
        if route.path in CODEC_ROUTES:
            return settings.max_codec_bytes
        files = _file_params(route.dependant)
        if files:
            count = sum(settings.max_files_per_task if _is_list(p.field_info.annotation) else 1 for p in files)
            return settings.max_upload_bytes * count + MULTIPART_OVERHEAD_BYTES
    return settings.max_json_bytes


@dataclass
class TokenBucket:
    """A token bucket: ``burst`` tokens, refilled at ``rate_per_s``; each request takes one."""

    rate_per_s: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take a token; 0.0 when one was there, else the seconds until one will be."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_s if self.rate_per_s > 0 else math.inf


@dataclass
class EdgeCounters:
    """The per-key counters of one API process: rate buckets and open streams."""

    buckets: dict[int, TokenBucket] = field(default_factory=dict)
    streams: dict[int, int] = field(default_factory=dict)


class _BodyTooLarge(Exception):
    """Raised into the app when it pulls more body than the route allows."""


class EdgeMiddleware:
    """Authentication, body size, rate and stream limits before the app reads anything; an access log line after."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        public_paths: Sequence[str] = PUBLIC_PATHS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.settings = settings
        self.public_paths = tuple(public_paths)
        self.counters = EdgeCounters()
        self._clock = clock
        self._caps: dict[int, int] = {}

    def _cap(self, route: BaseRoute | None) -> int:
        """The body cap of ``route`` (worked out once per route)."""
        key = id(route)
        if key not in self._caps:
            self._caps[key] = body_cap(route, self.settings)
        return self._caps[key]

    async def _owner(self, scope: Scope, key: str) -> KeyOwner:
        """The owner of ``key`` (one lookup, in a session of its own that is closed before the app runs)."""
        state = scope["app"].state.conveyor
        async with state.sessions() as session:
            return await authenticate(session, key)

    def _rate(self, owner: KeyOwner) -> float:
        """Take a request from the key's bucket; the seconds to wait when it is empty, else 0."""
        bucket = self.counters.buckets.get(owner.key_id)
        now = self._clock()
        if bucket is None:
            burst = float(max(1, self.settings.rate_limit_burst))
            bucket = TokenBucket(self.settings.rate_limit_per_minute / 60.0, burst, burst, now)
            self.counters.buckets[owner.key_id] = bucket
        return bucket.take(now)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request at the edge, then pass it on with a counting ``receive``."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        outcome: dict[str, Any] = {"status": 0, "owner": None}
        try:
            await self._handle(scope, receive, send, outcome)
        finally:
            owner: KeyOwner | None = outcome["owner"]
            access_log.info(
                "request",
                extra={
                    "http_method": scope.get("method", ""),
                    "path": getattr(scope.get("route"), "path", None) or "<unrouted>",
                    "status": outcome["status"],
                    "user_id": owner.user.id if owner else None,
                    "key_prefix": owner.prefix if owner else None,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )

    async def _handle(self, scope: Scope, receive: Receive, send: Send, outcome: dict[str, Any]) -> None:
        """Authenticate, rate-limit and size-check the request, then run the app."""

        async def refuse(err: ConveyorError) -> None:
            outcome["status"] = err.http_status
            await send_error(send, err)

        headers = dict(scope.get("headers") or [])
        raw_key = headers.get(KEY_HEADER, b"").decode("latin-1").strip()
        owner: KeyOwner | None = None
        if is_public(scope.get("path", ""), self.public_paths):
            if raw_key:  # a key on a public path only adds detail (admins' health); a bad one is ignored
                try:
                    owner = await self._owner(scope, raw_key)
                except Unauthorized:
                    owner = None
        else:
            if not raw_key:
                await refuse(Unauthorized("send your API key in X-API-Key", code="API_KEY_MISSING"))
                return
            try:
                owner = await self._owner(scope, raw_key)
            except Unauthorized as err:
                await refuse(err)
                return
            wait = self._rate(owner)
            if wait > 0:
                await refuse(
                    RateLimited(
                        "too many requests for this API key",
                        code="RATE_LIMITED",
                        retry_after=_seconds(wait),
                        details={"per_minute": self.settings.rate_limit_per_minute},
                    )
                )
                return
        outcome["owner"] = owner
        if owner is not None:
            scope[SCOPE_OWNER] = owner

        try:
            declared = _content_length(headers)
        except BadInput as err:
            await refuse(err)
            return

        if owner is not None and is_stream(scope):
            open_now = self.counters.streams.get(owner.key_id, 0)
            if open_now >= self.settings.sse_max_streams_per_key:
                await refuse(
                    RateLimited(
                        f"at most {self.settings.sse_max_streams_per_key} event streams per API key at once",
                        code="TOO_MANY_STREAMS",
                        retry_after=_seconds(STREAM_RETRY_AFTER_S),
                        details={"limit": self.settings.sse_max_streams_per_key},
                    )
                )
                return
            self.counters.streams[owner.key_id] = open_now + 1
            try:
                await self._run_app(scope, receive, send, declared, outcome)
            finally:
                left = self.counters.streams.get(owner.key_id, 1) - 1
                if left > 0:
                    self.counters.streams[owner.key_id] = left
                else:
                    self.counters.streams.pop(owner.key_id, None)
            return
        await self._run_app(scope, receive, send, declared, outcome)

    async def _run_app(
        self, scope: Scope, receive: Receive, send: Send, declared: int | None, outcome: dict[str, Any]
    ) -> None:
        """Run the app; refuse with 413 when the body it asks for is (or grows) larger than its route's cap."""
        received = 0
        cap: int | None = None
        refused = False
        app_started = False

        async def counted_receive() -> Message:
            nonlocal received, refused, cap
            if cap is None:  # the first call: the router has picked the route, and no byte has been read
                cap = self._cap(scope.get("route"))
                if declared is not None and declared > cap:
                    refused = True
                    raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    refused = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal app_started
            if refused:
                return  # the app's answer to a body it could not finish reading is replaced by the 413
            if message["type"] == "http.response.start":
                app_started = True
                outcome["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused:
                outcome["status"] = outcome["status"] or 500
                raise
        if refused and not app_started:
            outcome["status"] = 413
            await send_error(send, _too_large(cap or 0))


def _seconds(value: float) -> timedelta:
    """A whole number of seconds (at least one) as a timedelta, for ``Retry-After``."""
    return timedelta(seconds=max(1, math.ceil(value)))


def _too_large(cap: int) -> TooLarge:
    """The 413 of a body over ``cap`` bytes."""
    return TooLarge(f"the request body is larger than {cap} bytes", code="BODY_TOO_LARGE", details={"limit": cap})


def _content_length(headers: dict[bytes, bytes]) -> int | None:
    """The declared body length, if any (BadInput when it is not a number)."""
    raw = headers.get(b"content-length")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise BadInput("Content-Length is not a length", code="BAD_CONTENT_LENGTH")
    return value


async def send_error(send: Send, err: ConveyorError) -> None:
    """Answer with the API's error JSON (``{"error": {code, kind, message, ...}}``) and its status."""
    body = json.dumps({"error": err.to_dict()}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if err.retry_after is not None:
        headers.append((b"retry-after", str(int(err.retry_after.total_seconds())).encode()))
    await send({"type": "http.response.start", "status": err.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = [
    "CODEC_ROUTES",
    "PUBLIC_PATHS",
    "SCOPE_OWNER",
    "STREAM_ROUTES",
    "EdgeMiddleware",
    "TokenBucket",
    "body_cap",
    "is_public",
    "is_stream",
    "send_error",
]
