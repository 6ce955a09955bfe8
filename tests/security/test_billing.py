"""Items 6 and 9 (billing): every pipeline has a price, the credit check comes before any work, and a run that
ends pays for what it delivered (a failed or cancelled one for its part), settled once by the run lifecycle."""

from __future__ import annotations

import asyncio
import math
import subprocess
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from activities.analysis.catalog import tool_cost
from activities.analysis.models import AnalysisTask
from activities.crawl.contract import PAGE_PRICE
from activities.crawl.models import CrawlPage
from activities.persona.contract import CHUNK_PRICE
from activities.video.contract import SECOND_PRICE
from cli.sample_site import SampleSite
from conveyor.models import CreditHold, CreditLedgerEntry, User
from tests.helpers import assert_eventually
from tests.helpers.stack import Stack

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "analysis"
#: Three works paragraphs for a persona: a few chunks.
ESSAY = "\n\n".join(
    " ".join(f"{word} of the {n}th morning at the bakery on the quay" for word in ("loaves", "rolls", "tarts", "buns"))
    * 6
    for n in range(3)
)
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
    assert all(p["credits"] >= 0 for p in prices)
    capped = {p["pipeline"]: p["max_running"] for p in prices}
    assert all(capped[name] >= 1 for name in ("analysis", "crawl", "persona", "video"))
    assert capped["chat"] is None  # conversations are never capped by number (their messages are, by rate)
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


async def _charges(stack: Stack, user_id: int) -> list[int]:
    """The user's charges in the ledger, oldest first."""
    async with stack.sessions() as session:
        amounts = await session.scalars(
            select(CreditLedgerEntry.amount)
            .where(CreditLedgerEntry.user_id == user_id, CreditLedgerEntry.kind == "charge")
            .order_by(CreditLedgerEntry.id)
        )
        return [-a for a in amounts]


async def test_crawl_rerun_pays_only_for_the_pages_it_visited(stack: Stack, sample_site: SampleSite) -> None:
    user_id, key = await stack.new_user(credits=1000)
    async with stack.http(key) as http:
        started = await http.post("/api/crawls", json={"url": sample_site.url, "max_pages": 40, "max_depth": 1})
        assert started.status_code == 202, started.text
        session_id = started.json()["session_id"]
        path = f"/api/crawls/{session_id}"
        first = await _finished(http, path)
        assert first["status"] == "completed", first
        visited = first["pages_crawled"]
        assert 0 < visited < 40
        async with stack.sessions.begin() as session:  # pages the first run stored that the site no longer links
            for i in range(3):
                session.add(
                    CrawlPage(
                        session_id=session_id,
                        url=f"{sample_site.url}gone-{i}.html",
                        url_key=f"gone-{i}",
                        visited_at=datetime.fromisoformat(first["completed_at"]) - timedelta(seconds=1),
                    )
                )
        assert (await http.post(f"{path}/rerun")).status_code == 202
        second = await _finished(http, path)
    assert second["status"] == "completed", second
    assert second["pages_crawled"] == visited + 3  # the session keeps every page stored
    charges = await _charges(stack, user_id)
    # the rerun visits the same live pages again and pays for them, not for the stored pages it did not visit
    assert charges == [PAGE_PRICE.cost(visited), PAGE_PRICE.cost(visited)], (charges, visited)
    assert await _account(stack, user_id) == (1000 - 2 * PAGE_PRICE.cost(visited), 0, 2 * PAGE_PRICE.cost(visited))


async def test_persona_ingest_charges_its_price_per_chunk_embedded(stack: Stack) -> None:
    user_id, key = await stack.new_user(credits=1000)
    persona_id = f"bill-{uuid.uuid4().hex[:8]}"
    async with stack.http(key) as http:
        made = await http.post("/api/personas", json={"id": persona_id, "name": "Baker", "description": "billing"})
        assert made.status_code == 201, made.text
        sent = await http.post(
            f"/api/personas/{persona_id}/documents",
            data={"collection": "works"},
            files={"file": ("bakery.txt", ESSAY.encode(), "text/plain")},
        )
        assert sent.status_code == 201, sent.text
        started = await http.post(f"/api/personas/{persona_id}/ingest")
        assert started.status_code == 202, started.text
        jobs = started.json()["jobs"]

        async def ended() -> dict[str, Any]:
            body: dict[str, Any] = (await http.get(f"/api/personas/{persona_id}")).json()
            assert {j["job_id"] for j in body["jobs"]} == set(jobs.values())
            assert body["status"] in TERMINAL and all(j["status"] in TERMINAL for j in body["jobs"]), body
            return body

        persona = await assert_eventually(ended, within_s=180, interval=0.3)
    assert persona["status"] == "completed", persona
    chunks = sum(j["added"] for j in persona["jobs"])
    assert chunks > 0
    due = CHUNK_PRICE.cost(chunks)
    assert await _account(stack, user_id) == (1000 - due, 0, due)


async def _video_done(http: httpx.AsyncClient, video_id: str, job_id: str) -> dict[str, Any]:
    async def ended() -> dict[str, Any]:
        video: dict[str, Any] = (await http.get(f"/api/videos/{video_id}")).json()
        job = next(j for j in video["jobs"] if j["job_id"] == job_id)
        assert job["status"] in TERMINAL, job["status"]
        return job

    return await assert_eventually(ended, within_s=180, interval=0.3)


@pytest.mark.needs_ffmpeg
async def test_video_charges_per_output_second_and_a_preview_is_free(stack: Stack, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    await asyncio.to_thread(
        subprocess.run,
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=10:duration=2",
            "-c:v", "libx264", "-preset", "ultrafast", str(clip),
        ],
        check=True,
    )  # fmt: skip
    user_id, key = await stack.new_user(credits=1000)
    async with stack.http(key) as http:
        uploaded = await http.post("/api/videos/upload", files={"file": ("clip.mp4", clip.read_bytes())})
        assert uploaded.status_code == 201, uploaded.text
        video = uploaded.json()
        seconds = math.ceil(video["duration_s"])
        assert seconds >= 2
        spec = {"codec": "h264", "container": "mp4", "width": 96, "allow_gpu": False}
        started = await http.post(f"/api/videos/{video['video_id']}/transcode", json=spec)
        assert started.status_code == 202, started.text
        (job_id,) = started.json()["jobs"]
        job = await _video_done(http, video["video_id"], job_id)
        assert job["status"] == "completed", job
        assert await _account(stack, user_id) == (1000 - SECOND_PRICE.cost(seconds), 0, SECOND_PRICE.cost(seconds))

        started = await http.post(f"/api/videos/{video['video_id']}/preview", json={"frames": 2, "width": 64})
        assert started.status_code == 202, started.text
        (job_id,) = started.json()["jobs"]
        job = await _video_done(http, video["video_id"], job_id)
        assert job["status"] == "completed", job
        pricing = (await http.get("/api/pricing")).json()["prices"]
    # a preview writes still frames, no seconds of media: it charged nothing, and the price says so
    assert await _account(stack, user_id) == (1000 - SECOND_PRICE.cost(seconds), 0, SECOND_PRICE.cost(seconds))
    (video_price,) = [p for p in pricing if p["pipeline"] == "video"]
    assert "previews (still frames) are free" in video_price["description"], video_price
