"""Analysis resource limits (issue 12, item 8) and its low items (14): each test fails without its control.

Workbooks are built here: real xlsx files from xlsxwriter, and zip bombs with zipfile (highly compressible
sheet XML, small on disk). DuckDB's limits are read back from a connection the pipeline opens for an agent.
"""

from __future__ import annotations

import io
import json
import struct
import uuid
import zipfile
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any, BinaryIO, cast

import duckdb
import pytest
import structlog
import xlsxwriter  # type: ignore[import-untyped]
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import ClientDisconnect
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.analysis.activities import AnalysisActivities
from activities.analysis.agents.base import AgentContext, AgentResult
from activities.analysis.catalog import task_prefix
from activities.analysis.ingest import convert_to_parquet
from activities.analysis.limits import AnalysisLimits
from activities.analysis.models import AnalysisTask
from activities.analysis.schemas import AgentRun, DatasetRef, InputFile, TaskPlan
from api.services.analysis import Upload, create_task, safe_filename
from conveyor.auth import create_user
from conveyor.errors import BadInput, ConveyorError, TooLarge
from conveyor.settings import Settings
from conveyor.storage import BlobStore, LocalBlobStore
from tests.helpers.stack import Stack

MIB = 1024 * 1024
_WORKBOOK_PARTS = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
        'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
        'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/'
        'workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-'
        'officedocument.spreadsheetml.worksheet+xml"/></Types>'
    ),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
        '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
        '2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'
    ),
    "xl/workbook.xml": (
        '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/'
        '2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>'
        '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
    ),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
        '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
        '2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
    ),
}
_SHEET = "xl/worksheets/sheet1.xml"
_ROW = b'<row><c t="inlineStr"><is><t>boom</t></is></c><c><v>1</v></c></row>'


