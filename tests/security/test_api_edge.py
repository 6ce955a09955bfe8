"""The API's edge (issue 12, items 3, 6, 12, 14): key before body, size caps, rate and stream limits, cached health.

The app is the real one (``create_app``) on a migrated SQLite file of the test's own, called in process through
httpx's ASGI transport, which hands the app a body chunk only when the app asks for one: counting the chunks
asked for is counting what the app received. The event-stream test serves the app with uvicorn on loopback
against the real dev server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner

from activities.video.models import Video
from api import app as api_app
from api.app import create_app
from api.deps import get_current_user, get_owner_id, get_session
from api.middleware import EdgeMiddleware
from api.routes import workflows as workflows_routes
from api.server import uvicorn_config
from conveyor.auth import create_user
from conveyor.codec import EncryptionCodec, load_keys
from conveyor.db import create_engine, migrate, session_factory
from conveyor.settings import Settings
from conveyor.temporal import OWNER_ATTR, free_port
from tests.helpers import assert_eventually, make_worker

GB = 1024**3
MB = 1024 * 1024


@dataclass
class Edge:
    """The app under test, its settings and DB, and a count of the body bytes the app pulled."""

    app: FastAPI
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    pulled: list[int]

    async def new_user(self, *, admin: bool = False) -> tuple[int, str]:
        """A fresh user and its key."""
        async with self.sessions.begin() as session:
            role = "admin" if admin else "user"
            user, key = await create_user(session, f"edge-{uuid.uuid4().hex[:8]}", 10, role=role)
            return user.id, key

    def http(self, key: str | None = None) -> httpx.AsyncClient:
        """A client of the app sending ``key``."""

        async def counting(scope: Any, receive: Any, send: Any) -> None:
            async def counted() -> Any:
                message = await receive()
                if message["type"] == "http.request":
                    self.pulled.append(len(message.get("body", b"")))
                return message

            await self.app(scope, counted, send)

        headers = {"X-API-Key": key} if key else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=counting), base_url="http://edge.test", headers=headers, timeout=60
        )


def edge_settings(var: Path, **overrides: Any) -> Settings:
    """Settings of an app under ``var``, with Temporal at a closed loopback port unless told otherwise."""
    values: dict[str, Any] = {
        "var_dir": var,
        "temporal_address": f"127.0.0.1:{free_port()}",
        "max_upload_bytes": 100_000,
        "max_json_bytes": 4096,
        **overrides,
    }
    return Settings(**values)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Edge]:
    """The app with its lifespan running on a migrated database."""
    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            yield Edge(app, settings, session_factory(engine), [])
    finally:
        await engine.dispose()


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    """The app with small caps: 100 kB per uploaded file, 4 kB JSON."""
    async with running(edge_settings(tmp_path)) as app:
        yield app


class Body:
    """A request body produced lazily in chunks; ``sent`` counts the chunks anyone asked for."""

    def __init__(self, total: int, chunk: int = MB, prefix: bytes = b"", suffix: bytes = b"") -> None:
        self.total, self.chunk, self.prefix, self.suffix = total, chunk, prefix, suffix
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.prefix:
            self.sent += 1
            yield self.prefix
        left = self.total
        while left > 0:
            n = min(self.chunk, left)
            left -= n
            self.sent += 1
            yield b"x" * n
        if self.suffix:
            self.sent += 1
            yield self.suffix


def multipart(total: int, chunk: int) -> tuple[Body, str]:
    """A multipart upload of one ``total``-byte file, and its content type."""
    boundary = "edgeboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    return Body(total, chunk, head, f"\r\n--{boundary}--\r\n".encode()), f"multipart/form-data; boundary={boundary}"


# ------------------------------------------------------------------ item 3: the key and the size before the body


@pytest.mark.parametrize("key", [None, "cvy_not-a-real-key"])
async def test_unauthenticated_gigabyte_upload_is_refused_before_any_body_byte(edge: Edge, key: str | None) -> None:
    body, content_type = multipart(GB, MB)
    async with edge.http(key) as http:
        response = await http.post("/api/videos/upload", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == ("API_KEY_MISSING" if key is None else "API_KEY_INVALID")
    assert edge.pulled == [] and body.sent == 0  # not one byte of the gigabyte was read


async def test_oversize_content_length_is_413_before_any_body_byte(edge: Edge) -> None:
    _user, key = await edge.new_user()
    upload, content_type = multipart(GB, MB)
    json_body = Body(5000)
    async with edge.http(key) as http:
        too_big_upload = await http.post(
            "/api/videos/upload",
            content=upload,
            headers={"Content-Type": content_type, "Content-Length": str(GB + 200)},
        )
        too_big_json = await http.post(
            "/api/crawls",
            content=json_body,
            headers={"Content-Type": "application/json", "Content-Length": "5000"},
        )
    assert too_big_upload.status_code == 413
    error = too_big_upload.json()["error"]
    assert (error["code"], error["kind"]) == ("BODY_TOO_LARGE", "TooLarge")
    assert error["details"]["limit"] == edge.settings.max_upload_bytes + 64 * 1024  # one file's cap (+ form parts)
    assert too_big_json.status_code == 413
    assert too_big_json.json()["error"]["details"]["limit"] == edge.settings.max_json_bytes
    assert edge.pulled == [] and upload.sent == 0 and json_body.sent == 0


async def test_chunked_upload_over_the_cap_is_413_and_nothing_is_stored(edge: Edge) -> None:
    user_id, key = await edge.new_user()
    body, content_type = multipart(10 * MB, 16 * 1024)  # no Content-Length: only a running count can stop it
    async with edge.http(key) as http:
        response = await http.post("/api/videos/upload", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "BODY_TOO_LARGE"
    cap = edge.settings.max_upload_bytes + 64 * 1024
    assert sum(edge.pulled) <= cap + 16 * 1024  # reading stopped at the chunk that crossed the cap
    assert body.sent < 10 * MB // (16 * 1024)
    async with edge.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Video).where(Video.user_id == user_id)) == 0
    blobs = edge.settings.var_dir / "blobs"
    assert not blobs.exists() or [p for p in blobs.rglob("*") if p.is_file()] == []


async def test_chunked_json_over_the_cap_is_413(edge: Edge) -> None:
    _user, key = await edge.new_user()
    body = Body(20_000, 1000, prefix=b'{"url": "http://127.0.0.1/", "pad": "', suffix=b'"}')
    async with edge.http(key) as http:
        response = await http.post("/api/crawls", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert sum(edge.pulled) <= edge.settings.max_json_bytes + 1000


async def test_codec_routes_take_temporal_sized_payloads_under_their_own_cap(tmp_path: Path) -> None:
    """A payload near Temporal's 2 MB limit (2.6 MB as base64 JSON) passes the 1 MB JSON cap; over the codec cap 413."""
    settings = edge_settings(tmp_path, codec_token="operator-token", max_json_bytes=1_000_000)
    assert settings.max_codec_bytes == 4_000_000  # the default
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"' + b"a" * 1_950_000 + b'"')
    sealed = (await EncryptionCodec(load_keys(settings)).encode([plain]))[0]
    body = json.dumps(
        {
            "payloads": [
                {
                    "metadata": {k: base64.b64encode(v).decode() for k, v in sealed.metadata.items()},
                    "data": base64.b64encode(sealed.data).decode(),
                }
            ]
        }
    ).encode()
    assert 2_500_000 <= len(body) < settings.max_codec_bytes
    auth = {"Authorization": "Bearer operator-token", "Content-Type": "application/json"}
    async with running(settings) as edge, edge.http() as http:
        decoded = await http.post("/codec/decode", content=body, headers=auth)
        declared_over = await http.post(
            "/codec/decode", content=Body(4_000_001, 64 * 1024), headers=auth | {"Content-Length": "4000001"}
        )
        pulled_before = sum(edge.pulled)
        streamed_over = await http.post("/codec/encode", content=Body(6 * MB, 64 * 1024), headers=auth)
    assert decoded.status_code == 200, decoded.text
    assert base64.b64decode(decoded.json()["payloads"][0]["data"]) == plain.data
    assert declared_over.status_code == 413
    assert declared_over.json()["error"]["details"]["limit"] == settings.max_codec_bytes
    assert streamed_over.status_code == 413  # no Content-Length: the running count stops it
    assert sum(edge.pulled) - pulled_before <= settings.max_codec_bytes + 64 * 1024


