"""Personas end to end through the HTTP API: real dev server, persona workers, embedder, ChromaDB and SQLite."""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus

from activities.persona.chunking import chunk_id
from activities.persona.embedder import shared_embedder
from activities.persona.ingest import MAX_TOKENS, OVERLAP_TOKENS
from activities.persona.schemas import Collection
from activities.persona.sources import list_sources, persona_folder, read_source, stage_seed_layout
from tests.helpers import assert_eventually
from tests.helpers.stack import Stack

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "personas"
QUESTIONS = SAMPLES / "questions.json"
COLLECTIONS = {"works", "quotes", "profile"}
TERMINAL_JOBS = {"completed", "failed"}
#: Every status a run never leaves.
TERMINAL = {"completed", "failed", "cancelled"}
QUOTES_FILE = "all_quotes.jsonl"

#: A works file written in Windows-1252: é and ’ are single bytes that are not valid UTF-8.
CP1252_TEXT = (
    "Monsieur Dubois’s café on the quay served crème brûlée to every naïve traveller who asked for it. "
    "The proprietor’s résumé, pinned beside the door, listed the cafés of Rouen where he had learnt his trade, "
    "and the regulars’ favourite was his fricassée of rabbit with a glass of rosé."
)
#: Appended to a works file to change it: a new paragraph of about sixty words.
NEW_PARAGRAPH = (
    "\n\nIn later years I bought a brass telescope from a travelling pedlar at a price I thought fair, and "
    "for a whole summer I watched the moons of Jupiter rise over the orchard; my neighbours laughed, yet I "
    "counted that glass among the few bargains of my life, for it taught me patience, arithmetic and the "
    "humility of a small man before a very large sky.\n"
)


# --------------------------------------------------------------------------------- helpers
def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _folder(stack: Stack, owner: int, persona_id: str) -> Path:
    """Where the workers read one owner's persona (the operator's ``--data-dir`` copy goes there too)."""
    return persona_folder(stack.settings.persona_data_root_resolved, owner, persona_id)


def _copy_corpus(folder: Path) -> None:
    """The bundled Franklin corpus in a persona's folder (blocking: run it in a thread)."""
    stage_seed_layout(SAMPLES, "franklin", folder)


def _chunk_ids(folder: Path, collection: str) -> dict[str, set[str]]:
    """The chunk ids the project's own reader and chunker make of each file of a collection (blocking)."""
    embedder = shared_embedder()
    ids: dict[str, set[str]] = {}
    for source in list_sources(folder, folder.name, Collection(collection)):
        read = read_source(
            source,
            Collection(collection),
            count_tokens=embedder.count_tokens,
            max_tokens=MAX_TOKENS,
            overlap_tokens=OVERLAP_TOKENS,
        )
        ids[source.source] = {chunk_id(source.source, p.text) for p in read.pieces}
    return ids


def _count(per_file: dict[str, set[str]]) -> int:
    return len(set().union(*per_file.values())) if per_file else 0


async def _expected(folder: Path) -> dict[str, dict[str, set[str]]]:
    return {c: await asyncio.to_thread(_chunk_ids, folder, c) for c in sorted(COLLECTIONS)}


async def _create(http: httpx.AsyncClient, persona_id: str, name: str = "Benjamin Franklin") -> dict[str, Any]:
    resp = await http.post("/api/personas", json={"id": persona_id, "name": name, "description": "test persona"})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def _ingest(http: httpx.AsyncClient, persona_id: str) -> dict[str, Any]:
    resp = await http.post(f"/api/personas/{persona_id}/ingest")
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


