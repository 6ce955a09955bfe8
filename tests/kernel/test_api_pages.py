"""Every listing is paginated the same way: bounded ``limit``/``offset``, one page shape, 422 out of bounds."""

from __future__ import annotations

import re
from typing import Any

import pytest

from api.pages import MAX_OFFSET
from tests.helpers.stack import Stack

HUGE = "198358285385759391744"  # beyond every database's integers: once answered 500


async def _listings(stack: Stack, key: str) -> list[str]:
    """Every GET route that takes ``limit`` and ``offset``, with path parameters filled in."""
    async with stack.http(key) as http:
        spec: dict[str, Any] = (await http.get("/openapi.json")).json()
    found = []
    for path, methods in spec["paths"].items():
        params = {p["name"] for p in methods.get("get", {}).get("parameters", [])}
        if {"limit", "offset"} <= params:
            found.append(re.sub(r"\{[^}]+\}", "no-such-id", path))
    return found


async def test_every_listing_refuses_out_of_bounds_windows(stack: Stack) -> None:
    _, key = await stack.new_user()
    listings = await _listings(stack, key)
    assert {"/api/tasks", "/api/crawls", "/api/personas", "/api/videos", "/api/tickets"} <= set(listings)
    async with stack.http(key) as http:
        for path in listings:
            for query in (f"offset={HUGE}", f"offset={MAX_OFFSET + 1}", "offset=-1", "limit=0", "limit=100000"):
                response = await http.get(f"{path}?{query}")
                assert response.status_code == 422, (path, query, response.text)
                named = {tuple(d["loc"]) for d in response.json()["detail"]}
                assert ("query", query.partition("=")[0]) in named, (path, query, response.text)


@pytest.mark.parametrize("path", ["/api/tasks", "/api/crawls", "/api/personas", "/api/videos", "/api/tickets"])
async def test_an_empty_listing_is_one_page_shape(stack: Stack, path: str) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        response = await http.get(f"{path}?limit=7&offset={MAX_OFFSET}")
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "total": 0, "limit": 7, "offset": MAX_OFFSET}


async def test_a_listing_pages_newest_first_filters_by_status_and_shows_only_your_runs(stack: Stack) -> None:
    _, key = await stack.new_user()
    _, other_key = await stack.new_user()
    async with stack.http(key) as http, stack.http(other_key) as other:
        for persona_id in ("older-one", "newer-one"):
            created = await http.post("/api/personas", json={"id": f"{persona_id}-{key[-6:].lower()}"})
            assert created.status_code == 201, created.text
        await other.post("/api/personas", json={"id": f"not-yours-{other_key[-6:].lower()}"})

        first = (await http.get("/api/personas?limit=1")).json()
        second = (await http.get("/api/personas?limit=1&offset=1")).json()
        assert (first["total"], second["total"]) == (2, 2)
        assert first["items"][0]["id"].startswith("newer-one") and second["items"][0]["id"].startswith("older-one")
        assert (await http.get("/api/personas?status=created")).json()["total"] == 2
        assert (await http.get("/api/personas?status=completed")).json()["total"] == 0
        assert (await http.get("/api/personas?status=ingesting")).status_code == 422  # not a run status