def test_the_runner_applies_the_uvicorn_limits(tmp_path: Path) -> None:
    settings = edge_settings(tmp_path, api_limit_concurrency=7, api_max_incomplete_event_bytes=9000, api_keep_alive_s=3)
    config = uvicorn_config(create_app(settings), settings)
    assert (config.limit_concurrency, config.h11_max_incomplete_event_size, config.timeout_keep_alive) == (7, 9000, 3)
    assert config.access_log is False  # uvicorn's own log would print query strings


# -------------------------------------------------- property: random chunkings against the cap (the real middleware)

CAP = 1000


async def _echo(request: Request) -> JSONResponse:
    """A webhook-like endpoint that reads its whole body (public paths are capped too)."""
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
    return JSONResponse({"seen": seen})


async def _post_echo(chunks: list[bytes], declare: bool) -> tuple[int, int, int]:
    """POST ``chunks`` to the echo endpoint behind the edge; (status, bytes it echoed, bytes it was handed)."""
    target = Starlette(routes=[Route("/webhooks/echo", _echo, methods=["POST"])])
    pulled = 0

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        async def counted() -> Any:
            nonlocal pulled
            message = await receive()
            if message["type"] == "http.request":
                pulled += len(message.get("body", b""))
            return message

        await target(scope, counted, send)

    edge = EdgeMiddleware(counting, Settings(max_json_bytes=CAP))
    headers = [(b"content-length", str(sum(map(len, chunks))).encode())] if declare else []
    scope = {"type": "http", "method": "POST", "path": "/webhooks/echo", "headers": headers, "query_string": b""}
    scope["app"] = target
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    messages = messages or [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await edge(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    echoed = json.loads(body)["seen"] if status == 200 else -1
    return status, echoed, pulled


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(min_value=0, max_value=600), max_size=8), declare=st.booleans())
def test_random_chunkings_never_pass_more_than_the_cap_nor_refuse_a_body_within_it(
    sizes: list[int], declare: bool
) -> None:
    total = sum(sizes)
    status, echoed, pulled = asyncio.run(_post_echo([b"y" * n for n in sizes], declare))
    assert pulled <= CAP  # the endpoint never got more than the cap, however the body was cut
    if total <= CAP:
        assert (status, echoed) == (200, total)
    else:
        assert status == 413