def zip_bomb_workbook(unpacked_mib: int) -> bytes:
    """A real xlsx whose one sheet is ``unpacked_mib`` MiB of identical rows: tens of KB on disk."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for part, xml in _WORKBOOK_PARTS.items():
            archive.writestr(part, xml)
        with archive.open(_SHEET, "w", force_zip64=False) as sheet:
            sheet.write(b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/')
            sheet.write(b'2006/main"><sheetData>')
            block = _ROW * (MIB // len(_ROW))
            for _ in range(unpacked_mib):
                sheet.write(block)
            sheet.write(b"</sheetData></worksheet>")
    return out.getvalue()


def lying_workbook(unpacked_mib: int, declared: int) -> bytes:
    """A zip bomb whose ZIP headers (local and central) claim the sheet unpacks to ``declared`` bytes."""
    data = bytearray(zip_bomb_workbook(unpacked_mib))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        entry = archive.getinfo(_SHEET)
    struct.pack_into("<L", data, entry.header_offset + 22, declared)  # local header: uncompressed size
    central = _central_entry(data, _SHEET.encode())
    struct.pack_into("<L", data, central + 24, declared)  # central directory: uncompressed size
    return bytes(data)


def _central_entry(data: bytearray, name: bytes) -> int:
    """Offset of the central directory record of ``name``."""
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        (name_len,) = struct.unpack_from("<H", data, at + 28)
        if bytes(data[at + 46 : at + 46 + name_len]) == name:
            return at
        at = data.find(b"PK\x01\x02", at + 4)
    raise AssertionError(f"{name!r} has no central directory record")


def real_workbook(rows: int, columns: int) -> bytes:
    """An honest xlsx (xlsxwriter): a header row and ``rows`` rows of numbers."""
    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True})
    sheet = book.add_worksheet()
    for c in range(columns):
        sheet.write(0, c, f"col{c}")
    for r in range(1, rows + 1):
        for c in range(columns):
            sheet.write_number(r, c, r * c)
    book.close()
    return out.getvalue()


def _plan(blobs: BlobStore, files: dict[str, bytes]) -> TaskPlan:
    """A routed task whose files are stored as the API stores them."""
    task_id = str(uuid.uuid4())
    inputs = []
    for i, (name, data) in enumerate(files.items()):
        key = f"{task_prefix(task_id)}/inputs/{i}-{name}"
        blobs.put_bytes(key, data)
        inputs.append(InputFile(name=name, key=key, size=len(data)))
    return TaskPlan(task_id=task_id, user_id=1, tool_id="profile-my-data", agents=["unified-profiler"], files=inputs)


def _activities(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, **settings: Any
) -> tuple[AnalysisActivities, LocalBlobStore]:
    """The analysis activities with limits from settings (defaults unless given), over a local blob folder."""
    blobs = LocalBlobStore(tmp_path / "blobs")
    limits = AnalysisLimits.from_settings(Settings(var_dir=tmp_path / "var", **settings))
    return AnalysisActivities(sessions, blobs, max_upload_bytes=200 * MIB, limits=limits), blobs


@pytest.fixture
def agents() -> dict[str, Any]:
    """The agent registry (imported lazily, as run_agent does)."""
    from activities.analysis.agents.registry import AGENTS

    return AGENTS


# ---------------------------------------------------------------------------------- 8: xlsx zip bombs


async def test_a_zip_bomb_workbook_fails_the_task_permanently_before_it_is_opened(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    acts, blobs = _activities(sessions, tmp_path)
    bomb = zip_bomb_workbook(64)
    assert len(bomb) < MIB // 4  # small on disk, 64 MiB unpacked
    with pytest.raises(ConveyorError) as caught:
        await ActivityEnvironment().run(acts.prepare_inputs, _plan(blobs, {"bomb.xlsx": bomb}))
    err = caught.value
    assert isinstance(err, BadInput) and err.code == "WORKBOOK_TOO_LARGE" and not err.retryable
    assert "bomb.xlsx" in err.message and "100 to 1" in err.message  # names the file and the limit


def test_a_workbook_unpacking_past_the_size_limit_is_refused_from_its_headers(tmp_path: Path) -> None:
    src = tmp_path / "big.xlsx"
    src.write_bytes(zip_bomb_workbook(12))
    limits = AnalysisLimits(xlsx_max_uncompressed_bytes=8 * MIB, xlsx_max_ratio=10_000)
    with pytest.raises(BadInput) as caught:
        convert_to_parquet(src, "big.xlsx", tmp_path / "out.parquet", max_bytes=MIB, limits=limits)
    assert caught.value.code == "WORKBOOK_TOO_LARGE"
    assert "big.xlsx" in caught.value.message and f"{8 * MIB:,} bytes" in caught.value.message


def test_a_workbook_whose_headers_understate_its_size_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "liar.xlsx"
    src.write_bytes(lying_workbook(12, declared=4096))
    limits = AnalysisLimits(xlsx_max_uncompressed_bytes=8 * MIB)
    with pytest.raises(BadInput) as caught:
        convert_to_parquet(src, "liar.xlsx", tmp_path / "out.parquet", max_bytes=MIB, limits=limits)
    assert caught.value.code == "WORKBOOK_TOO_LARGE" and "4,096 bytes" in caught.value.message


def test_a_sheet_over_the_cell_cap_is_refused_and_one_under_it_converts(tmp_path: Path) -> None:
    src = tmp_path / "wide.xlsx"
    src.write_bytes(real_workbook(rows=99, columns=5))
    small = AnalysisLimits(xlsx_max_cells=499)
    with pytest.raises(BadInput) as caught:
        convert_to_parquet(src, "wide.xlsx", tmp_path / "a.parquet", max_bytes=MIB, limits=small)
    assert caught.value.code == "TOO_MANY_CELLS" and "499" in caught.value.message
    info = convert_to_parquet(src, "wide.xlsx", tmp_path / "b.parquet", max_bytes=MIB, limits=AnalysisLimits())
    assert info.rows == 99 and info.columns == [f"col{c}" for c in range(5)]


async def test_the_api_refuses_a_zip_bomb_workbook_with_400_and_stores_nothing(stack: Stack) -> None:
    _user, key = await stack.new_user(credits=50)
    before = {b.key for b in stack.blobs.list("analysis/")}
    async with stack.http(key) as http:
        files = [("files", ("bomb.xlsx", zip_bomb_workbook(64), "application/octet-stream"))]
        answer = await http.post("/api/tasks", data={"tool_id": "profile-my-data"}, files=files)
    assert answer.status_code == 400, answer.text
    body = answer.json()["error"]
    assert body["code"] == "WORKBOOK_TOO_LARGE" and "bomb.xlsx" in body["message"]
    assert {b.key for b in stack.blobs.list("analysis/")} - before == set()


# ------------------------------------------------------------------------------ 8: DuckDB connection limits


def _probe(ctx: AgentContext) -> AgentResult:
    """An agent that reports the limits of the connection it was given."""
    names = ("memory_limit", "threads", "temp_directory", "max_temp_directory_size")
    row = ctx.con.execute("SELECT " + ", ".join(f"current_setting('{n}')" for n in names)).fetchone()
    assert row is not None
    try:
        ctx.con.execute("SET memory_limit = '64GB'")
        raised = "nothing"
    except duckdb.Error as exc:
        raised = type(exc).__name__
    return AgentResult(summary={**dict(zip(names, row, strict=True)), "raising_the_limit": raised})


def _agent_run(agent_id: str) -> AgentRun:
    return AgentRun(task_id=str(uuid.uuid4()), tool_id="profile-my-data", agent_id=agent_id, inputs=[], current=[])


async def test_every_agent_connection_gets_the_worker_limits_from_settings(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, agents: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(agents, "limits-probe", _probe)
    work = tmp_path / "analysis-work"
    acts, blobs = _activities(
        sessions,
        tmp_path,
        analysis_work_dir=str(work),
        analysis_duckdb_memory_mb=300,
        analysis_duckdb_threads=1,
        analysis_duckdb_max_temp_mb=700,
    )
    outcome = await ActivityEnvironment().run(acts.run_agent, _agent_run("limits-probe"))
    seen = json.loads(blobs.get_bytes(outcome.summary_key))
    assert seen["memory_limit"] == "300.0 MiB"
    assert seen["threads"] == 1
    assert seen["max_temp_directory_size"] == "700.0 MiB"
    assert Path(seen["temp_directory"]).is_relative_to(work.resolve())  # under the worker's own folder
    assert seen["raising_the_limit"] == "InvalidInputException"  # the configuration is locked


def _hog(ctx: AgentContext) -> AgentResult:
    """An agent whose query needs far more memory and spill space than it is allowed."""
    ctx.con.execute(
        "SELECT s, count(*) FROM (SELECT md5(range::VARCHAR) AS s FROM range(4000000)) GROUP BY s ORDER BY s"
    ).fetchall()
    return AgentResult(summary={})


async def test_a_query_past_the_duckdb_limits_fails_permanently_naming_them(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, agents: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(agents, "memory-hog", _hog)
    acts, _blobs = _activities(
        sessions, tmp_path, analysis_duckdb_memory_mb=16, analysis_duckdb_threads=1, analysis_duckdb_max_temp_mb=1
    )
    with pytest.raises(TooLarge) as caught:
        await ActivityEnvironment().run(acts.run_agent, _agent_run("memory-hog"))
    assert caught.value.code == "ANALYSIS_RESOURCE_LIMIT" and not caught.value.retryable
    assert "16 MiB" in caught.value.message and "1 MiB" in caught.value.message


# ------------------------------------------------------------------------------ 8: bounded JSON sampling


def test_json_types_come_from_a_bounded_sample_and_later_keys_are_kept(tmp_path: Path) -> None:
    src = tmp_path / "events.jsonl"
    lines = [json.dumps({"id": i, "kind": "view"}) for i in range(300)]
    lines += [json.dumps({"id": 300, "kind": "buy", "late": "only here"}), json.dumps({"id": "x-301", "kind": "buy"})]
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "events.parquet"
    info = convert_to_parquet(src, "events.jsonl", out, max_bytes=MIB, limits=AnalysisLimits(json_sample_records=100))
    assert info.rows == 302 and info.columns == ["id", "kind", "late"]
    with duckdb.connect() as con:
        types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM '{out}')").fetchall())
        tail = con.execute(f"SELECT id, late FROM '{out}' OFFSET 300").fetchall()
    # a full-file inference would have typed `late` VARCHAR; past the sample, it is kept as JSON, nothing lost
    assert types["late"] == "JSON" and types["kind"] == "VARCHAR"
    assert tail == [("300", '"only here"'), ('"x-301"', None)]


# ------------------------------------------------------------------------------------- 14: file names


NASTY_NAMES = ["..", ".", "", "/", "\x00", "../../etc/passwd", "...", ".hidden.csv", "a\x00b.csv", "C:\\x\\..", " "]


@pytest.mark.parametrize("raw", NASTY_NAMES + ["x" * 5000 + ".csv"])
def test_safe_filename_gives_one_plain_name_inside_a_folder(raw: str, tmp_path: Path) -> None:
    name = safe_filename(raw)
    assert name and name not in {".", ".."} and not name.startswith(".")
    assert "/" not in name and "\\" not in name and "\x00" not in name and len(name) <= 120
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()


def test_safe_filename_keeps_the_extension_of_a_very_long_name() -> None:
    assert safe_filename("x" * 5000 + ".xlsx").endswith("x.xlsx")


async def test_uploads_named_dot_dot_are_never_a_server_error(stack: Stack) -> None:
    _user, key = await stack.new_user(credits=50)
    async with stack.http(key) as http:
        for raw in ("..", "."):
            task = await http.post(
                "/api/tasks",
                data={"tool_id": "profile-my-data"},
                files=[("files", (raw, b"a,b\n1,2\n", "text/csv"))],
            )
            assert task.status_code in (201, 400), task.text
            video = await http.post("/api/videos/upload", files=[("file", (raw, b"not a video", "video/mp4"))])
            assert video.status_code == 400, video.text


# ----------------------------------------------------------------------------- 14: no orphans on failure


def _keys(blobs: BlobStore) -> set[str]:
    return {b.key for b in blobs.list("analysis/")}


async def test_a_second_file_over_the_limit_leaves_no_blobs_behind(stack: Stack) -> None:
    _user, key = await stack.new_user(credits=50)
    before = _keys(stack.blobs)
    big = b"a,b\n" + b"1,2\n" * (stack.settings.max_upload_bytes // 4 + 1)
    async with stack.http(key) as http:
        files = [("files", ("one.csv", b"a,b\n1,2\n", "text/csv")), ("files", ("two.csv", big, "text/csv"))]
        answer = await http.post("/api/tasks", data={"tool_id": "profile-my-data"}, files=files)
    assert answer.status_code == 413, answer.text
    async with stack.sessions() as session:
        tasks = {f"{task_prefix(t)}/" for t in await session.scalars(select(AnalysisTask.task_id))}
    orphans = {k for k in _keys(stack.blobs) - before if not any(k.startswith(p) for p in tasks)}
    assert orphans == set()


class _Disconnecting(io.RawIOBase):
    """A request body whose client goes away after the first chunk."""

    def __init__(self) -> None:
        self._sent = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._sent:
            raise ClientDisconnect()
        self._sent = True
        return b"a,b\n1,2\n"


async def test_a_client_disconnecting_mid_upload_leaves_no_blobs_or_task(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    settings = Settings(var_dir=tmp_path / "var")
    async with sessions.begin() as session:
        user, _key = await create_user(session, "uploader", 100)
    files = [Upload("one.csv", io.BytesIO(b"a,b\n1,2\n")), Upload("two.csv", cast(BinaryIO, _Disconnecting()))]
    async with sessions() as session:
        with pytest.raises(ClientDisconnect):
            await create_task(
                session, blobs, settings, user, tool_id="profile-my-data", agents=[], params={}, files=files
            )
    assert _keys(blobs) == set()
    async with sessions() as session:
        assert list(await session.scalars(select(AnalysisTask.task_id))) == []


# ------------------------------------------------------------------------------- 14: deeply nested JSON


@pytest.mark.parametrize(
    ("field", "raw", "code"),
    [
        ("params", "[" * 100_000 + "]" * 100_000, "BAD_PARAMS"),
        ("params", '{"unified-profiler": ' + "[" * 100_000 + "]" * 100_000 + "}", "BAD_PARAMS"),
        ("params", '{"unified-profiler": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}", "BAD_PARAMS"),
        ("agents", "[" * 100_000 + "]" * 100_000, "BAD_AGENTS"),
    ],
)
async def test_deeply_nested_form_json_is_a_400(stack: Stack, field: str, raw: str, code: str) -> None:
    _user, key = await stack.new_user(credits=50)
    async with stack.http(key) as http:
        answer = await http.post(
            "/api/tasks",
            data={"tool_id": "profile-my-data", field: raw},
            files=[("files", ("a.csv", b"a,b\n1,2\n", "text/csv"))],
        )
    assert answer.status_code == 400, answer.text[:300]
    assert answer.json()["error"]["code"] == code


def test_a_deeply_nested_json_lines_file_is_malformed_not_a_crash(tmp_path: Path) -> None:
    src = tmp_path / "deep.jsonl"
    src.write_text('{"a": 1}\n{"a": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(BadInput) as caught:
        convert_to_parquet(src, "deep.jsonl", tmp_path / "out.parquet", max_bytes=10 * MIB)
    assert caught.value.code == "MALFORMED_FILE" and "line 2" in caught.value.message


# ------------------------------------------------------------------------- 14: no server paths in errors


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """What the code under test logs (structlog's capture)."""
    with structlog.testing.capture_logs() as captured:
        yield captured


async def test_agent_errors_name_no_server_paths_and_the_log_keeps_them(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path, logs: list[MutableMapping[str, Any]]
) -> None:
    acts, blobs = _activities(sessions, tmp_path, analysis_work_dir=str(tmp_path / "work"))
    run = _agent_run("unified-profiler")
    key = f"{task_prefix(run.task_id)}/work/inputs/0.parquet"
    blobs.put_bytes(key, b"PAR1" + b"\x00" * 64 + b"PAR1")  # a corrupt intermediate file
    ref = DatasetRef(name="orders.csv", key=key, rows=1, columns=["a"])
    run = run.model_copy(update={"inputs": [ref], "current": [ref]})
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(acts.run_agent, run)
    message = str(caught.value)
    assert "Footer length" in message  # still says what went wrong
    assert str(tmp_path) not in message and "/tmp" not in message and ".parquet'" not in message
    assert any(str(tmp_path) in str(entry.get("error", "")) for entry in logs)  # the operator sees the path
