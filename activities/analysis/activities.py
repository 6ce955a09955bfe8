"""The analysis pipeline's activities: all of its I/O (database, blob store, DuckDB) lives here."""

from __future__ import annotations

import asyncio
import json
import mimetypes
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError, TemporalError

from activities.analysis import contract
from activities.analysis.agents.base import AgentContext, AgentResult, Dataset
from activities.analysis.catalog import TOOLS, task_prefix, tool_cost, validate_plan
from activities.analysis.contract import credits_reference
from activities.analysis.duck import connect
from activities.analysis.ingest import convert_to_parquet
from activities.analysis.limits import AnalysisLimits
from activities.analysis.models import AnalysisTask
from activities.analysis.schemas import (
    AgentOutcome,
    AgentRun,
    AnalysisRequest,
    CreditsRequest,
    DatasetRef,
    InputFile,
    OutputFile,
    PublishRequest,
    PublishResult,
    PurgeRequest,
    PurgeResult,
    TaskPlan,
)
from activities.analysis.sql import qstr
from conveyor import credits
from conveyor.errors import BadInput, ConveyorError, NotFound, TooLarge
from conveyor.heartbeat import ProgressBox, run_blocking
from conveyor.logging import get_logger
from conveyor.models import User
from conveyor.runs import TERMINAL, RunStatus
from conveyor.storage import BlobInfo, BlobStore

log = get_logger(__name__)


