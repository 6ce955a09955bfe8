"""The FastAPI application: lifespan-managed clients, the kernel's routes, and every pipeline's router."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.links import add_links
from api.middleware import EdgeMiddleware
from api.routes import codec, health, keys, pricing, workflows
from api.state import AppState
from conveyor.db import create_engine, session_factory
from conveyor.pipeline import load
from conveyor.settings import Settings, get_settings
from conveyor.storage import blob_store_from_url
from workers.pipelines import PIPELINES


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for ``settings`` (the process settings by default)."""
    cfg = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(cfg.database_url_resolved)
        app.state.conveyor = AppState(
            settings=cfg,
            engine=engine,
            sessions=session_factory(engine),
            blobs=blob_store_from_url(cfg.blob_url_resolved, s3_endpoint_url=cfg.s3_endpoint_url),
        )
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="Conveyor",
        description="Durable background pipelines on Temporal: start, watch and cancel runs over HTTP.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(EdgeMiddleware, settings=cfg)  # key, size, rate and stream limits before any body is read
    app.state.health = health.HealthCache(ttl_s=cfg.health_cache_ttl_s)
    app.include_router(health.router)
    app.include_router(codec.router)
    app.include_router(keys.router)
    app.include_router(workflows.router)
    app.include_router(pricing.router)
    for pipeline in PIPELINES:
        app.include_router(load(pipeline.router))
    _serve_links(app)
    return app


def _serve_links(app: FastAPI) -> None:
    """Make the served OpenAPI schema carry the API's links (built once, like the schema itself)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_links(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
