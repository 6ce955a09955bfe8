"""Errors to HTTP responses, in one place: the status code comes from the error's kind."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from conveyor.errors import ConveyorError


async def conveyor_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """Render a :class:`ConveyorError` as ``{"error": {code, kind, message}}`` with its HTTP status."""
    assert isinstance(exc, ConveyorError)
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(int(exc.retry_after.total_seconds()))
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(ConveyorError, conveyor_error_handler)
