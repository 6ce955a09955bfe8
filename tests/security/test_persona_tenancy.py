"""Personas are a tenant's own (issue 12, items 2, 10 and 14): the worker reads only the folder it derives from its
settings and the persona's row, ids are unique per owner, tenants upload their corpus, errors name no server path.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.persona.activities import PersonaActivities
from activities.persona.embedder import shared_embedder
from activities.persona.models import IngestionJob, Persona
from activities.persona.schemas import Collection, CollectionRun, IngestRequest
from activities.persona.sources import list_sources, persona_folder
from activities.persona.vectors import VectorStore, open_chroma
from api.services import persona as service
from conveyor.auth import create_user
from conveyor.db import create_engine, migrate, session_factory
from conveyor.errors import BadInput
from tests.helpers import assert_eventually
from tests.helpers.postgres import throwaway_postgres
from tests.helpers.stack import Stack

SECRET = "The vault combination is seven four nine and the launch word is marmalade."


def _plant_secret(outside: Path) -> None:
    """A readable corpus outside the data root, in every layout a payload could aim at (blocking)."""
    for folder in (outside / "works", outside / "data" / "victim" / "works", outside / "victim" / "works"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "secret.txt").write_text(SECRET, "utf-8")


@pytest.fixture
async def worker_side(
    tmp_path: Path, sessions: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[PersonaActivities, VectorStore, Path]]:
    """The persona activities as a worker wires them (data root ``tmp_path/data``), a store, and a folder outside."""
    outside = tmp_path / "outside"
    await asyncio.to_thread(_plant_secret, outside)
    store = VectorStore(open_chroma(tmp_path / "chroma"))
    acts = PersonaActivities(sessions, lambda: store, shared_embedder, data_root=tmp_path / "data")
    yield acts, store, outside


async def _persona_with_job(sessions: async_sessionmaker[AsyncSession], slug: str) -> tuple[int, str]:
    """A user, their persona ``slug`` (no documents) and a works job; the user id and the persona's key."""
    async with sessions.begin() as session:
        user, _ = await create_user(session, f"tenant-{uuid.uuid4().hex[:8]}", 0)
        key = str(uuid.uuid4())
        session.add(Persona(id=key, slug=slug, user_id=user.id, name=slug, description="", current_jobs={}))
        await session.flush()
        session.add(IngestionJob(id=f"job-{key}", persona_id=key, collection="works", warnings=[]))
        return user.id, key


@pytest.mark.parametrize(
    ("payload_persona", "data_root"),
    [
        ("victim", "/"),
        ("victim", "{outside}"),
        ("../outside", ""),
        ("../../outside/victim", "{outside}/data"),
        ("..%2F..%2Foutside", "/"),
        ("/etc", "/"),
    ],
)
async def test_a_payload_cannot_aim_the_worker_outside_its_data_root(
    worker_side: tuple[PersonaActivities, VectorStore, Path],
    sessions: async_sessionmaker[AsyncSession],
    payload_persona: str,
    data_root: str,
) -> None:
    acts, store, outside = worker_side
    _, key = await _persona_with_job(sessions, "victim")
    run = CollectionRun(
        persona_id=payload_persona,
        collection=Collection.WORKS,
        job_id=f"job-{key}",
        data_root=data_root.format(outside=outside),
    )
    # the persona has no documents in the worker's own folder: nothing is read, whatever the payload says
    with pytest.raises(BadInput) as refused:
        await ActivityEnvironment().run(acts.ingest_collection, run)
    assert refused.value.code == "PERSONA_DATA_NOT_FOUND"
    assert str(outside) not in refused.value.message and "/" not in refused.value.message.split("(")[0]
    for name in store.client.list_collections():
        col = store.client.get_collection(name.name)
        documents = col.get(include=["documents"])["documents"] or []
        assert not any("marmalade" in d for d in documents), name