class AnalysisActivities:
    """Activities of ``AnalysisWorkflow``; the worker gives them the DB sessions, the blob store and its limits."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        blobs: BlobStore,
        *,
        max_upload_bytes: int,
        limits: AnalysisLimits | None = None,
    ) -> None:
        self._sessions = sessions
        self._blobs = blobs
        self._max_bytes = max_upload_bytes
        self._limits = limits or AnalysisLimits()

    @contextmanager
    def _user_facing_errors(self) -> Iterator[None]:
        """Errors leave without server paths (logged in full here); DuckDB running out of its limits is permanent."""
        try:
            yield
        except ConveyorError as err:
            err.message = scrub_paths(err.message)
            err.args = (err.message,)
            raise
        except duckdb.OutOfMemoryException as exc:
            log.warning("analysis step hit the DuckDB limits", error=str(exc))
            limits = self._limits
            raise TooLarge(
                f"the task needs more than this worker's limits: {limits.duckdb_memory_mb} MiB of memory and "
                f"{limits.duckdb_max_temp_mb} MiB of spill space",
                code="ANALYSIS_RESOURCE_LIMIT",
                details={"memory_mb": limits.duckdb_memory_mb, "max_temp_mb": limits.duckdb_max_temp_mb},
            ) from None
        except (TemporalError, duckdb.InterruptException):
            raise
        except Exception as exc:
            log.error("analysis step failed", error=str(exc), exc_info=True)
            raise ApplicationError(scrub_paths(str(exc)) or type(exc).__name__, type=type(exc).__name__) from None

    def _readable(self, key: str, dest: Path) -> Path:
        """A local file with the blob's content: the blob itself on a local store (read-only), else a download."""
        local = self._blobs.local_path(key)
        if local is not None:
            return local
        dest.parent.mkdir(parents=True, exist_ok=True)
        return self._blobs.download(key, dest)

    @activity.defn(name=contract.LOAD_TASK)
    async def load_task(self, request: AnalysisRequest) -> TaskPlan:
        """Load the task and its owner, route it to its tool and mark it processing."""
        async with self._sessions.begin() as session:
            task = await session.get(AnalysisTask, request.task_id)
            if task is None:
                raise NotFound(f"task {request.task_id} not found", code="TASK_NOT_FOUND")
            if await session.get(User, task.user_id) is None or task.user_id != request.user_id:
                raise NotFound(f"user {request.user_id} not found", code="USER_NOT_FOUND")
            agents = validate_plan(task.tool_id, list(task.agents), len(task.input_files))
            task.set_status(RunStatus.RUNNING, stage="loading")
            task.progress = max(task.progress, 2)
            return TaskPlan(
                task_id=task.task_id,
                user_id=task.user_id,
                tool_id=task.tool_id,
                agents=agents,
                files=[InputFile.model_validate(f) for f in task.input_files],
                params=dict(task.params),
                cost=tool_cost(task.tool_id, agents),
            )

    @activity.defn(name=contract.PREPARE_INPUTS)
    async def prepare_inputs(self, plan: TaskPlan) -> list[DatasetRef]:
        """Convert every input file to Parquet (encoding and delimiter sniffed); reuses earlier conversions."""
        box = ProgressBox({"files_done": 0})

        def convert_all() -> list[DatasetRef]:
            refs: list[DatasetRef] = []
            with self._limits.scratch("conveyor-ingest-") as tmp:
                for i, f in enumerate(plan.files):
                    refs.append(self._convert_one(plan.task_id, i, f, Path(tmp)))
                    box.set({"files_done": i + 1})
            return refs

        with self._user_facing_errors():
            return await run_blocking(convert_all, progress=box)

    def _convert_one(self, task_id: str, index: int, f: InputFile, tmp: Path) -> DatasetRef:
        key = f"{task_prefix(task_id)}/work/inputs/{index}.parquet"
        meta_key = f"{key}.json"
        if self._blobs.exists(meta_key):  # converted by an earlier attempt
            return DatasetRef.model_validate_json(self._blobs.get_bytes(meta_key))
        src = self._readable(f.key, tmp / f"src-{index}{Path(f.name).suffix.lower()}")
        dst = tmp / f"{index}.parquet"
        info = convert_to_parquet(src, f.name, dst, max_bytes=self._max_bytes, limits=self._limits)
        self._blobs.move_file(key, dst, "application/vnd.apache.parquet")
        ref = DatasetRef(
            name=f.name,
            key=key,
            rows=info.rows,
            columns=list(info.columns),
            source_format=info.format,
            encoding=info.encoding,
            delimiter=info.delimiter,
        )
        self._blobs.put_bytes(meta_key, ref.model_dump_json().encode(), "application/json")
        return ref

    @activity.defn(name=contract.HOLD_CREDITS)
    async def hold_credits(self, request: CreditsRequest) -> int:
        """Set the run's cost aside (INSUFFICIENT_CREDITS if the user cannot pay; nothing is charged)."""
        async with self._sessions.begin() as session:
            task = await session.get(AnalysisTask, request.task_id)
            if task is not None:
                task.credits_cost = request.amount
            await credits.hold(session, request.user_id, credits_reference(request.task_id), request.amount)
        return request.amount

    @activity.defn(name=contract.CHARGE_CREDITS)
    async def charge_credits(self, request: CreditsRequest) -> int:
        """Charge the held credits; safe to retry: the ledger's idempotency key charges once."""
        async with self._sessions.begin() as session:
            entry = await credits.capture(session, credits_reference(request.task_id), reason="analysis task")
            return 0 if entry is None else -entry.amount

    @activity.defn(name=contract.RELEASE_CREDITS)
    async def release_credits(self, request: CreditsRequest) -> bool:
        """Give held credits back after a failure or cancellation."""
        async with self._sessions.begin() as session:
            return await credits.release(session, credits_reference(request.task_id))

    @activity.defn(name=contract.RUN_AGENT)
    async def run_agent(self, run: AgentRun) -> AgentOutcome:
        """Run one agent over the chained datasets; cancellation interrupts its DuckDB query."""
        from activities.analysis.agents.registry import AGENTS  # heavy: loaded when an agent first runs

        agent = AGENTS.get(run.agent_id)
        if agent is None:
            raise BadInput(f"unknown agent {run.agent_id!r}", code="UNKNOWN_AGENT")
        box = ProgressBox({"agent": run.agent_id, "fraction": 0.0})
        bind = {"task_id": run.task_id, "agent": run.agent_id}
        with self._limits.scratch(f"conveyor-{run.agent_id}-") as tmp, self._user_facing_errors():
            workdir = Path(tmp)
            con = connect(self._limits, workdir)

            def execute() -> AgentResult:
                ctx = self._agent_context(run, con, workdir, box)
                return agent(ctx)

            started = time.monotonic()
            log.info("agent started", **bind)
            try:
                result = await run_blocking(execute, progress=box, on_cancel=con.interrupt)
            finally:
                con.close()
            seconds = time.monotonic() - started
            outcome = self._store_agent_result(run, result, workdir, seconds)
            log.info("agent finished", seconds=round(seconds, 3), **bind)
            return outcome

    def _agent_context(
        self, run: AgentRun, con: duckdb.DuckDBPyConnection, workdir: Path, box: ProgressBox
    ) -> AgentContext:
        local: dict[str, Path] = {}

        def fetch(ref: DatasetRef) -> Dataset:
            if ref.key not in local:
                local[ref.key] = self._readable(ref.key, workdir / "in" / f"{len(local)}.parquet")
            return Dataset(ref.name, local[ref.key])

        previous = {agent: json.loads(self._blobs.get_bytes(key)) for agent, key in run.previous.items()}
        out = workdir / "out"
        out.mkdir()

        def report(fraction: float, message: str) -> None:
            box.set({"agent": run.agent_id, "fraction": round(fraction, 3), "message": message})

        return AgentContext(
            con=con,
            inputs=[fetch(r) for r in run.inputs],
            current=[fetch(r) for r in run.current],
            params=run.params,
            previous=previous,
            workdir=out,
            report=report,
        )

    def _store_agent_result(self, run: AgentRun, result: AgentResult, workdir: Path, seconds: float) -> AgentOutcome:
        prefix = f"{task_prefix(run.task_id)}/work/{run.agent_id}"
        summary_key = f"{prefix}/summary.json"
        self._blobs.put_bytes(summary_key, json.dumps(result.summary, default=str).encode(), "application/json")
        current: list[DatasetRef] | None = None
        if result.current is not None:
            current = [self._store_dataset(f"{prefix}/{i}.parquet", d, workdir) for i, d in enumerate(result.current)]
        files = [
            self._store_output(run.task_id, name, path, workdir, agent=run.agent_id)
            for name, path in result.files.items()
        ]
        return AgentOutcome(
            agent_id=run.agent_id,
            summary_key=summary_key,
            headline=_headline(result.summary),
            current=current,
            files=files,
            seconds=round(seconds, 3),
        )

    def _keep(self, key: str, path: Path, content_type: str, scratch: Path) -> BlobInfo:
        """Store a produced file: moved in when it is ours to take (under ``scratch``), copied otherwise."""
        if path.resolve().is_relative_to(scratch.resolve()):
            return self._blobs.move_file(key, path, content_type)
        return self._blobs.put_file(key, path, content_type)

    def _store_dataset(self, key: str, dataset: Dataset, scratch: Path) -> DatasetRef:
        con = connect(self._limits, scratch)
        try:
            path = qstr(str(dataset.path))
            rows_row = con.execute(f"SELECT count(*) FROM read_parquet({path})").fetchone()
            columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({path})").fetchall()]
        finally:
            con.close()
        self._keep(key, dataset.path, "application/vnd.apache.parquet", scratch)
        return DatasetRef(name=dataset.name, key=key, rows=int(rows_row[0]) if rows_row else 0, columns=columns)

    def _store_output(self, task_id: str, name: str, path: Path, scratch: Path, *, agent: str | None) -> OutputFile:
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        key = f"{task_prefix(task_id)}/outputs/{name}"
        info = self._keep(key, path, content_type, scratch)
        return OutputFile(name=name, key=key, size=info.size, content_type=content_type, agent=agent)

    @activity.defn(name=contract.PUBLISH_OUTPUTS)
    async def publish_outputs(self, request: PublishRequest) -> PublishResult:
        """Build the response (report.json), export the final tables as CSV and record all outputs."""

        def build() -> list[OutputFile]:
            with self._limits.scratch("conveyor-publish-") as tmp:
                return self._build_outputs(request, Path(tmp))

        with self._user_facing_errors():
            outputs = await run_blocking(build)
        async with self._sessions.begin() as session:
            task = await session.get(AnalysisTask, request.task_id)
            if task is not None:
                task.outputs = [o.model_dump() for o in outputs]
                task.result = _response(request, outputs)
        return PublishResult(outputs=outputs)

    def _build_outputs(self, request: PublishRequest, tmp: Path) -> list[OutputFile]:
        outputs = [f for o in request.outcomes for f in o.files]
        if _exports_tables(request):
            outputs += self._export_tables(request, tmp)
        report = tmp / "report.json"
        summaries = {o.agent_id: json.loads(self._blobs.get_bytes(o.summary_key)) for o in request.outcomes}
        report.write_text(json.dumps({**_response(request, outputs), "agents": summaries}, indent=2, default=str))
        outputs.append(self._store_output(request.task_id, "report.json", report, tmp, agent=None))
        return outputs

    def _export_tables(self, request: PublishRequest, tmp: Path) -> list[OutputFile]:
        files: list[OutputFile] = []
        con = connect(self._limits, tmp)
        try:
            taken = {f.name for o in request.outcomes for f in o.files}
            for i, ref in enumerate(request.current):
                name = _export_name(request.tool_id, ref.name)
                if name in taken:  # the agent already published this table under that name
                    continue
                local = self._readable(ref.key, tmp / f"final-{i}.parquet")
                out = tmp / name
                src, dst = qstr(str(local)), qstr(str(out))
                con.execute(f"COPY (SELECT * FROM read_parquet({src})) TO {dst} (HEADER, DELIMITER ',')")
                files.append(self._store_output(request.task_id, name, out, tmp, agent=None))
        finally:
            con.close()
        return files

    @activity.defn(name=contract.PURGE_WORK)
    async def purge_work(self, request: PurgeRequest) -> PurgeResult:
        """Delete the intermediate Parquet files of tasks that finished before the retention window."""
        cutoff = datetime.now(UTC) - timedelta(hours=request.retention_hours)
        async with self._sessions() as session:
            task_ids = list(
                await session.scalars(
                    select(AnalysisTask.task_id).where(
                        AnalysisTask.status.in_([s.value for s in TERMINAL]),
                        AnalysisTask.completed_at < cutoff,
                    )
                )
            )
        deleted = 0
        for i, task_id in enumerate(task_ids):
            deleted += await asyncio.to_thread(self._blobs.delete_prefix, f"{task_prefix(task_id)}/work/")
            activity.heartbeat(i + 1)
        log.info("purged analysis work files", tasks=len(task_ids), blobs_deleted=deleted)
        return PurgeResult(tasks=len(task_ids), blobs_deleted=deleted)