async def _settled(
    http: httpx.AsyncClient,
    persona_id: str,
    jobs: dict[str, str],
    *,
    seen: list[tuple[str, str | None]] | None = None,
    within_s: float = 120,
) -> dict[str, Any]:
    """The persona once the ingestion that made ``jobs`` has ended (every job and the persona itself)."""

    async def check() -> dict[str, Any]:
        resp = await http.get(f"/api/personas/{persona_id}")
        assert resp.status_code == 200, resp.text
        body = dict(resp.json())
        if seen is not None and (not seen or seen[-1] != (body["status"], body["stage"])):
            seen.append((body["status"], body["stage"]))
        assert {j["collection"]: j["job_id"] for j in body["jobs"]} == jobs
        assert all(j["status"] in TERMINAL_JOBS for j in body["jobs"]), [j["status"] for j in body["jobs"]]
        assert body["status"] in ("completed", "failed"), body["status"]
        return body

    return await assert_eventually(check, within_s=within_s, interval=0.1)


async def _ingest_and_wait(http: httpx.AsyncClient, persona_id: str) -> dict[str, Any]:
    started = await _ingest(http, persona_id)
    assert started["started"] is True
    return await _settled(http, persona_id, started["jobs"])


def _jobs(persona: dict[str, Any]) -> dict[str, dict[str, Any]]:
    jobs = {j["collection"]: j for j in persona["jobs"]}
    assert set(jobs) == COLLECTIONS
    return jobs


def _assert_completed(job: dict[str, Any]) -> None:
    assert job["status"] == "completed", job
    assert job["progress"] == 100
    assert job["completed_at"] is not None
    assert job["error_message"] is None and job["error_code"] is None


async def _search(
    http: httpx.AsyncClient, persona_id: str, query: str, *, k: int = 3, collections: list[str] | None = None
) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"query": query, "k": k}
    if collections is not None:
        body["collections"] = collections
    resp = await http.post(f"/api/personas/{persona_id}/search", json=body)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["passages"])


def _long_corpus(folder: Path, files: int = 60) -> None:
    """The bundled corpus plus many generated works, so its works collection takes long enough to stop (blocking)."""
    _copy_corpus(folder)
    words = (SAMPLES / "data" / "franklin" / "works" / "the_whistle.txt").read_text("utf-8").split()
    rng = random.Random(7)
    for i in range(files):
        paragraphs = [" ".join(rng.choice(words) for _ in range(70)).capitalize() + "." for _ in range(14)]
        (folder / "works" / f"generated_{i:02d}.txt").write_text(f"Essay {i}\n\n" + "\n\n".join(paragraphs), "utf-8")