async def test_old_payloads_with_a_data_root_still_validate_and_the_root_is_ignored() -> None:
    old = IngestRequest.model_validate(
        {"persona_id": "franklin", "job_ids": {"works": "j1", "quotes": "j2", "profile": "j3"}, "data_root": "/"}
    )
    assert old.data_root == "/"  # accepted (histories replay) ...
    run = CollectionRun(persona_id="franklin", collection=Collection.WORKS, job_id="j1")
    assert run.data_root == ""  # ... and new workflows send none


@pytest.mark.parametrize(
    "slug", ["..", "../x", "a/../../b", "alice\n", "alice/", "/etc", "ALICE", "al", "a" * 65, "alice\x00", ""]
)
def test_persona_folders_are_derived_from_validated_ids_only(tmp_path: Path, slug: str) -> None:
    with pytest.raises(BadInput) as refused:
        persona_folder(tmp_path, 1, slug)
    assert refused.value.code == "BAD_PERSONA_ID"
    assert persona_folder(tmp_path, 7, "alice") == (tmp_path / "7" / "alice").resolve()


def test_a_link_out_of_the_persona_folder_is_not_read(tmp_path: Path) -> None:
    _plant_secret(tmp_path / "outside")
    folder = persona_folder(tmp_path / "data", 1, "alice")
    (folder / "works").mkdir(parents=True)
    (folder / "works" / "mine.txt").write_text("my own words", "utf-8")
    os.symlink(tmp_path / "outside" / "works" / "secret.txt", folder / "works" / "linked.txt")
    os.symlink(tmp_path / "outside" / "works", folder / "profile")
    assert [s.source for s in list_sources(folder, "alice", Collection.WORKS)] == ["mine.txt"]
    assert list_sources(folder, "alice", Collection.PROFILE) == []


# --------------------------------------------------------------------------------- through the API
async def _create(http: httpx.AsyncClient, persona_id: str, **body: Any) -> httpx.Response:
    return await http.post("/api/personas", json={"id": persona_id, **body})


async def _upload(
    http: httpx.AsyncClient, persona_id: str, name: str, text: str, collection: str = "works"
) -> httpx.Response:
    return await http.post(
        f"/api/personas/{persona_id}/documents",
        data={"collection": collection},
        files={"file": (name, text.encode(), "text/plain")},
    )


async def _ingested(http: httpx.AsyncClient, persona_id: str) -> dict[str, Any]:
    started = await http.post(f"/api/personas/{persona_id}/ingest")
    assert started.status_code == 202, started.text

    async def ended() -> dict[str, Any]:
        body = dict((await http.get(f"/api/personas/{persona_id}")).json())
        assert body["status"] in ("completed", "failed"), body["status"]
        return body

    return await assert_eventually(ended, within_s=120, interval=0.2)


async def _search(http: httpx.AsyncClient, persona_id: str, query: str) -> list[dict[str, Any]]:
    resp = await http.post(f"/api/personas/{persona_id}/search", json={"query": query, "k": 5})
    assert resp.status_code == 200, resp.text
    assert resp.json()["persona_id"] == persona_id
    return list(resp.json()["passages"])