def _exports_tables(request: PublishRequest) -> bool:
    """Whether the run changed the data (a transforming agent finished), so the tables are an output."""
    tool = TOOLS[request.tool_id]
    return any((spec := tool.agent(o.agent_id)) is not None and spec.transforms for o in request.outcomes)


def _export_name(tool_id: str, dataset_name: str) -> str:
    stem = Path(dataset_name).stem
    if tool_id == "clean-my-data":
        return f"cleaned_{stem}.csv"
    return f"{stem}.csv"


def _response(request: PublishRequest, outputs: list[OutputFile]) -> dict[str, Any]:
    """The task's response: status, agents and their headline numbers, and output names."""
    return {
        "tool_id": request.tool_id,
        "status": request.status,
        "agents_requested": request.agents,
        "agents_completed": [o.agent_id for o in request.outcomes],
        "headlines": {o.agent_id: o.headline for o in request.outcomes},
        "seconds": {o.agent_id: o.seconds for o in request.outcomes},
        "outputs": [o.name for o in outputs],
        "error_code": request.error_code,
        "error_message": request.error_message,
    }


_SCALAR = (int, float, str, bool, type(None))
_SERVER_PATH = re.compile(r"(?<![\w.:/~-])/[^\s'\"`,;:()\[\]{}<>]+")
"""An absolute path in an error message (not a URL, not a ratio such as ``1/2``)."""


def scrub_paths(message: str) -> str:
    """The message with every absolute server path replaced by ``<path>`` (what users see of an error)."""
    return _SERVER_PATH.sub("<path>", message)


def _headline(summary: dict[str, Any], limit: int = 12) -> dict[str, Any]:
    """The scalar top-level figures of a summary (what fits in a workflow payload and a status line)."""
    picked: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, _SCALAR):
            picked[key] = value
        if len(picked) >= limit:
            break
    return picked


ActivityFn = Callable[..., Any]


def analysis_activities(acts: AnalysisActivities) -> list[ActivityFn]:
    """The bound activity methods a worker registers."""
    return [
        acts.load_task,
        acts.prepare_inputs,
        acts.hold_credits,
        acts.charge_credits,
        acts.release_credits,
        acts.run_agent,
        acts.publish_outputs,
        acts.purge_work,
    ]
