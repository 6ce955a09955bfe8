"""The analysis activities against a real migrated SQLite database and a local blob folder."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.analysis.activities import AnalysisActivities
from activities.analysis.agents.base import AgentContext, AgentResult
from activities.analysis.catalog import task_prefix, tool_cost
from activities.analysis.contract import LEGACY_UPDATE_TASK, PIPELINE, TASK_TABLE
from activities.analysis.models import AnalysisTask
from activities.analysis.schemas import (
    AgentOutcome,
    AgentRun,
    AnalysisRequest,
    CreditsRequest,
    DatasetRef,
    PublishRequest,
    PurgeRequest,
    TaskPlan,
)
from conveyor import credits
from conveyor.auth import create_user
from conveyor.db import create_engine, migrate, session_factory
from conveyor.errors import BadInput, ConveyorError, InsufficientCredits, NotFound
from conveyor.models import CreditLedgerEntry, User
from conveyor.records import RunBook
from conveyor.runs import RECORD_RUN, RunError, RunStatus, RunUpdate
from conveyor.storage import LocalBlobStore

PEOPLE_CSV = (
    "id,name,email,amount\n"
    "1,Ada,ada@example.com,10.5\n"
    "2,Bob,bob@example,7\n"
    "3,,carol@example.com,\n"
    "4,Dan,dan@example.com,12\n"
)


@dataclass
class Harness:
    """The activities under test and the real resources behind them."""

    acts: AnalysisActivities
    sessions: async_sessionmaker[AsyncSession]
    blobs: LocalBlobStore

    async def new_user(self, credits: int = 100) -> int:
        async with self.sessions.begin() as session:
            user, _key = await create_user(session, f"user-{uuid.uuid4().hex[:8]}", credits)
            return user.id

    async def new_task(
        self,
        user_id: int,
        *,
        tool_id: str = "profile-my-data",
        agents: list[str] | None = None,
        files: dict[str, bytes] | None = None,
        status: RunStatus = RunStatus.CREATED,
        completed_at: datetime | None = None,
    ) -> str:
        """A task row with its files stored under the task's input keys, as the API's create_task does."""
        task_id = str(uuid.uuid4())
        stored = []
        for i, (name, data) in enumerate((files if files is not None else {"people.csv": PEOPLE_CSV.encode()}).items()):
            key = f"{task_prefix(task_id)}/inputs/{i}-{name}"
            self.blobs.put_bytes(key, data)
            stored.append({"name": name, "key": key, "size": len(data)})
        async with self.sessions.begin() as session:
            session.add(
                AnalysisTask(
                    task_id=task_id,
                    user_id=user_id,
                    tool_id=tool_id,
                    agents=agents if agents is not None else [],
                    status=status.value,
                    input_files=stored,
                    params={},
                    outputs=[],
                    completed_at=completed_at,
                )
            )
        return task_id

    async def task(self, task_id: str) -> AnalysisTask:
        async with self.sessions() as session:
            task = await session.get(AnalysisTask, task_id)
            assert task is not None
            return task

    async def balance(self, user_id: int) -> tuple[int, int]:
        """(credits on the user row, credits available after holds)."""
        async with self.sessions() as session:
            user = await session.get(User, user_id)
            assert user is not None
            return user.credits, await credits.available_credits(session, user_id)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'conveyor.db'}"
    await migrate(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    blobs = LocalBlobStore(tmp_path / "blobs")
    yield Harness(AnalysisActivities(sessions, blobs, max_upload_bytes=1_000_000), sessions, blobs)
    await engine.dispose()


@pytest.fixture
def agents() -> dict[str, Any]:
    """The agent registry (imported lazily, as run_agent does)."""
    from activities.analysis.agents.registry import AGENTS

    return AGENTS


async def _plan(h: Harness, task_id: str, user_id: int) -> TaskPlan:
    return await ActivityEnvironment().run(h.acts.load_task, AnalysisRequest(task_id=task_id, user_id=user_id))


async def _prepared(h: Harness, files: dict[str, bytes] | None = None) -> tuple[int, TaskPlan, list[DatasetRef]]:
    user_id = await h.new_user()
    task_id = await h.new_task(user_id, files=files)
    plan = await _plan(h, task_id, user_id)
    refs = await ActivityEnvironment().run(h.acts.prepare_inputs, plan)
    return user_id, plan, refs


def _rows(path: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    try:
        return con.execute("SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
    finally:
        con.close()


# ------------------------------------------------------------------------------------------------ load_task


async def test_load_task_of_a_missing_task_is_task_not_found(h: Harness) -> None:
    user_id = await h.new_user()
    with pytest.raises(ConveyorError) as caught:
        await _plan(h, str(uuid.uuid4()), user_id)
    assert isinstance(caught.value, NotFound)
    assert caught.value.code == "TASK_NOT_FOUND"


async def test_load_task_of_someone_elses_task_is_user_not_found(h: Harness) -> None:
    owner = await h.new_user()
    intruder = await h.new_user()
    task_id = await h.new_task(owner)
    with pytest.raises(ConveyorError) as caught:
        await _plan(h, task_id, intruder)
    assert isinstance(caught.value, NotFound)
    assert caught.value.code == "USER_NOT_FOUND"
    assert (await h.task(task_id)).status == RunStatus.CREATED.value  # untouched


async def test_load_task_with_unknown_tool_is_bad_input(h: Harness) -> None:
    user_id = await h.new_user()
    task_id = await h.new_task(user_id, tool_id="predict-the-future")
    with pytest.raises(ConveyorError) as caught:
        await _plan(h, task_id, user_id)
    assert isinstance(caught.value, BadInput)
    assert caught.value.code == "UNKNOWN_TOOL"
    assert caught.value.retryable is False
    assert (await h.task(task_id)).status == RunStatus.CREATED.value


async def test_load_task_with_an_agent_needing_two_files_is_bad_input(h: Harness) -> None:
    user_id = await h.new_user()
    task_id = await h.new_task(user_id, agents=["drift-detector"])
    with pytest.raises(ConveyorError) as caught:
        await _plan(h, task_id, user_id)
    assert caught.value.code == "TOO_FEW_FILES"


async def test_load_task_marks_running_and_prices_the_plan(h: Harness) -> None:
    user_id = await h.new_user()
    task_id = await h.new_task(user_id, agents=["score-risk", "unified-profiler"])
    plan = await _plan(h, task_id, user_id)
    assert plan.task_id == task_id and plan.user_id == user_id
    assert plan.tool_id == "profile-my-data"
    assert plan.agents == ["unified-profiler", "score-risk"]  # the tool's order
    assert plan.cost == tool_cost("profile-my-data", ["unified-profiler", "score-risk"]) == 3
    assert [f.name for f in plan.files] == ["people.csv"]
    task = await h.task(task_id)
    assert (task.status, task.stage) == (RunStatus.RUNNING.value, "loading")
    assert task.progress >= 2
    assert task.started_at is not None


async def test_load_task_without_agents_runs_the_tools_defaults_for_one_file(h: Harness) -> None:
    user_id = await h.new_user()
    task_id = await h.new_task(user_id)
    plan = await _plan(h, task_id, user_id)
    assert plan.agents == ["unified-profiler", "score-risk"]  # drift-detector needs two files
    assert plan.cost == tool_cost("profile-my-data", plan.agents)


async def test_load_task_again_keeps_the_first_start_time(h: Harness) -> None:
    user_id = await h.new_user()
    task_id = await h.new_task(user_id)
    await _plan(h, task_id, user_id)
    first = (await h.task(task_id)).started_at
    await _plan(h, task_id, user_id)  # an activity retry
    assert (await h.task(task_id)).started_at == first


# ------------------------------------------------------------------------------------------- prepare_inputs


async def test_prepare_inputs_converts_csv_to_parquet(h: Harness, tmp_path: Path) -> None:
    _user, plan, refs = await _prepared(h)
    assert len(refs) == 1
    ref = refs[0]
    assert ref.name == "people.csv"
    assert ref.key == f"{task_prefix(plan.task_id)}/work/inputs/0.parquet"
    assert (ref.rows, ref.columns) == (4, ["id", "name", "email", "amount"])
    assert (ref.source_format, ref.encoding, ref.delimiter) == ("csv", "utf-8", ",")
    local = h.blobs.download(ref.key, tmp_path / "check.parquet")
    rows = _rows(local)
    assert len(rows) == 4
    assert rows[1] == ("2", "Bob", "bob@example", "7")  # cell text kept as written


async def test_prepare_inputs_sniffs_delimiter_and_encoding(h: Harness, tmp_path: Path) -> None:
    text = "name;city\nJosé;Zürich\nRenée;Köln\nÅsa;Malmö\n"
    _user, _plan_, refs = await _prepared(h, {"cities.csv": text.encode("cp1252")})
    ref = refs[0]
    assert ref.delimiter == ";"
    assert ref.columns == ["name", "city"]
    assert _rows(h.blobs.download(ref.key, tmp_path / "c.parquet")) == [
        ("José", "Zürich"),
        ("Renée", "Köln"),
        ("Åsa", "Malmö"),
    ]


async def test_prepare_inputs_reuses_an_earlier_conversion(h: Harness) -> None:
    _user, plan, refs = await _prepared(h)
    converted_at = h.blobs.stat(refs[0].key).modified
    h.blobs.delete(plan.files[0].key)  # a second conversion could not even read the upload now
    again = await ActivityEnvironment().run(h.acts.prepare_inputs, plan)
    assert again == refs
    assert h.blobs.stat(refs[0].key).modified == converted_at


async def test_prepare_inputs_converts_several_files_in_upload_order(h: Harness) -> None:
    files = {"a.csv": b"x,y\n1,2\n", "b.tsv": b"p\tq\tr\n1\t2\t3\n4\t5\t6\n"}
    _user, plan, refs = await _prepared(h, files)
    assert [r.name for r in refs] == ["a.csv", "b.tsv"]
    assert [r.rows for r in refs] == [1, 2]
    assert refs[1].delimiter == "\t"
    assert refs[1].key.endswith("/work/inputs/1.parquet")
    assert len({r.key for r in refs}) == 2


async def test_prepare_inputs_rejects_a_file_without_data_rows(h: Harness) -> None:
    user_id = await h.new_user()
    task_id = await h.new_task(user_id, files={"empty.csv": b"id,name\n"})
    plan = await _plan(h, task_id, user_id)
    with pytest.raises(ConveyorError) as caught:
        await ActivityEnvironment().run(h.acts.prepare_inputs, plan)
    assert isinstance(caught.value, BadInput)
    assert caught.value.code == "NO_DATA_ROWS"
    assert not h.blobs.exists(f"{task_prefix(task_id)}/work/inputs/0.parquet.json")


async def test_prepare_inputs_rejects_a_file_over_the_size_limit(h: Harness) -> None:
    small = AnalysisActivities(h.sessions, h.blobs, max_upload_bytes=10)
    user_id = await h.new_user()
    task_id = await h.new_task(user_id)
    plan = await _plan(h, task_id, user_id)
    with pytest.raises(ConveyorError) as caught:
        await ActivityEnvironment().run(small.prepare_inputs, plan)
    assert caught.value.http_status == 413


# ------------------------------------------------------------------------------------------------- credits


async def test_hold_charge_twice_debits_once(h: Harness) -> None:
    user_id = await h.new_user(credits=10)
    task_id = await h.new_task(user_id)
    request = CreditsRequest(task_id=task_id, user_id=user_id, amount=3)
    env = ActivityEnvironment()
    assert await env.run(h.acts.hold_credits, request) == 3
    assert (await h.task(task_id)).credits_cost == 3
    assert await h.balance(user_id) == (10, 7)
    assert await env.run(h.acts.charge_credits, request) == 3
    assert await env.run(h.acts.charge_credits, request) == 3  # a retry reports the same charge
    assert await h.balance(user_id) == (7, 7)
    async with h.sessions() as session:
        charges = list(
            await session.scalars(select(CreditLedgerEntry.idempotency_key).where(CreditLedgerEntry.kind == "charge"))
        )
    assert charges == [f"charge:analysis:{task_id}"]


async def test_hold_more_than_the_user_has_charges_nothing(h: Harness) -> None:
    user_id = await h.new_user(credits=2)
    task_id = await h.new_task(user_id)
    with pytest.raises(ConveyorError) as caught:
        await ActivityEnvironment().run(h.acts.hold_credits, CreditsRequest(task_id=task_id, user_id=user_id, amount=3))
    assert isinstance(caught.value, InsufficientCredits)
    assert caught.value.code == "INSUFFICIENT_CREDITS"
    assert await h.balance(user_id) == (2, 2)


async def test_release_after_failure_gives_credits_back(h: Harness) -> None:
    user_id = await h.new_user(credits=10)
    task_id = await h.new_task(user_id)
    request = CreditsRequest(task_id=task_id, user_id=user_id, amount=4)
    env = ActivityEnvironment()
    await env.run(h.acts.hold_credits, request)
    assert await env.run(h.acts.release_credits, request) is True
    assert await env.run(h.acts.release_credits, request) is False
    assert await h.balance(user_id) == (10, 10)


async def test_charge_without_a_hold_charges_nothing(h: Harness) -> None:
    user_id = await h.new_user(credits=10)
    task_id = await h.new_task(user_id)
    charged = await ActivityEnvironment().run(h.acts.charge_credits, CreditsRequest(task_id=task_id, user_id=user_id))
    assert charged == 0
    assert await h.balance(user_id) == (10, 10)


# ------------------------------------------------------------------------------------ record_run (the task)


async def _record(h: Harness, update: RunUpdate) -> None:
    """Run the kernel's bookkeeping activity (``conveyor.record_run``) the analysis workflow records tasks with."""
    await ActivityEnvironment().run(RunBook(h.sessions).record, update)


