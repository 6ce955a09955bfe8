"""Items 6 and 9 (billing): every pipeline has a price, the credit check comes before any work, and a run that
ends pays for what it delivered (a failed or cancelled one for its part), settled once by the run lifecycle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from activities.analysis.catalog import tool_cost
from activities.analysis.models import AnalysisTask
from activities.crawl.contract import PAGE_PRICE
from cli.sample_site import SampleSite
from conveyor.models import CreditHold, CreditLedgerEntry, User
from tests.helpers import assert_eventually
from tests.helpers.stack import Stack

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "analysis"
TERMINAL = {"completed", "failed", "cancelled"}


async def _finished(http: httpx.AsyncClient, path: str) -> dict[str, Any]:
    async def ended() -> dict[str, Any]:
        run: dict[str, Any] = (await http.get(path)).json()
        assert run["status"] in TERMINAL, run["status"]
        return run

    return await assert_eventually(ended, within_s=180, interval=0.3)


async def _account(stack: Stack, user_id: int) -> tuple[int, int, int]:
    """Balance, credits still held, and the sum charged in the ledger."""
    async with stack.sessions() as session:
        user = await session.get(User, user_id)
        assert user is not None
        charged = await session.scalar(
            select(func.coalesce(func.sum(CreditLedgerEntry.amount), 0)).where(
                CreditLedgerEntry.user_id == user_id, CreditLedgerEntry.kind == "charge"
            )
        )
        return user.credits, user.credits_held, -int(charged or 0)


async def test_pricing_lists_every_pipeline(stack: Stack) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        resp = await http.get("/api/pricing")
        schema = (await http.get("/openapi.json")).json()
    assert resp.status_code == 200, resp.text
    prices = resp.json()["prices"]
    units = {(p["pipeline"], p["unit"]) for p in prices}
    assert {"analysis", "crawl", "persona", "video"} <= {p for p, _ in units}
    assert {("crawl", "page"), ("persona", "chunk"), ("video", "output second")} <= units
    assert ("analysis", "clean-my-data/null-handler") in units
    assert all(p["credits"] >= 0 and p["max_running"] >= 1 for p in prices)
    assert "/api/pricing" in schema["paths"]


async def test_insufficient_credits_402_before_any_file_is_stored(stack: Stack) -> None:
    user_id, key = await stack.new_user(credits=1)
    data = (SAMPLES / "customers.csv").read_bytes()
    async with stack.http(key) as http:
        resp = await http.post(
            "/api/tasks", data={"tool_id": "clean-my-data"}, files=[("files", ("customers.csv", data, "text/csv"))]
        )
    assert resp.status_code == 402, resp.text
    assert resp.json()["error"]["code"] == "INSUFFICIENT_CREDITS"
    async with stack.sessions() as session:
        tasks = await session.scalar(
            select(func.count()).select_from(AnalysisTask).where(AnalysisTask.user_id == user_id)
        )
    assert tasks == 0  # refused before the upload was stored or a task recorded


async def test_insufficient_credits_at_process_402_and_nothing_converted(stack: Stack) -> None:
    user_id, key = await stack.new_user(credits=100)
    data = (SAMPLES / "customers.csv").read_bytes()
    async with stack.http(key) as http:
        created = await http.post(
            "/api/tasks", data={"tool_id": "clean-my-data"}, files=[("files", ("customers.csv", data, "text/csv"))]
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["task_id"]
        async with stack.sessions.begin() as session:  # the balance was spent meanwhile
            user = await session.get(User, user_id)
            assert user is not None
            user.credits = 1
        resp = await http.post(f"/api/tasks/{task_id}/process")
        assert resp.status_code == 402, resp.text
        task = (await http.get(f"/api/tasks/{task_id}")).json()
    assert task["status"] == "created"
    assert not list(stack.blobs.list(f"analysis/{task_id}/work/"))  # no conversion ran


async def test_failed_analysis_pays_for_the_agents_that_delivered(stack: Stack) -> None:
    user_id, key = await stack.new_user(credits=100)
    data = (SAMPLES / "customers.csv").read_bytes()
    params = '{"email-validator": {"columns": ["no_such_column"]}}'
    async with stack.http(key) as http:
        created = await http.post(
            "/api/tasks",
            data={"tool_id": "clean-my-data", "params": params},
            files=[("files", ("customers.csv", data, "text/csv"))],
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["task_id"]
        assert (await http.post(f"/api/tasks/{task_id}/process")).status_code == 202
        task = await _finished(http, f"/api/tasks/{task_id}")
    assert task["status"] == "failed", task
    delivered = task["result"]["agents_completed"]
    assert delivered and "email-validator" not in delivered
    due = tool_cost("clean-my-data", delivered)
    assert due > 0
    balance, held, charged = await _account(stack, user_id)
    assert (balance, held, charged) == (100 - due, 0, due)


async def test_crawl_charges_its_price_per_page_on_completion(stack: Stack, sample_site: SampleSite) -> None:
    user_id, key = await stack.new_user(credits=100)
    async with stack.http(key) as http:
        started = await http.post("/api/crawls", json={"url": sample_site.url, "max_pages": 4, "max_depth": 1})
        assert started.status_code == 202, started.text
        async with stack.sessions() as session:
            hold = await session.scalar(select(CreditHold).where(CreditHold.user_id == user_id))
            assert hold is not None and hold.amount == PAGE_PRICE.cost(4)  # the most it can cost: max_pages
        run = await _finished(http, f"/api/crawls/{started.json()['session_id']}")
    assert run["status"] == "completed", run
    pages = run["pages_crawled"]
    assert 0 < pages <= 4
    assert await _account(stack, user_id) == (100 - PAGE_PRICE.cost(pages), 0, PAGE_PRICE.cost(pages))


async def test_cancelled_crawl_pays_for_the_pages_it_visited(stack: Stack, sample_site: SampleSite) -> None:
    user_id, key = await stack.new_user(credits=100)
    async with stack.http(key) as http:
        started = await http.post("/api/crawls", json={"url": sample_site.url, "max_pages": 50, "max_depth": 5})
        assert started.status_code == 202, started.text
        path = f"/api/crawls/{started.json()['session_id']}"
        assert (await http.post(f"{path}/cancel")).status_code in (200, 202, 409)
        run = await _finished(http, path)
    pages = run["pages_crawled"]
    balance, held, charged = await _account(stack, user_id)
    assert held == 0
    assert charged == PAGE_PRICE.cost(pages) <= PAGE_PRICE.cost(50)
    assert balance == 100 - charged