async def _persona(http: httpx.AsyncClient, persona_id: str) -> dict[str, Any]:
    resp = await http.get(f"/api/personas/{persona_id}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def _works_under_way(http: httpx.AsyncClient, persona_id: str) -> dict[str, Any]:
    """The persona once its works collection is being ingested, with most of its files still to do."""

    async def check() -> dict[str, Any]:
        persona = await _persona(http, persona_id)
        works = _jobs(persona)["works"]
        if persona["status"] in TERMINAL or works["status"] in TERMINAL:
            pytest.fail(f"the ingestion ended before it could be stopped: {persona}")
        assert persona["status"] == "running" and persona["stage"] == "ingesting", persona
        assert works["status"] == "running" and 0 < works["files_done"] < works["files_total"] - 10, works
        return persona

    return await assert_eventually(check, within_s=180, interval=0.1)


def _line_numbers(warning: str) -> list[int]:
    """The line numbers a warning lists after its last colon ("…: 5, 7")."""
    return [int(n) for n in re.findall(r"\d+", warning.rsplit(":", 1)[-1])]


def _error_code(resp: httpx.Response) -> str:
    return str(resp.json()["error"]["code"])


# --------------------------------------------------------------------------------- the full ingestion
@dataclass
class Ingested:
    """The Franklin corpus ingested once through the API, shared by the tests that read it."""

    persona_id: str
    key: str
    created: dict[str, Any]
    started: dict[str, Any]
    second: dict[str, Any]
    statuses: list[tuple[str, str | None]]
    persona: dict[str, Any]
    expected: dict[str, dict[str, set[str]]]


@pytest.fixture(scope="module")
async def franklin(stack: Stack) -> Ingested:
    """A fresh copy of the bundled corpus, created and ingested (with a second ingest sent while it runs)."""
    persona_id = _new_id("fr")
    owner, key = await stack.new_user()
    folder = _folder(stack, owner, persona_id)
    await asyncio.to_thread(_copy_corpus, folder)
    expected = await _expected(folder)
    async with stack.http(key) as http:
        created = await _create(http, persona_id)
        first = await http.post(f"/api/personas/{persona_id}/ingest")
        second = await http.post(f"/api/personas/{persona_id}/ingest")
        assert first.status_code == 202, first.text
        assert second.status_code == 202, second.text
        started = dict(first.json())
        statuses: list[tuple[str, str | None]] = []
        persona = await _settled(http, persona_id, started["jobs"], seen=statuses)
    return Ingested(persona_id, key, created, started, dict(second.json()), statuses, persona, expected)


async def test_full_ingestion_completes_the_persona_with_exact_vector_counts(franklin: Ingested) -> None:
    assert franklin.created["status"] == "created"
    assert franklin.created["jobs"] == []
    assert franklin.created["workflow_id"] is None and franklin.created["started_at"] is None

    started = franklin.started
    assert started["workflow_id"].startswith("persona-ingest-")
    assert started["started"] is True
    assert set(started["jobs"]) == COLLECTIONS
    assert len(set(started["jobs"].values())) == 3

    # a second request while the first runs joins it instead of starting another
    assert franklin.second["started"] is False
    assert franklin.second["jobs"] == started["jobs"]
    assert franklin.second["workflow_id"] == started["workflow_id"]

    assert ("running", "ingesting") in franklin.statuses, franklin.statuses
    persona = franklin.persona
    assert persona["status"] == "completed"
    assert persona["progress"] == 100
    assert persona["error_message"] is None and persona["error_code"] is None and persona["error_kind"] is None
    assert persona["started_at"] is not None and persona["completed_at"] is not None
    assert persona["last_ingested_at"] is not None
    assert persona["workflow_id"] == started["workflow_id"]

    jobs = _jobs(persona)
    for collection, job in jobs.items():
        _assert_completed(job)
        assert job["job_id"] == started["jobs"][collection]
        assert job["started_at"] is not None
        expected = franklin.expected[collection]
        assert job["files_done"] == job["files_total"] == len(expected), (collection, job)
        assert job["total_vectors"] == _count(expected), collection
        assert job["added"] == job["total_vectors"] and job["removed"] == 0
    assert jobs["quotes"]["total_vectors"] == 50  # one per line of all_quotes.jsonl
    assert jobs["works"]["files_total"] == 5
    assert jobs["profile"]["files_total"] == 3  # personas/<id>/profile.md and data/<id>/profile/*.md


async def test_search_answers_every_bundled_question_in_the_top_three(stack: Stack, franklin: Ingested) -> None:
    questions = json.loads(await asyncio.to_thread(QUESTIONS.read_text))
    assert questions
    async with stack.http(franklin.key) as http:
        for q in questions:
            passages = await _search(http, franklin.persona_id, q["question"], k=3)
            assert 0 < len(passages) <= 3
            for p in passages:
                assert p["collection"] in COLLECTIONS
                assert 0 < p["score"] <= 1, p
                assert p["text"] and p["source"]
            scores = [p["score"] for p in passages]
            assert scores == sorted(scores, reverse=True)
            assert any(
                p["source"] == q["source"] and p["collection"] == q["collection"] and q["answer_contains"] in p["text"]
                for p in passages
            ), (q, [(p["source"], p["text"][:80]) for p in passages])

        quotes_only = await _search(http, franklin.persona_id, "work hard and save money", k=5, collections=["quotes"])
        assert len(quotes_only) == 5
        assert {p["collection"] for p in quotes_only} == {"quotes"}
        assert {p["source"] for p in quotes_only} == {QUOTES_FILE}


async def test_job_endpoint_shows_the_same_job_and_hides_it_from_others(stack: Stack, franklin: Ingested) -> None:
    async with stack.http(franklin.key) as http:
        for job in franklin.persona["jobs"]:
            resp = await http.get(f"/api/jobs/{job['job_id']}")
            assert resp.status_code == 200, resp.text
            assert resp.json() == job
        missing = await http.get(f"/api/jobs/{uuid.uuid4()}")
        assert missing.status_code == 404
    _, other = await stack.new_user()
    async with stack.http(other) as http:
        for job in franklin.persona["jobs"]:
            resp = await http.get(f"/api/jobs/{job['job_id']}")
            assert resp.status_code == 404, resp.text


async def test_a_finished_ingestion_cannot_be_cancelled(stack: Stack, franklin: Ingested) -> None:
    async with stack.http(franklin.key) as http:
        finished = await http.post(f"/api/personas/{franklin.persona_id}/cancel")
        assert finished.status_code == 409 and _error_code(finished) == "NOT_INGESTING"
        assert (await http.get(f"/api/personas/{franklin.persona_id}")).json() == franklin.persona


# --------------------------------------------------------------------------------- re-ingestion
async def test_reingest_is_idempotent_and_follows_changed_and_deleted_files(stack: Stack) -> None:
    persona_id = _new_id("fr")
    owner, key = await stack.new_user()
    folder = _folder(stack, owner, persona_id)
    await asyncio.to_thread(_copy_corpus, folder)
    async with stack.http(key) as http:
        await _create(http, persona_id)
        first = _jobs(await _ingest_and_wait(http, persona_id))

        again = await _ingest_and_wait(http, persona_id)
        assert again["status"] == "completed"
        for collection, job in _jobs(again).items():
            _assert_completed(job)
            assert job["job_id"] != first[collection]["job_id"]  # a new run has new jobs
            assert (job["added"], job["removed"]) == (0, 0), job
            assert job["total_vectors"] == first[collection]["total_vectors"]

        works = folder / "works"
        deleted = await asyncio.to_thread(_chunk_ids, folder, "works")
        deleted_chunks = len(deleted["the_ephemera.txt"])
        assert deleted_chunks > 0
        changed = works / "the_whistle.txt"
        text = await asyncio.to_thread(changed.read_text, "utf-8")
        await asyncio.to_thread(changed.write_text, text.rstrip("\n") + NEW_PARAGRAPH, "utf-8")
        await asyncio.to_thread((works / "the_ephemera.txt").unlink)
        expected_works = _count(await asyncio.to_thread(_chunk_ids, folder, "works"))

        changed_run = await _ingest_and_wait(http, persona_id)
        assert changed_run["status"] == "completed"
        job = _jobs(changed_run)["works"]
        _assert_completed(job)
        assert job["added"] > 0
        assert job["removed"] >= deleted_chunks
        assert job["total_vectors"] == expected_works
        assert job["files_done"] == job["files_total"] == 4

        hits = await _search(http, persona_id, "no less than four hundred and twenty minutes of time", k=10)
        assert hits
        assert all(p["source"] != "the_ephemera.txt" for p in hits), hits
        telescope = await _search(http, persona_id, "brass telescope and the moons of Jupiter", k=3)
        assert any(p["source"] == "the_whistle.txt" and "telescope" in p["text"] for p in telescope), telescope


# --------------------------------------------------------------------------------- bad input
async def test_missing_persona_folder_fails_every_job_and_a_rerun_succeeds(stack: Stack) -> None:
    persona_id = _new_id("gone")
    owner, key = await stack.new_user()
    folder = _folder(stack, owner, persona_id)
    async with stack.http(key) as http:
        await _create(http, persona_id)
        failed = await _ingest_and_wait(http, persona_id)
        assert failed["status"] == "failed"
        assert persona_id in (failed["error_message"] or ""), failed["error_message"]
        assert str(folder.parent) not in (failed["error_message"] or ""), failed["error_message"]  # no server paths
        assert (failed["error_kind"], failed["error_code"]) == ("BadInput", "PERSONA_DATA_NOT_FOUND")
        for job in _jobs(failed).values():
            assert job["status"] == "failed", job
            assert job["error_code"] == "PERSONA_DATA_NOT_FOUND"
            assert str(folder.parent) not in (job["error_message"] or ""), job
            assert job["completed_at"] is not None

        def make_folders() -> None:
            (folder / "quotes").mkdir(parents=True)
            shutil.copy(SAMPLES / "data" / "franklin" / "quotes" / QUOTES_FILE, folder / "quotes" / QUOTES_FILE)

        await asyncio.to_thread(make_folders)
        rerun = await _ingest_and_wait(http, persona_id)
        assert rerun["status"] == "completed"
        assert rerun["error_message"] is None and rerun["error_code"] is None
        jobs = _jobs(rerun)
        for job in jobs.values():
            _assert_completed(job)
        assert jobs["quotes"]["total_vectors"] == 50


async def test_messy_works_and_quotes_are_ingested_with_warnings(stack: Stack) -> None:
    persona_id = _new_id("messy")
    owner, key = await stack.new_user()
    folder = _folder(stack, owner, persona_id)

    def build() -> None:
        valid = (SAMPLES / "data" / "franklin" / "quotes" / QUOTES_FILE).read_text("utf-8").splitlines()[:5]
        lines = [
            valid[0],  # 1
            valid[1],  # 2
            "{not json",  # 3
            valid[2],  # 4
            '{"text": ""}',  # 5
            valid[3],  # 6
            '{"source": "Poor Richard", "topic": "nothing"}',  # 7
            valid[4],  # 8
        ]
        (folder / "works").mkdir(parents=True)
        (folder / "quotes").mkdir()
        shutil.copy(SAMPLES / "data" / "franklin" / "works" / "the_whistle.txt", folder / "works" / "the_whistle.txt")
        (folder / "works" / "empty.txt").write_bytes(b"")
        data = CP1252_TEXT.encode("cp1252")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:  # pragma: no cover - the fixture itself would be wrong
            raise AssertionError("the cp1252 file must not be valid UTF-8")
        (folder / "works" / "legacy.txt").write_bytes(data)
        (folder / "quotes" / QUOTES_FILE).write_text("\n".join(lines) + "\n", "utf-8")

    await asyncio.to_thread(build)
    expected_works = _count(await asyncio.to_thread(_chunk_ids, folder, "works"))
    async with stack.http(key) as http:
        await _create(http, persona_id)
        persona = await _ingest_and_wait(http, persona_id)
        assert persona["status"] == "completed", persona["error_message"]
        jobs = _jobs(persona)

        works = jobs["works"]
        _assert_completed(works)
        assert works["files_done"] == works["files_total"] == 3
        assert works["total_vectors"] == expected_works
        warnings = [str(w) for w in works["warnings"]]
        assert any("empty.txt" in w and "empty" in w.replace("empty.txt", "") and "skipped" in w for w in warnings), (
            warnings
        )
        assert any("legacy.txt" in w and "not UTF-8" in w for w in warnings), warnings

        hits = await _search(http, persona_id, "Dubois café crème brûlée and rosé", k=3, collections=["works"])
        legacy = [p for p in hits if p["source"] == "legacy.txt"]
        assert legacy, hits
        assert "Dubois’s café" in legacy[0]["text"] and "crème brûlée" in legacy[0]["text"]

        quotes = jobs["quotes"]
        _assert_completed(quotes)
        assert quotes["total_vectors"] == 5
        qwarn = [str(w) for w in quotes["warnings"]]
        malformed = [w for w in qwarn if "malformed" in w]
        no_text = [w for w in qwarn if "without text" in w]
        assert len(malformed) == 1 and len(no_text) == 1, qwarn
        assert _line_numbers(malformed[0]) == [3], qwarn
        assert _line_numbers(no_text[0]) == [5, 7], qwarn

        only_quotes = await _search(http, persona_id, "early to bed", k=10, collections=["quotes"])
        assert len(only_quotes) == 5


async def test_persona_without_works_folder_still_completes(stack: Stack) -> None:
    persona_id = _new_id("noworks")
    owner, key = await stack.new_user()
    folder = _folder(stack, owner, persona_id)

    def build() -> None:
        (folder / "quotes").mkdir(parents=True)
        shutil.copy(SAMPLES / "data" / "franklin" / "quotes" / QUOTES_FILE, folder / "quotes" / QUOTES_FILE)
        shutil.copy(SAMPLES / "personas" / "franklin" / "profile.md", folder / "profile.md")

    await asyncio.to_thread(build)
    async with stack.http(key) as http:
        await _create(http, persona_id)
        persona = await _ingest_and_wait(http, persona_id)
        assert persona["status"] == "completed", persona["error_message"]
        jobs = _jobs(persona)
        works = jobs["works"]
        _assert_completed(works)
        assert works["total_vectors"] == 0
        assert works["files_total"] == 0
        assert any("works" in str(w) for w in works["warnings"]), works["warnings"]
        assert jobs["quotes"]["total_vectors"] == 50
        assert jobs["profile"]["total_vectors"] > 0
        hits = await _search(http, persona_id, "fish and visitors", k=3)
        assert hits and all(p["collection"] != "works" for p in hits)


async def test_bad_requests_are_refused_with_clear_errors(stack: Stack) -> None:
    _, key = await stack.new_user()
    _, other_key = await stack.new_user()
    persona_id = _new_id("draft")
    unknown = _new_id("nobody")
    search = {"query": "what is wealth?", "k": 3}
    async with stack.http(key) as http, stack.http(other_key) as other:
        created = await _create(http, persona_id)
        assert created["status"] == "created"

        # unknown persona
        assert (await http.get(f"/api/personas/{unknown}")).status_code == 404
        resp = await http.post(f"/api/personas/{unknown}/ingest")
        assert resp.status_code == 404 and _error_code(resp) == "PERSONA_NOT_FOUND"
        assert (await http.post(f"/api/personas/{unknown}/search", json=search)).status_code == 404
        resp = await http.post(f"/api/personas/{unknown}/cancel")
        assert resp.status_code == 404 and _error_code(resp) == "PERSONA_NOT_FOUND"

        # another user's persona is not theirs to see, ingest or search
        assert (await other.get(f"/api/personas/{persona_id}")).status_code == 404
        assert (await other.post(f"/api/personas/{persona_id}/ingest")).status_code == 404
        assert (await other.post(f"/api/personas/{persona_id}/search", json=search)).status_code == 404
        assert (await other.post(f"/api/personas/{persona_id}/cancel")).status_code == 404

        # ids name folders: only lower-case slugs
        for bad in ("A B", "x", "../escape"):
            resp = await http.post("/api/personas", json={"id": bad, "name": "Bad"})
            assert resp.status_code == 400, (bad, resp.text)
            assert _error_code(resp) == "BAD_PERSONA_ID"

        # ids are unique per owner: a second create is a conflict for its owner only
        resp = await http.post("/api/personas", json={"id": persona_id, "name": "Again"})
        assert resp.status_code == 409, resp.text
        resp = await other.post("/api/personas", json={"id": persona_id, "name": "Theirs"})
        assert resp.status_code == 201, resp.text
        assert (await http.get(f"/api/personas/{persona_id}")).json()["name"] == "Benjamin Franklin"

        resp = await http.post(f"/api/personas/{persona_id}/search", json={"query": "", "k": 3})
        assert resp.status_code == 422, resp.text

        resp = await http.post(f"/api/personas/{persona_id}/search", json=search)
        assert resp.status_code == 409, resp.text
        assert _error_code(resp) == "PERSONA_NOT_INGESTED"

        # nothing to cancel before the first ingestion
        resp = await http.post(f"/api/personas/{persona_id}/cancel")
        assert resp.status_code == 409 and _error_code(resp) == "NOT_INGESTING"

        still = (await http.get(f"/api/personas/{persona_id}")).json()
        assert still["status"] == "created" and still["jobs"] == []

    async with stack.http(None) as anonymous:
        assert (await anonymous.get(f"/api/personas/{persona_id}")).status_code == 401


# --------------------------------------------------------------------------------- cancel and termination
async def test_cancelling_a_running_ingestion_cancels_the_persona_and_its_unfinished_jobs(stack: Stack) -> None:
    persona_id = _new_id("long")
    owner, key = await stack.new_user()
    await asyncio.to_thread(_long_corpus, _folder(stack, owner, persona_id))
    async with stack.http(key) as http:
        await _create(http, persona_id)
        started = await _ingest(http, persona_id)
        await _works_under_way(http, persona_id)

        resp = await http.post(f"/api/personas/{persona_id}/cancel")
        assert resp.status_code == 202, resp.text
        assert resp.json()["id"] == persona_id and resp.json()["status"] in ("running", "cancelled")
        handle = stack.client.get_workflow_handle(started["workflow_id"])

        async def cancelled() -> dict[str, Any]:
            persona = await _persona(http, persona_id)
            assert persona["status"] == "cancelled", persona
            assert all(j["status"] in TERMINAL for j in persona["jobs"]), persona["jobs"]
            assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
            return persona

        persona = await assert_eventually(cancelled, within_s=60)
        assert persona["error_code"] is None and persona["error_message"] is None
        assert persona["completed_at"] is not None
        jobs = _jobs(persona)
        assert {c: j["job_id"] for c, j in jobs.items()} == started["jobs"]
        _assert_completed(jobs["profile"])  # it ran first and finished before the cancellation
        works = jobs["works"]
        assert works["status"] == "cancelled" and works["error_code"] is None, works
        assert works["completed_at"] is not None and works["files_done"] < works["files_total"]
        unfinished = [j for j in jobs.values() if j["status"] != "completed"]
        assert unfinished and all(j["status"] == "cancelled" for j in unfinished), jobs
        for job_id in started["jobs"].values():  # the job endpoint agrees
            got = await http.get(f"/api/jobs/{job_id}")
            assert got.status_code == 200 and got.json()["status"] == next(
                j["status"] for j in jobs.values() if j["job_id"] == job_id
            )

        again = await http.post(f"/api/personas/{persona_id}/cancel")
        assert again.status_code == 409 and _error_code(again) == "NOT_INGESTING"


async def test_a_terminated_ingestion_reads_as_failed_never_running(stack: Stack) -> None:
    persona_id = _new_id("killed")
    owner, key = await stack.new_user()
    await asyncio.to_thread(_long_corpus, _folder(stack, owner, persona_id))
    async with stack.http(key) as http:
        await _create(http, persona_id)
        started = await _ingest(http, persona_id)
        await _works_under_way(http, persona_id)

        # killed behind Conveyor's back: the workflow never runs its bookkeeping
        await stack.client.get_workflow_handle(started["workflow_id"]).terminate("killed by an operator")
        persona = await _persona(http, persona_id)  # the very first read after the kill
        assert persona["status"] == "failed", persona
        assert (persona["error_kind"], persona["error_code"]) == ("Internal", "TERMINATED")
        assert persona["error_message"] and persona["completed_at"] is not None
        jobs = _jobs(persona)
        _assert_completed(jobs["profile"])
        works = jobs["works"]
        assert (works["status"], works["error_code"]) == ("failed", "TERMINATED"), works
        assert all(j["status"] in ("completed", "failed") for j in jobs.values()), jobs
        job = await http.get(f"/api/jobs/{works['job_id']}")
        assert job.status_code == 200 and job.json()["status"] == "failed"
        assert (await _persona(http, persona_id))["status"] == "failed"  # recorded, not only shown

        # the killed run does not hold the persona: a new ingestion starts (and is cancelled to end it)
        rerun = await _ingest(http, persona_id)
        assert rerun["started"] is True and set(rerun["jobs"].values()).isdisjoint(started["jobs"].values())
        assert (await http.post(f"/api/personas/{persona_id}/cancel")).status_code == 202

        async def rerun_ended() -> None:
            assert (await _persona(http, persona_id))["status"] in ("cancelled", "completed")

        await assert_eventually(rerun_ended, within_s=60)