async def test_the_worker_serves_record_run_and_the_legacy_update_task_name(h: Harness) -> None:
    """Runs started before the kernel recorded runs still call ``analysis.update_task``: the same writer serves it."""
    served = RunBook(h.sessions).activities(PIPELINE.legacy_bookkeeping)
    names = [getattr(fn, "__temporal_activity_definition").name for fn in served]
    assert names == [RECORD_RUN, LEGACY_UPDATE_TASK] == [RECORD_RUN, "analysis.update_task"]
    user_id = await h.new_user()
    task_id = await h.new_task(user_id, status=RunStatus.RUNNING)
    await ActivityEnvironment().run(served[1], RunUpdate.of(TASK_TABLE, task_id, progress=30, current_agent="x"))
    task = await h.task(task_id)
    assert (task.progress, task.current_agent) == (30.0, "x")


async def test_record_run_records_stage_progress_and_current_agent(h: Harness) -> None:
    user_id = await h.new_user()
    task_id = await h.new_task(user_id, status=RunStatus.RUNNING)
    await _record(
        h, RunUpdate.of(TASK_TABLE, task_id, stage="unified-profiler", progress=40, current_agent="unified-profiler")
    )
    task = await h.task(task_id)
    assert (task.progress, task.current_agent, task.status) == (40.0, "unified-profiler", "running")
    assert task.stage == "unified-profiler"
    await _record(h, RunUpdate.of(TASK_TABLE, task_id, progress=60, current_agent=None))
    task = await h.task(task_id)
    assert (task.progress, task.current_agent) == (60.0, None)
    assert task.completed_at is None