# ------------------------------------------------------------ item 6: rate limits, the stream cap, cached health


async def test_a_key_past_its_rate_gets_429_with_retry_after(tmp_path: Path) -> None:
    async with running(edge_settings(tmp_path, rate_limit_per_minute=1, rate_limit_burst=2)) as edge:
        _a, key = await edge.new_user()
        _b, other = await edge.new_user()
        async with edge.http(key) as http:
            answers = [await http.get("/api/keys") for _ in range(3)]
        async with edge.http(other) as http:
            others = await http.get("/api/keys")
    assert [r.status_code for r in answers] == [200, 200, 429]
    limited = answers[2]
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["code"] == "RATE_LIMITED"
    assert others.status_code == 200  # the bucket is per key


async def test_event_streams_per_key_are_capped(edge: Edge) -> None:
    """Two open streams of a key (the route's real path, held open by a stand-in endpoint) and a third is 429."""
    _user, key = await edge.new_user()
    release = asyncio.Event()
    opened: list[str] = []

    async def events(request: Request) -> JSONResponse:
        opened.append(request.path_params["workflow_id"])
        await release.wait()
        return JSONResponse({})

    target = Starlette(routes=[Route("/api/workflows/{workflow_id}/events", events)])
    target.state.conveyor = edge.app.state.conveyor  # the app's DB: the keys are looked up for real
    middleware = EdgeMiddleware(target, edge.settings.model_copy(update={"sse_max_streams_per_key": 2}))

    async def get(workflow_id: str) -> int:
        scope = {
            "type": "http",
            "method": "GET",
            "path": f"/api/workflows/{workflow_id}/events",
            "headers": [(b"x-api-key", key.encode())],
            "query_string": b"",
            "app": target,
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            await release.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await middleware(scope, receive, send)
        return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))

    first, second = asyncio.create_task(get("a")), asyncio.create_task(get("b"))

    async def both_open() -> None:
        assert sorted(opened) == ["a", "b"]

    await assert_eventually(both_open)
    assert await get("c") == 429  # answered while the two are open
    release.set()
    assert await first == await second == 200
    assert await get("d") == 200  # closed streams give their slots back
    assert sorted(opened) == ["a", "b", "d"]


