"""The base of Conveyor's clients of outside HTTP services (Linear, HubSpot, …): one httpx client, closed once.

A client either opens its own ``httpx.AsyncClient`` (and closes it on :meth:`aclose` or when its ``async with``
block ends) or uses one handed in by the caller (tests, a worker sharing a pool), which it never closes.
"""

from __future__ import annotations

from datetime import timedelta
from types import TracebackType
from typing import Self

import httpx


class OutboundClient:
    """Owns (or borrows) the httpx client its service calls go through."""

    def __init__(self, *, timeout_s: float, http: httpx.AsyncClient | None = None) -> None:
        self._timeout_s = timeout_s
        # A client handed in belongs to the caller: we use it but never close it.
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=timeout_s)

    async def __aenter__(self) -> Self:
        """Use the client as an async context manager that closes it on exit."""
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the client."""
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()


def retry_after(raw: object, *, default: timedelta, most: timedelta) -> timedelta:
    """How long a service asked us to wait: ``raw`` seconds (a ``Retry-After`` header's text, or a number from a
    JSON body), ``default`` when absent or unreadable, never negative and never longer than ``most``."""
    if raw is None or isinstance(raw, bool) or not isinstance(raw, str | int | float) or raw == "":
        return default
    try:
        wait = timedelta(seconds=float(raw))
    except (ValueError, OverflowError):
        return default
    return min(max(wait, timedelta(0)), most)
