"""API keys (issue 12, item 13): revoke, rotate and expiry through the CLI and the API; the demo reuses its key."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from cli.demo import demo_key, demo_key_path
from conveyor.auth import hash_key, revoke_all
from conveyor.models import ApiKey, User
from tests.helpers.processes import cli_json, run_cli
from tests.security.test_api_edge import Edge, edge_settings, running


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    """The real app on a migrated database of the test's own."""
    async with running(edge_settings(tmp_path)) as app:
        yield app


async def _status(edge: Edge, key: str) -> tuple[int, str | None]:
    async with edge.http(key) as http:
        response = await http.get("/api/keys")
    code = response.json()["error"]["code"] if response.status_code != 200 else None
    return response.status_code, code


@pytest.mark.process
async def test_cli_creates_admins_and_expiring_keys_revokes_and_rotates(edge: Edge) -> None:
    created = await run_cli(edge.settings, "users", "create", "ops", "--admin", "--expires-in", "2", "--json")
    assert created.returncode == 0, created.stderr
    ops = cli_json(created)
    assert ops["role"] == "admin" and ops["prefix"] == ops["api_key"][:10]
    async with edge.sessions() as session:
        row = (await session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(ops["api_key"])))).one()
    expires = row.expires_at.replace(tzinfo=UTC) if row.expires_at.tzinfo is None else row.expires_at
    assert timedelta(days=1.9) < expires - datetime.now(UTC) < timedelta(days=2.1)
    assert await _status(edge, ops["api_key"]) == (200, None)

    rotated = await run_cli(edge.settings, "users", "rotate", "ops", "--json")
    assert rotated.returncode == 0, rotated.stderr
    new = cli_json(rotated)
    assert new["revoked"] == 1 and new["api_key"] != ops["api_key"]
    assert await _status(edge, ops["api_key"]) == (401, "API_KEY_REVOKED")
    assert await _status(edge, new["api_key"]) == (200, None)

    revoked = await run_cli(edge.settings, "users", "revoke", new["api_key"][:10], "--json")
    assert revoked.returncode == 0 and cli_json(revoked)["revoked"] == 1
    assert await _status(edge, new["api_key"]) == (401, "API_KEY_REVOKED")

    _id, other = await edge.new_user()
    async with edge.sessions() as session:
        name = (await session.scalars(select(User.name).join(ApiKey).where(ApiKey.key_hash == hash_key(other)))).one()
    everything = await run_cli(edge.settings, "users", "revoke", "--user", name, "--json")
    assert cli_json(everything)["revoked"] == 1
    assert await _status(edge, other) == (401, "API_KEY_REVOKED")
    unknown = await run_cli(edge.settings, "users", "revoke", "cvy_nothing", "--json")
    assert unknown.returncode == 1 and cli_json(unknown)["error"]["code"] == "KEY_NOT_FOUND"


async def test_an_expired_key_is_refused(edge: Edge) -> None:
    _id, key = await edge.new_user()
    async with edge.sessions.begin() as session:
        row = (await session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))).one()
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert await _status(edge, key) == (401, "API_KEY_EXPIRED")


async def test_the_api_issues_rotates_and_revokes_only_your_own_keys(edge: Edge) -> None:
    _id, key = await edge.new_user()
    _other, other_key = await edge.new_user()
    async with edge.http(key) as http:
        issued = await http.post("/api/keys", json={"expires_in_days": 1})
        second = issued.json()["api_key"]
        foreign = await http.post(f"/api/keys/{other_key[:10]}/revoke")
        mine = await http.post(f"/api/keys/{second[:10]}/revoke")
        listed = await http.get("/api/keys")
        rotated = await http.post("/api/keys/rotate", json={})
    assert issued.status_code == 201 and issued.json()["expires_at"] is not None
    assert foreign.status_code == 404  # another user's key is not found, and stays live
    assert await _status(edge, other_key) == (200, None)
    assert mine.status_code == 200 and mine.json()["revoked_at"] is not None
    assert await _status(edge, second) == (401, "API_KEY_REVOKED")
    assert [k["prefix"] for k in listed.json()] == [second[:10], key[:10]]
    assert all("api_key" not in k and "key_hash" not in k for k in listed.json())
    assert rotated.status_code == 201 and rotated.json()["revoked"] == 1
    assert await _status(edge, key) == (401, "API_KEY_REVOKED")
    assert await _status(edge, rotated.json()["api_key"]) == (200, None)


async def test_the_demo_reuses_its_key_and_mints_one_only_when_it_is_revoked(edge: Edge) -> None:
    first = await demo_key(edge.settings)
    again = await demo_key(edge.settings)
    path = demo_key_path(edge.settings)
    assert again == first and path.read_text() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    async with edge.sessions() as session:
        user = (await session.scalars(select(User).where(User.name == "demo"))).one()
        keys = list(await session.scalars(select(ApiKey).where(ApiKey.user_id == user.id)))
    assert len(keys) == 1  # two demo runs, one key

    async with edge.sessions.begin() as session:
        await revoke_all(session, user.id)
    fresh = await demo_key(edge.settings)
    assert fresh != first and path.read_text() == fresh
    assert await _status(edge, fresh) == (200, None)