async def test_final_status_sets_completion_time_and_error(h: Harness) -> None:
    user_id = await h.new_user()
    task_id = await h.new_task(user_id, status=RunStatus.RUNNING)
    error = RunError(kind="Timeout", code="TIMEOUT", message="time limit reached")
    await _record(h, RunUpdate.of(TASK_TABLE, task_id, status=RunStatus.FAILED, error=error, current_agent=None))
    task = await h.task(task_id)
    assert (task.status, task.error_code, task.error_message) == ("failed", "TIMEOUT", "time limit reached")
    assert task.error_kind == "Timeout"
    assert task.completed_at is not None


async def test_late_progress_write_does_not_reopen_a_completed_task(h: Harness) -> None:
    user_id = await h.new_user()
    task_id = await h.new_task(user_id, status=RunStatus.RUNNING)
    await _record(h, RunUpdate.of(TASK_TABLE, task_id, status=RunStatus.COMPLETED, current_agent=None))
    done = await h.task(task_id)
    assert (done.status, done.progress) == ("completed", 100.0)  # completing sets progress to 100
    await _record(h, RunUpdate.of(TASK_TABLE, task_id, progress=55, current_agent="score-risk"))
    task = await h.task(task_id)
    assert (task.status, task.progress, task.current_agent) == ("completed", 100.0, None)
    assert task.completed_at == done.completed_at


