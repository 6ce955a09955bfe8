"""The analysis pipeline end to end through the HTTP API: real dev server, SQLite, blobs and DuckDB."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from activities.analysis.catalog import AGENT_PARAMS, tool_cost
from activities.analysis.contract import TASKS_QUEUE
from activities.analysis.models import AnalysisTask
from conveyor.models import CreditLedgerEntry, User
from tests.helpers import assert_eventually
from tests.helpers.stack import Stack

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "analysis"
TERMINAL = {"completed", "failed", "cancelled"}


def _files(*items: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, "application/octet-stream")) for name, data in items]


def _sample(name: str) -> tuple[str, bytes]:
    return name, (SAMPLES / name).read_bytes()


async def _create(http: httpx.AsyncClient, tool: str, files: list[tuple[str, bytes]], **form: str) -> httpx.Response:
    return await http.post("/api/tasks", data={"tool_id": tool, **form}, files=_files(*files))


async def _run(http: httpx.AsyncClient, tool: str, files: list[tuple[str, bytes]], **form: str) -> dict[str, Any]:
    created = await _create(http, tool, files, **form)
    assert created.status_code == 201, created.text
    task_id = created.json()["task_id"]
    queued = await http.post(f"/api/tasks/{task_id}/process")
    assert queued.status_code == 202, queued.text
    return await _wait(http, task_id)


async def _wait(http: httpx.AsyncClient, task_id: str, within_s: float = 120) -> dict[str, Any]:
    async def finished() -> dict[str, Any]:
        task: dict[str, Any] = (await http.get(f"/api/tasks/{task_id}")).json()
        assert task["status"] in TERMINAL, task["status"]
        return task

    return await assert_eventually(finished, within_s=within_s, interval=0.3)


async def _balance_and_charges(stack: Stack, user_id: int) -> tuple[int, int]:
    async with stack.sessions() as session:
        user = await session.get(User, user_id)
        assert user is not None
        charges = list(
            await session.scalars(
                select(CreditLedgerEntry).where(
                    CreditLedgerEntry.user_id == user_id, CreditLedgerEntry.kind == "charge"
                )
            )
        )
        return user.credits, len(charges)


async def test_profile_two_files_completes_charges_once_and_serves_outputs(stack: Stack) -> None:
    user_id, key = await stack.new_user(credits=50)
    async with stack.http(key) as http:
        task = await _run(http, "profile-my-data", [_sample("orders_2024.csv"), _sample("orders_2025.csv")])
        assert task["status"] == "completed", task
        assert task["progress"] == 100 and task["current_agent"] is None
        assert task["agents"] == ["unified-profiler", "score-risk", "drift-detector"]
        names = {o["name"] for o in task["outputs"]}
        assert {"profile.json", "risk.json", "drift.json", "report.json"} <= names
        report = (await http.get(f"/api/tasks/{task['task_id']}/outputs/report.json")).json()
        assert report["agents_completed"] == task["agents"]
        profile = await http.get(next(o["url"] for o in task["outputs"] if o["name"] == "profile.json"))
        assert profile.status_code == 200 and "orders_2024.csv" in profile.text
        again = await http.post(f"/api/tasks/{task['task_id']}/process")
        assert again.status_code == 202 and again.json()["started"] is False
    cost = tool_cost("profile-my-data", task["agents"])
    assert await _balance_and_charges(stack, user_id) == (50 - cost, 1)


async def test_second_process_call_starts_nothing_new(stack: Stack) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        created = await _create(http, "profile-my-data", [_sample("orders_2024.csv")], agents="unified-profiler")
        task_id = created.json()["task_id"]
        first = await http.post(f"/api/tasks/{task_id}/process")
        second = await http.post(f"/api/tasks/{task_id}/process")
        assert first.json()["started"] is True and second.json()["started"] is False
        assert first.json()["workflow_id"] == second.json()["workflow_id"] == f"analysis-{task_id}"
        assert (await _wait(http, task_id))["status"] == "completed"
    handle = stack.client.get_workflow_handle(f"analysis-{task_id}")
    runs = [e async for e in stack.client.list_workflows(f"WorkflowId = 'analysis-{task_id}'")]
    assert len(runs) == 1 and (await handle.describe()).run_id == runs[0].run_id


async def test_clean_my_data_outputs_cleaned_file_and_report(stack: Stack) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        task = await _run(http, "clean-my-data", [_sample("customers.csv")])
        assert task["status"] == "completed", task
        cleaned = await http.get(f"/api/tasks/{task['task_id']}/outputs/cleaned_customers.csv")
    assert cleaned.status_code == 200
    rows = list(csv.DictReader(io.StringIO(cleaned.text)))
    original = list(csv.DictReader(io.StringIO((SAMPLES / "customers.csv").read_text())))
    assert 0 < len(rows) < len(original)  # duplicates were resolved
    assert set(task["result"]["agents_completed"]) == set(task["agents"])


async def test_master_my_data_builds_golden_records(stack: Stack) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        task = await _run(http, "master-my-data", [_sample("customers.csv"), _sample("customers_crm.csv")])
        assert task["status"] == "completed", task
        golden = await http.get(f"/api/tasks/{task['task_id']}/outputs/golden_records.csv")
    assert golden.status_code == 200
    assert "cluster_id" in golden.text.splitlines()[0]


async def test_latin1_semicolon_file_is_read_correctly(stack: Stack) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        task = await _run(http, "profile-my-data", [_sample("sales_eu.csv")], agents="unified-profiler")
        assert task["status"] == "completed", task
        profile = (await http.get(f"/api/tasks/{task['task_id']}/outputs/profile.json")).text
    assert "\ufffd" not in profile  # no mojibake: latin-1 was decoded as latin-1


@pytest.mark.parametrize(
    ("form", "files", "status", "code"),
    [
        ({"tool_id": "predict-my-data"}, [("a.csv", b"a,b\n1,2\n")], 400, "UNKNOWN_TOOL"),
        (
            {"tool_id": "profile-my-data", "agents": "unified-profiler,psychic"},
            [("a.csv", b"a\n1\n")],
            400,
            "UNKNOWN_AGENT",
        ),
        ({"tool_id": "profile-my-data"}, [], 400, "NO_FILES"),
        ({"tool_id": "profile-my-data"}, [("empty.csv", b"")], 400, "EMPTY_FILE"),
        ({"tool_id": "profile-my-data"}, [("big.csv", b"a,b\n" + b"1,2\n" * 600_000)], 413, "FILE_TOO_LARGE"),
        ({"tool_id": "profile-my-data", "params": "{not json"}, [("a.csv", b"a\n1\n")], 400, "BAD_PARAMS"),
        (
            {"tool_id": "profile-my-data", "params": '{"unified-profiler": {"top_n": 0}}'},
            [("a.csv", b"a\n1\n")],
            400,
            "BAD_PARAMS",
        ),
    ],
)
async def test_bad_requests_are_refused_at_once(
    stack: Stack, form: dict[str, str], files: list[tuple[str, bytes]], status: int, code: str
) -> None:
    user_id, key = await stack.new_user(credits=20)
    async with stack.http(key) as http:
        resp = await http.post("/api/tasks", data=form, files=_files(*files))
        listed = (await http.get("/api/tasks")).json()
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code
    assert listed["total"] == 0
    assert await _balance_and_charges(stack, user_id) == (20, 0)


async def test_bad_params_are_refused_before_any_file_is_stored(stack: Stack) -> None:
    user_id, key = await stack.new_user(credits=20)
    name = f"params-{uuid.uuid4().hex[:8]}.csv"
    bad = {
        "null-handler": {"strategy": "avg"},
        "type-fixer": {"min_parse_rate": 0.5, "dates": "dmy"},
        "golden-record-builder": {},
    }
    async with stack.http(key) as http:
        answers = [
            await _create(http, "clean-my-data", [(name, b"a\n1\n")], params=json.dumps({agent: raw}))
            for agent, raw in bad.items()
        ]
        listed = (await http.get("/api/tasks")).json()
    errors = [a.json()["error"] for a in answers]
    assert [a.status_code for a in answers] == [400, 400, 400]
    assert {e["code"] for e in errors} == {"BAD_PARAMS"}
    assert errors[0]["message"] == (
        "null-handler: param 'strategy' must be one of keep, drop_rows, fill, drop_columns_over, got 'avg'"
    )
    assert errors[0]["details"] == {"agent": "null-handler", "param": "strategy", "value": "'avg'"}
    assert errors[1]["message"].startswith("type-fixer: unknown param 'dates'; known params: min_parse_rate")
    assert "unknown agent 'golden-record-builder'" in errors[2]["message"]
    assert listed["total"] == 0
    async with stack.sessions() as session:
        rows = await session.scalars(select(AnalysisTask).where(AnalysisTask.user_id == user_id))
        assert list(rows) == []
    assert not [b.key for b in stack.blobs.list("analysis") if b.key.endswith(name)]
    assert await _balance_and_charges(stack, user_id) == (20, 0)


async def test_good_params_are_kept_and_used(stack: Stack) -> None:
    _, key = await stack.new_user()
    params = {"unified-profiler": {"top_n": 1}}
    async with stack.http(key) as http:
        task = await _run(
            http, "profile-my-data", [_sample("orders_2024.csv")], agents="unified-profiler", params=json.dumps(params)
        )
        profile = (await http.get(f"/api/tasks/{task['task_id']}/outputs/profile.json")).json()
    assert task["status"] == "completed", task
    assert task["params"] == params and profile["top_n"] == 1


async def test_tools_list_each_agents_params_as_json_schema(stack: Stack) -> None:
    async with stack.http(None) as http:
        resp = await http.get("/api/tools")
    assert resp.status_code == 200, resp.text
    agents = {a["id"]: a for t in resp.json() for a in t["agents"]}
    assert set(agents) == set(AGENT_PARAMS)
    for agent_id, agent in agents.items():
        schema = agent["params"]
        assert schema == AGENT_PARAMS[agent_id].model_json_schema()
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert schema["properties"] and all(p["description"] for p in schema["properties"].values()), agent_id
    strategy = agents["null-handler"]["params"]["properties"]["strategy"]
    assert strategy["enum"] == ["keep", "drop_rows", "fill", "drop_columns_over"] and strategy["default"] == "keep"
    top_n = agents["unified-profiler"]["params"]["properties"]["top_n"]
    assert (top_n["type"], top_n["minimum"], top_n["maximum"], top_n["default"]) == ("integer", 1, 100, 5)
    assert "top values" in top_n["description"]


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("header_only.csv", b"id,name,email\n", "NO_DATA_ROWS"),
        ("picture.csv", PNG, "BINARY_FILE"),
        ("ragged.csv", b"a,b,c\n1,2,3\n4,5\n6,7,8\n", "RAGGED_ROWS"),
    ],
)
async def test_bad_files_fail_the_task_clearly_and_charge_nothing(
    stack: Stack, name: str, data: bytes, code: str
) -> None:
    user_id, key = await stack.new_user(credits=20)
    async with stack.http(key) as http:
        task = await _run(http, "profile-my-data", [(name, data)])
        tasks = (await http.get("/api/tasks")).json()
    assert task["status"] == "failed"
    assert task["error_code"] == code
    assert name in task["error_message"]
    assert await _balance_and_charges(stack, user_id) == (20, 0)
    assert tasks["items"][0]["input_files"] == [{"name": name, "size": len(data)}]  # the upload is kept
    async with stack.sessions() as session:
        row = await session.get(AnalysisTask, task["task_id"])
        assert row is not None and stack.blobs.get_bytes(row.input_files[0]["key"]) == data


async def test_insufficient_credits_refused_before_upload_and_charges_nothing(stack: Stack) -> None:
    user_id, key = await stack.new_user(credits=1)
    async with stack.http(key) as http:
        created = await _create(http, "profile-my-data", [_sample("orders_2024.csv")])
    assert created.status_code == 402 and created.json()["error"]["code"] == "INSUFFICIENT_CREDITS"
    assert await _balance_and_charges(stack, user_id) == (1, 0)


async def test_another_users_task_is_not_found(stack: Stack) -> None:
    _, owner_key = await stack.new_user()
    _, other_key = await stack.new_user()
    async with stack.http(owner_key) as owner, stack.http(other_key) as other:
        task = await _run(owner, "profile-my-data", [_sample("orders_2024.csv")], agents="unified-profiler")
        tid, wf = task["task_id"], task["workflow_id"]
        for method, url in [
            ("GET", f"/api/tasks/{tid}"),
            ("POST", f"/api/tasks/{tid}/process"),
            ("POST", f"/api/tasks/{tid}/cancel"),
            ("GET", f"/api/tasks/{tid}/outputs/report.json"),
            ("GET", f"/api/workflows/{wf}/progress"),
            ("GET", f"/api/workflows/{wf}/events"),
        ]:
            resp = await other.request(method, url)
            assert resp.status_code == 404, (method, url, resp.text)
        assert (await other.get("/api/tasks")).json()["total"] == 0
        assert (await owner.get(f"/api/workflows/{wf}/progress")).json()["status"] == "completed"


async def test_requests_without_a_valid_key_are_unauthorised(stack: Stack) -> None:
    async with stack.http(None) as anonymous, stack.http("cvy_not-a-key") as wrong:
        assert (await anonymous.get("/api/tasks")).status_code == 401
        assert (await wrong.get("/api/tasks")).status_code == 401


async def test_tasks_are_listed_newest_first_with_pagination(stack: Stack) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        ids = []
        for _ in range(3):
            created = await _create(http, "profile-my-data", [("a.csv", b"a\n1\n")])
            ids.append(created.json()["task_id"])
        page1 = (await http.get("/api/tasks", params={"limit": 2})).json()
        page2 = (await http.get("/api/tasks", params={"limit": 2, "offset": 2})).json()
    assert page1["total"] == 3
    assert [t["task_id"] for t in page1["items"] + page2["items"]] == list(reversed(ids))


async def test_cancel_mid_run_keeps_finished_outputs_and_pays_for_them(stack: Stack, tmp_path: Path) -> None:
    from bench.datagen import write_messy_csv

    big = tmp_path / "big.csv"
    write_messy_csv(big, rows=15_000)
    user_id, key = await stack.new_user(credits=50)
    async with stack.http(key) as http:
        created = await _create(http, "clean-my-data", [("big.csv", big.read_bytes())])
        task_id = created.json()["task_id"]
        await http.post(f"/api/tasks/{task_id}/process")

        async def past_first_agent() -> None:
            task = (await http.get(f"/api/tasks/{task_id}")).json()
            assert task["current_agent"] not in (None, "null-handler"), task["current_agent"]
            assert (task["status"], task["stage"]) == ("running", task["current_agent"]), task

        await assert_eventually(past_first_agent, within_s=60, interval=0.05)
        resp = await http.post(f"/api/tasks/{task_id}/cancel")
        assert resp.status_code == 202
        task = await _wait(http, task_id, within_s=30)
    assert task["status"] == "cancelled"
    assert "null-handler" in task["result"]["agents_completed"]
    assert "report.json" in {o["name"] for o in task["outputs"]}
    due = tool_cost("clean-my-data", task["result"]["agents_completed"])  # partial capture: finished agents pay
    assert await _balance_and_charges(stack, user_id) == (50 - due, 1)


async def test_health_reports_db_temporal_and_pollers(stack: Stack) -> None:
    async with stack.http(None) as http:
        resp = await http.get("/api/health")
    body = resp.json()
    assert resp.status_code == 200, body
    assert body["database"]["ok"] and body["temporal"]["ok"]
    assert TASKS_QUEUE == "analysis.tasks"
    assert body["queues"][TASKS_QUEUE]["workflow_pollers"] >= 1
    assert body["queues"][TASKS_QUEUE]["activity_pollers"] >= 1
    assert body["queues"][TASKS_QUEUE]["ok"] is True


async def test_events_stream_progress_until_done(stack: Stack) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        created = await _create(http, "profile-my-data", [_sample("orders_2024.csv")])
        queued = (await http.post(f"/api/tasks/{created.json()['task_id']}/process")).json()
        events: list[tuple[str, dict[str, Any]]] = []
        async with http.stream("GET", f"/api/workflows/{queued['workflow_id']}/events") as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            name = ""
            async for line in resp.aiter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
    assert events[-1] == ("done", {"status": "completed"})
    stages = [e[1]["progress"]["stage"] for e in events if e[0] == "progress" and e[1]["progress"]]
    assert stages[-1] == "completed"
    assert len(stages) >= 2