async def test_two_owners_of_the_same_id_are_isolated_upload_ingest_and_search(stack: Stack) -> None:
    slug = f"alice-{uuid.uuid4().hex[:6]}"
    _, key_a = await stack.new_user()
    _, key_b = await stack.new_user()
    _, key_c = await stack.new_user()
    quotes = "\n".join(json.dumps({"text": t}) for t in ("Honesty is the best policy.", "Time is money."))
    async with stack.http(key_a) as a, stack.http(key_b) as b, stack.http(key_c) as c:
        assert (await _create(a, slug)).status_code == 201
        resp = await _create(b, slug)  # the same id, another owner: their own persona, not a 409
        assert resp.status_code == 201, resp.text
        again = await _create(a, slug)
        assert again.status_code == 409 and again.json()["error"]["code"] == "PERSONA_EXISTS"

        up = await _upload(a, slug, "../../orchards.txt", "The apple orchards of Kent bloom pink in late April.")
        assert up.status_code == 201, up.text
        assert up.json()["name"] == "works/orchards.txt"  # no folders from the client's file name
        assert (await _upload(a, slug, "quotes.jsonl", quotes, "quotes")).status_code == 201
        assert (
            await _upload(b, slug, "ships.md", "# Ships\n\nClipper ships raced tea from Canton.")
        ).status_code == 201
        wrong = await _upload(a, slug, "payload.sh", "#!/bin/sh")
        assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "BAD_DOCUMENT_TYPE"
        assert (await _upload(c, slug, "x.txt", "not theirs")).status_code == 404

        done_a, done_b = await _ingested(a, slug), await _ingested(b, slug)
        assert done_a["status"] == done_b["status"] == "completed", (done_a, done_b)
        assert done_a["id"] == done_b["id"] == slug
        assert done_a["workflow_id"] != done_b["workflow_id"]
        assert {j["persona_id"] for j in done_a["jobs"]} == {slug}

        hits_a = await _search(a, slug, "orchards blooming in spring")
        assert hits_a[0]["source"] == "orchards.txt"
        assert not any("Clipper" in h["text"] for h in hits_a)
        hits_b = await _search(b, slug, "orchards blooming in spring")
        assert hits_b and all("Clipper" in h["text"] for h in hits_b)
        assert any("Time is money" in h["text"] for h in await _search(a, slug, "money and time"))

        # a third tenant sees neither: 404, never 409 or another tenant's data
        for path in (f"/api/personas/{slug}", f"/api/jobs/{done_a['jobs'][0]['job_id']}"):
            assert (await c.get(path)).status_code == 404
        resp = await c.post(f"/api/personas/{slug}/search", json={"query": "orchards", "k": 3})
        assert resp.status_code == 404


async def test_ids_with_a_trailing_newline_and_over_long_fields_are_refused(stack: Stack) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        for bad in ("alice\n", "alice\r\n", "../alice", "alice/x"):
            resp = await _create(http, bad)
            assert resp.status_code == 400, (bad, resp.text)
            assert resp.json()["error"]["code"] == "BAD_PERSONA_ID"
        for field, limit in (("name", 200), ("description", 10_000)):
            resp = await _create(http, f"long-{uuid.uuid4().hex[:6]}", **{field: "x" * (limit + 1)})
            assert resp.status_code == 400, resp.text
            assert resp.json()["error"]["details"]["field"] == field


async def test_errors_name_no_server_path(stack: Stack) -> None:
    slug = f"empty-{uuid.uuid4().hex[:6]}"
    _, key = await stack.new_user()
    root = str(stack.settings.persona_data_root_resolved)
    async with stack.http(key) as http:
        assert (await _create(http, slug)).status_code == 201
        failed = await _ingested(http, slug)
        assert failed["status"] == "failed" and failed["error_code"] == "PERSONA_DATA_NOT_FOUND"
        texts = [failed["error_message"]] + [j["error_message"] for j in failed["jobs"]]
        assert all(t and root not in t and str(stack.settings.var_dir) not in t for t in texts), texts
        job = await http.get(f"/api/jobs/{failed['jobs'][0]['job_id']}")
        assert root not in job.text


# --------------------------------------------------------------------------------- PostgreSQL
@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL cluster for this module's PostgreSQL test."""
    with throwaway_postgres() as url:
        yield url


@pytest.mark.needs_postgres
async def test_over_long_names_are_a_400_on_postgresql_and_ids_are_per_owner(postgres_url: str) -> None:
    await migrate(postgres_url)
    engine = create_engine(postgres_url)
    try:
        sessions = session_factory(engine)
        async with sessions() as session:
            one, _ = await create_user(session, "pg-one", 0)
            two, _ = await create_user(session, "pg-two", 0)
            await session.commit()
            with pytest.raises(BadInput) as refused:
                await service.create_persona(session, one, "longname", "n" * 201, "")
            assert refused.value.details == {"field": "name", "max_length": 200}
            first = await service.create_persona(session, one, "shared", "One", "")
            second = await service.create_persona(session, two, "shared", "Two", "")
            assert first.id != second.id and first.slug == second.slug == "shared"
    finally:
        await engine.dispose()