async def test_update_of_a_missing_task_is_ignored(h: Harness) -> None:
    await _record(h, RunUpdate.of(TASK_TABLE, str(uuid.uuid4()), progress=10))
    async with h.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(AnalysisTask)) == 0


# ----------------------------------------------------------------------------------------------- run_agent


def _run(plan: TaskPlan, refs: list[DatasetRef], agent_id: str, **kw: Any) -> AgentRun:
    return AgentRun(task_id=plan.task_id, tool_id=plan.tool_id, agent_id=agent_id, inputs=refs, current=refs, **kw)


async def test_profiler_stores_its_summary_and_profile(h: Harness, agents: dict[str, Any]) -> None:
    _user, plan, refs = await _prepared(h)
    outcome = await ActivityEnvironment().run(h.acts.run_agent, _run(plan, refs, "unified-profiler"))
    assert isinstance(outcome, AgentOutcome)
    assert outcome.agent_id == "unified-profiler"
    assert outcome.summary_key == f"{task_prefix(plan.task_id)}/work/unified-profiler/summary.json"
    summary = json.loads(h.blobs.get_bytes(outcome.summary_key))
    assert isinstance(summary, dict) and summary
    assert outcome.current is None  # profiling does not change the data
    assert [f.name for f in outcome.files] == ["profile.json"]
    profile_file = outcome.files[0]
    assert profile_file.key == f"{task_prefix(plan.task_id)}/outputs/profile.json"
    assert profile_file.content_type == "application/json"
    assert profile_file.agent == "unified-profiler"
    assert h.blobs.stat(profile_file.key).size == profile_file.size > 0
    profile = json.loads(h.blobs.get_bytes(profile_file.key))
    assert "people.csv" in profile["datasets"]
    assert set(profile["datasets"]["people.csv"]["columns"]) == {"id", "name", "email", "amount"}
    assert outcome.seconds >= 0


