"""How the API is served: uvicorn with the limits of the settings (connections, header size, keep-alive)."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from conveyor.settings import Settings


def uvicorn_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    """A uvicorn config for ``app`` on the settings' address, with their limits and without uvicorn's access log.

    The edge middleware writes the access log (without keys or query strings); uvicorn's own would print the
    query string.
    """
    return uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        http="h11",
        limit_concurrency=settings.api_limit_concurrency,
        h11_max_incomplete_event_size=settings.api_max_incomplete_event_bytes,
        timeout_keep_alive=settings.api_keep_alive_s,
    )