@workflow.defn(name="EdgeHeldOpen")
class HeldOpen:
    """A workflow that runs until signalled (what an event stream watches while it is open)."""

    def __init__(self) -> None:
        self.finished = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.finished)

    @workflow.signal
    def finish(self) -> None:
        self.finished = True


def _dependency_calls(dependant: Dependant) -> set[Any]:
    """Every dependency callable a route's dependant uses, at any depth."""
    found: set[Any] = set()
    for sub in dependant.dependencies:
        found.add(sub.call)
        found |= _dependency_calls(sub)
    return found


def test_workflow_routes_take_no_db_session() -> None:
    """No workflow route (the event stream above all) depends on a request DB session, directly or through another."""
    routes = [r for r in workflows_routes.router.routes if isinstance(r, APIRoute)]
    assert {r.path for r in routes} >= {"/api/workflows/{workflow_id}/events"}
    for route in routes:
        calls = _dependency_calls(route.dependant)
        assert get_session not in calls and get_current_user not in calls, route.path
        assert get_owner_id in calls, route.path


async def test_open_event_streams_hold_no_db_connection(
    dev_server: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More open streams than the API's DB pool has connections, and other authenticated requests still answer.

    The app's pool is one connection with no overflow: a stream that kept a connection for its lifetime would leave
    every later request waiting for it (500 after ``pool_timeout``). The open streams hold no session either (a
    session that has run a query keeps its connection until it closes).
    """
    settings = edge_settings(tmp_path, temporal_address=dev_server.client.service_client.config.target_host)
    tiny: list[AsyncEngine] = []

    def tiny_pool(url: str) -> AsyncEngine:
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=10)
        tiny.append(engine)
        return engine

    monkeypatch.setattr(api_app, "create_engine", tiny_pool)
    live: set[AsyncSession] = set()  # the app's sessions not closed yet

    class CountedSession(AsyncSession):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            live.add(self)

        async def close(self) -> None:
            live.discard(self)
            await super().close()

    monkeypatch.setattr(
        api_app,
        "session_factory",
        lambda engine: async_sessionmaker(engine, expire_on_commit=False, class_=CountedSession),
    )
    streams = 3
    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    sessions = session_factory(engine)
    async with sessions.begin() as session:
        user, key = await create_user(session, f"sse-{uuid.uuid4().hex[:8]}", 10)
        user_id = user.id
    await engine.dispose()

    client = dev_server.client
    ids = [f"edge-sse-{uuid.uuid4()}" for _ in range(streams)]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.api_port, log_config=None)
    )
    async with make_worker(client, [HeldOpen], workflow_runner=UnsandboxedWorkflowRunner()) as worker:
        handles = [
            await client.start_workflow(
                HeldOpen.run,
                id=workflow_id,
                task_queue=worker.task_queue,
                search_attributes=TypedSearchAttributes([SearchAttributePair(OWNER_ATTR, str(user_id))]),
            )
            for workflow_id in ids
        ]
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.05)
            assert tiny and tiny[0].pool.size() == 1  # type: ignore[attr-defined]
            base = f"http://127.0.0.1:{settings.api_port}"
            async with (
                AsyncExitStack() as open_streams,
                httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, timeout=60) as http,
            ):
                for workflow_id in ids:
                    response = await open_streams.enter_async_context(
                        http.stream("GET", f"/api/workflows/{workflow_id}/events")
                    )
                    assert response.status_code == 200
                    lines = response.aiter_lines()
                    assert await anext(lines) == "event: progress"  # the stream is open and has answered
                assert live == set(), "an open stream holds a DB session"
                assert tiny[0].pool.checkedout() == 0  # type: ignore[attr-defined]
                others = [await http.get("/api/keys") for _ in range(3)]  # each needs the pool's one connection
                assert [r.status_code for r in others] == [200, 200, 200], others[-1].text
                progress = await http.get(f"/api/workflows/{ids[0]}/progress")
                assert progress.status_code == 200 and progress.json()["status"] == "running"
        finally:
            for handle in handles:
                await handle.signal(HeldOpen.finish)
            server.should_exit = True
            await serving


async def test_health_is_cached_and_shows_no_db_error_or_path(tmp_path: Path) -> None:
    hidden = tmp_path / "secret-folder" / "secret-db-name.db"
    hidden.mkdir(parents=True)  # a folder where the database file should be: every connection fails
    settings = edge_settings(tmp_path, database_url=f"sqlite+aiosqlite:///{hidden}", health_cache_ttl_s=3600)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://edge.test") as http:
            first = await http.get("/api/health")
            second = await http.get("/api/health")
    assert first.status_code == second.status_code == 503
    body = first.json()
    assert body["database"] == {"ok": False, "latency_ms": None, "detail": None}
    assert body["temporal"]["ok"] is False and body["temporal"]["detail"] is None
    for text in (first.text, second.text):
        assert "secret-db-name" not in text and "secret-folder" not in text and "Error" not in text
    assert second.json()["checked_at"] == body["checked_at"]
    assert app.state.health.probes == 1  # two calls, one probe of the DB and Temporal


# ------------------------------------------------------------------------------ item 12: operator endpoints


async def test_operator_endpoint_is_admin_only(edge: Edge) -> None:
    _user, key = await edge.new_user()
    _admin, admin_key = await edge.new_user(admin=True)
    async with edge.http(key) as http:
        tenant = await http.get("/api/system/resources")
    async with edge.http(admin_key) as http:
        operator = await http.get("/api/system/resources")
    async with edge.http() as http:
        anonymous = await http.get("/api/system/resources")
    assert tenant.status_code == 403 and tenant.json()["error"]["code"] == "ADMIN_ONLY"
    assert operator.status_code == 200, operator.text
    assert anonymous.status_code == 401


# ------------------------------------------------------------------------------ item 13: the access log


async def test_access_log_names_the_route_and_user_never_the_key(edge: Edge, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="conveyor.access")
    user_id, key = await edge.new_user()
    async with edge.http(key) as http:
        ok = await http.get("/api/keys", params={"token": "query-secret-123"})
        missing = await http.get(f"/api/workflows/wf-{uuid.uuid4()}/progress", headers={"X-API-Key": key + "x"})
    assert ok.status_code == 200 and missing.status_code == 401
    records = [r for r in caplog.records if r.name == "conveyor.access"]
    assert len(records) == 2
    first, second = (vars(r) for r in records)
    assert (first["http_method"], first["path"], first["status"]) == ("GET", "/api/keys", 200)
    assert (first["user_id"], first["key_prefix"]) == (user_id, key[:10])
    assert isinstance(first["duration_ms"], float)
    assert (second["path"], second["status"], second["user_id"]) == ("<unrouted>", 401, None)
    everything = json.dumps([{k: str(v) for k, v in vars(r).items()} for r in records])
    assert key not in everything and key[10:20] not in everything
    assert "query-secret-123" not in everything