async def test_later_agent_reads_earlier_summaries(h: Harness, agents: dict[str, Any]) -> None:
    _user, plan, refs = await _prepared(h)
    env = ActivityEnvironment()
    profiled = await env.run(h.acts.run_agent, _run(plan, refs, "unified-profiler"))
    risk = await env.run(
        h.acts.run_agent, _run(plan, refs, "score-risk", previous={"unified-profiler": profiled.summary_key})
    )
    assert [f.name for f in risk.files] == ["risk.json"]
    report = json.loads(h.blobs.get_bytes(risk.files[0].key))
    pii = {f["column"] for f in report["datasets"]["people.csv"]["pii_columns"]}
    assert "email" in pii


async def test_unknown_agent_is_bad_input(h: Harness, agents: dict[str, Any]) -> None:
    _user, plan, refs = await _prepared(h)
    with pytest.raises(ConveyorError) as caught:
        await ActivityEnvironment().run(h.acts.run_agent, _run(plan, refs, "mind-reader"))
    assert caught.value.code == "UNKNOWN_AGENT"


async def test_run_agent_heartbeats_the_agents_progress(
    h: Harness, agents: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _user, plan, refs = await _prepared(h)
    beats: list[Any] = []
    seen = threading.Event()

    def slow_agent(ctx: AgentContext) -> AgentResult:
        ctx.report(0.5, "halfway")
        assert seen.wait(30), "run_agent never heartbeated"
        return AgentResult(summary={"ok": True})

    monkeypatch.setitem(agents, "slow-agent", slow_agent)
    env = ActivityEnvironment()

    halfway = ({"agent": "slow-agent", "fraction": 0.5, "message": "halfway"},)

    def on_heartbeat(*details: Any) -> None:
        beats.append(details)
        if details == halfway:
            seen.set()

    env.on_heartbeat = on_heartbeat
    outcome = await env.run(h.acts.run_agent, _run(plan, refs, "slow-agent"))
    assert outcome.headline == {"ok": True}
    # heartbeats start with the agent (its detail at 0 until it reports) and carry the agent's own report
    assert all(beat in (({"agent": "slow-agent", "fraction": 0.0},), halfway) for beat in beats), beats
    assert halfway in beats


async def test_cancelling_run_agent_interrupts_its_query(
    h: Harness, agents: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _user, plan, refs = await _prepared(h)
    interrupted: list[str] = []

    def endless_agent(ctx: AgentContext) -> AgentResult:
        try:
            ctx.con.execute("SELECT count(*) FROM range(1000000000000) a, range(1000000000000) b").fetchall()
        except duckdb.InterruptException:
            interrupted.append("yes")
            raise
        return AgentResult(summary={})

    monkeypatch.setitem(agents, "endless-agent", endless_agent)
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *_details: env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await env.run(h.acts.run_agent, _run(plan, refs, "endless-agent"))
    assert interrupted == ["yes"]
    assert not h.blobs.exists(f"{task_prefix(plan.task_id)}/work/endless-agent/summary.json")


# ----------------------------------------------------------------------------------------- publish_outputs


def _outcome(h: Harness, task_id: str, agent_id: str, summary: dict[str, Any]) -> AgentOutcome:
    key = f"{task_prefix(task_id)}/work/{agent_id}/summary.json"
    h.blobs.put_bytes(key, json.dumps(summary).encode(), "application/json")
    return AgentOutcome(agent_id=agent_id, summary_key=key, headline=summary, seconds=0.25)


async def test_publish_writes_report_and_records_outputs(h: Harness, agents: dict[str, Any]) -> None:
    _user, plan, refs = await _prepared(h)
    outcome = await ActivityEnvironment().run(h.acts.run_agent, _run(plan, refs, "unified-profiler"))
    request = PublishRequest(
        task_id=plan.task_id,
        tool_id=plan.tool_id,
        agents=["unified-profiler", "score-risk"],
        outcomes=[outcome],
        current=refs,
        status="completed",
    )
    result = await ActivityEnvironment().run(h.acts.publish_outputs, request)
    assert [o.name for o in result.outputs] == ["profile.json", "report.json"]  # no tables: nothing transformed
    report_file = result.outputs[-1]
    assert report_file.key == f"{task_prefix(plan.task_id)}/outputs/report.json"
    report = json.loads(h.blobs.get_bytes(report_file.key))
    assert report["status"] == "completed"
    assert report["agents_requested"] == ["unified-profiler", "score-risk"]
    assert report["agents_completed"] == ["unified-profiler"]
    assert report["outputs"] == ["profile.json"]  # the files written before the report itself
    assert report["agents"]["unified-profiler"] == json.loads(h.blobs.get_bytes(outcome.summary_key))
    task = await h.task(plan.task_id)
    assert [o["name"] for o in task.outputs] == ["profile.json", "report.json"]
    assert task.outputs[-1]["key"] == report_file.key
    assert task.result is not None
    assert task.result["agents_completed"] == ["unified-profiler"]
    assert task.result["outputs"] == ["profile.json", "report.json"]
    assert "agents" not in task.result  # the full summaries live in report.json only


async def test_publish_exports_the_cleaned_tables_as_csv(h: Harness, tmp_path: Path) -> None:
    _user, plan, refs = await _prepared(h)
    request = PublishRequest(
        task_id=plan.task_id,
        tool_id="clean-my-data",
        agents=["null-handler"],
        outcomes=[_outcome(h, plan.task_id, "null-handler", {"nulls_fixed": 1})],
        current=refs,
        status="completed",
    )
    result = await ActivityEnvironment().run(h.acts.publish_outputs, request)
    assert [o.name for o in result.outputs] == ["cleaned_people.csv", "report.json"]
    csv_text = h.blobs.get_bytes(result.outputs[0].key).decode()
    assert csv_text.splitlines()[0] == "id,name,email,amount"
    assert len(csv_text.strip().splitlines()) == 5
    report = json.loads(h.blobs.get_bytes(result.outputs[1].key))
    assert report["headlines"] == {"null-handler": {"nulls_fixed": 1}}


async def test_publish_of_a_failed_run_keeps_the_error(h: Harness) -> None:
    user_id = await h.new_user()
    task_id = await h.new_task(user_id)
    request = PublishRequest(
        task_id=task_id,
        tool_id="profile-my-data",
        agents=["unified-profiler"],
        outcomes=[],
        current=[],
        status="failed",
        error_code="TIMEOUT",
        error_message="time limit reached",
    )
    result = await ActivityEnvironment().run(h.acts.publish_outputs, request)
    assert [o.name for o in result.outputs] == ["report.json"]
    report = json.loads(h.blobs.get_bytes(result.outputs[0].key))
    assert (report["status"], report["error_code"], report["agents_completed"]) == ("failed", "TIMEOUT", [])
    task = await h.task(task_id)
    assert task.result is not None
    assert (task.result["status"], task.result["error_code"]) == ("failed", "TIMEOUT")
    assert task.result["error_message"] == "time limit reached"
    assert task.result["outputs"] == ["report.json"]


# ---------------------------------------------------------------------------------------------- purge_work


async def test_purge_deletes_work_of_old_finished_tasks_only(h: Harness) -> None:
    user_id = await h.new_user()
    now = datetime.now(UTC)
    old = await h.new_task(user_id, status=RunStatus.COMPLETED, completed_at=now - timedelta(hours=48))
    old_failed = await h.new_task(user_id, status=RunStatus.FAILED, completed_at=now - timedelta(hours=30))
    recent = await h.new_task(user_id, status=RunStatus.COMPLETED, completed_at=now - timedelta(hours=1))
    running = await h.new_task(user_id, status=RunStatus.RUNNING)
    for task_id in (old, old_failed, recent, running):
        prefix = task_prefix(task_id)
        h.blobs.put_bytes(f"{prefix}/work/inputs/0.parquet", b"PAR1")
        h.blobs.put_bytes(f"{prefix}/work/unified-profiler/summary.json", b"{}")
        h.blobs.put_bytes(f"{prefix}/outputs/report.json", b"{}")

    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    result = await env.run(h.acts.purge_work, PurgeRequest(retention_hours=24))

    assert (result.tasks, result.blobs_deleted) == (2, 4)
    assert beats == [(1,), (2,)]
    for task_id in (old, old_failed):
        prefix = task_prefix(task_id)
        assert [b.key for b in h.blobs.list(f"{prefix}/work/")] == []
        assert h.blobs.exists(f"{prefix}/outputs/report.json")
        assert h.blobs.exists(f"{prefix}/inputs/0-people.csv")
    for task_id in (recent, running):
        assert len(list(h.blobs.list(f"{task_prefix(task_id)}/work/"))) == 2
    again = await env.run(h.acts.purge_work, PurgeRequest(retention_hours=24))
    assert again.blobs_deleted == 0
