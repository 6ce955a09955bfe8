"""Run rows: the lifecycle columns every run table shares, and the one writer of them.

A pipeline's run table mixes in :class:`RunColumns`; the mixin registers it by table name so the kernel's
bookkeeping activity (:class:`RunBook`) can apply a :class:`~conveyor.runs.RunUpdate` to any run, and the
progress writer (:func:`row_writer`) can copy a running activity's progress onto its row.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Float, String, Text, event, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, Session, UOWTransaction, attributes, mapped_column
from temporalio import activity

from conveyor.credits import settle_sync
from conveyor.errors import BadInput
from conveyor.models import CreditHold, utcnow
from conveyor.runs import RECORD_RUN, TERMINAL, RunError, RunStatus, RunUpdate

#: Every run table by name (filled in as the pipelines' models are imported).
RUN_TABLES: dict[str, type[RunColumns]] = {}
#: Columns only the lifecycle itself sets (``RunUpdate.fields`` may not name them).
LIFECYCLE_COLUMNS = frozenset(
    {
        "status",
        "stage",
        "progress",
        "workflow_id",
        "error_kind",
        "error_code",
        "error_message",
        "created_at",
        "updated_at",
        "started_at",
        "completed_at",
    }
)


class RunColumns:
    """Lifecycle columns of a run table: status, stage, progress 0–100, error kind/code/message, times."""

    __tablename__: Any

    status: Mapped[str] = mapped_column(String(20), default=RunStatus.QUEUED.value, index=True)
    stage: Mapped[str | None] = mapped_column(String(64), nullable=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    workflow_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    error_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("__tablename__")
        if isinstance(name, str):
            RUN_TABLES[name] = cls

    @property
    def run_status(self) -> RunStatus:
        """The status as the enum."""
        return RunStatus(self.status)

    @property
    def finished(self) -> bool:
        """Whether the run reached a terminal status."""
        return self.status in TERMINAL

    @property
    def error(self) -> RunError | None:
        """The recorded failure, if any."""
        if self.error_code is None:
            return None
        return RunError(kind=self.error_kind or "Internal", code=self.error_code, message=self.error_message or "")

    def set_status(
        self, status: RunStatus, *, error: RunError | None = None, at: datetime | None = None, stage: str | None = None
    ) -> None:
        """Move the run to ``status`` (setting start/end times once, and the error of a failure)."""
        now = at or datetime.now(UTC)
        self.status = status.value
        if stage is not None:
            self.stage = stage
        if status == RunStatus.RUNNING and self.started_at is None:
            self.started_at = now
        if status in TERMINAL:
            self.completed_at = now
            if status == RunStatus.COMPLETED:
                self.progress = 100.0
        if status == RunStatus.FAILED and error is not None:
            self.error_kind, self.error_code, self.error_message = error.kind, error.code, error.message
        elif status != RunStatus.FAILED:
            self.error_kind = self.error_code = self.error_message = None

    async def after_record(self, session: AsyncSession, update: RunUpdate) -> None:
        """A table's own follow-up to a recorded update (counters, timestamps); nothing by default."""

    def credits_due(self, session: Session, held: CreditHold) -> int:
        """Credits this ended run owes for what it delivered, out of ``held`` (the whole hold once completed).

        Called once, as the row ends (inside a flush: ``session`` is synchronous and must not flush). Tables
        whose runs deliver by units (pages, chunks, agents) count what was delivered, so a failed or cancelled
        run pays for its part.
        """
        return held.amount if self.status == RunStatus.COMPLETED.value else 0


def _ended(row: RunColumns) -> bool:
    """Whether ``row``'s pending change moves it to a terminal status."""
    added: list[Any] = list(attributes.get_history(row, "status").added or ())
    return bool(added) and added[-1] in {s.value for s in TERMINAL}


@event.listens_for(Session, "before_flush")
def settle_ended_runs(session: Session, _context: UOWTransaction, _instances: object) -> None:
    """As a run row ends — however it ends: its workflow's record, reconcile, a cancel, a failed start — settle the
    credits its admission held: charge what it delivered, give back the rest (first end wins; once per hold)."""
    ended = [row for row in session.dirty if isinstance(row, RunColumns) and _ended(row)]
    if not ended:
        return
    with session.no_autoflush:
        for row in ended:
            identity = list(inspect(row).identity or ())
            if not identity:
                continue
            holds = session.scalars(
                select(CreditHold).where(
                    CreditHold.run_table == row.__tablename__,
                    CreditHold.run_id == str(identity[0]),
                    CreditHold.status == "active",
                )
            ).all()
            for held in holds:
                due = row.credits_due(session, held)
                settle_sync(session, held, due, reason=f"{held.pipeline or row.__tablename__} run {row.status}")


def run_table(name: str) -> type[RunColumns]:
    """The run table called ``name`` (BadInput for any other table)."""
    model = RUN_TABLES.get(name)
    if model is None:
        raise BadInput(f"{name!r} is not a run table; known: {', '.join(sorted(RUN_TABLES))}", code="UNKNOWN_RUN_TABLE")
    return model


def _check_fields(model: type[RunColumns], fields: Iterable[str]) -> None:
    columns = {c.key for c in inspect(model).column_attrs}
    primary = {c.key for c in inspect(model).primary_key}
    wrong = sorted(f for f in fields if f not in columns or f in primary or f in LIFECYCLE_COLUMNS)
    if wrong:
        raise BadInput(f"{model.__tablename__} has no settable column(s) {', '.join(wrong)}", code="BAD_RUN_UPDATE")


async def apply_update(session: AsyncSession, update: RunUpdate) -> RunColumns | None:
    """Apply ``update`` to its row in ``session``'s transaction; the row, or None when it does not exist."""
    model = run_table(update.table)
    _check_fields(model, update.fields)
    row = await session.get(model, update.id, populate_existing=True)
    if row is None:
        return None
    if row.finished:
        # The first end wins: a late progress write never reopens a finished run, and a bookkeeping activity run
        # a second time (local activities run at least once) never turns one end into another.
        return row
    for name, value in update.fields.items():
        setattr(row, name, value)
    if update.stage is not None:
        row.stage = update.stage
    if update.progress is not None:
        row.progress = max(0.0, min(100.0, float(update.progress)))
    if update.status is not None:
        row.set_status(update.status, error=update.error)
    await row.after_record(session, update)
    return row


class RunBook:
    """The kernel's bookkeeping activity: every workflow records its runs through it."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def write(self, update: RunUpdate) -> None:
        """Apply one update in its own transaction."""
        async with self._sessions.begin() as session:
            await apply_update(session, update)

    @activity.defn(name=RECORD_RUN)
    async def record(self, update: RunUpdate) -> None:
        """Record a run's status, stage, progress, error or columns."""
        await self.write(update)

    def activities(self, legacy_names: Iterable[str] = ()) -> list[Callable[..., Any]]:
        """``record`` and the same writer under each legacy bookkeeping name (for runs started before)."""
        return [self.record, *(self._alias(name) for name in legacy_names)]

    def _alias(self, name: str) -> Callable[..., Any]:
        async def record(update: RunUpdate) -> None:
            await self.write(update)

        record.__doc__ = f"{name}: the kernel's run bookkeeping under the name runs started before it use."
        return activity.defn(name=name)(record)


def row_writer(
    sessions: async_sessionmaker[AsyncSession],
    table: str,
    run_id: str,
    columns: Callable[[Any], dict[str, Any]],
) -> Callable[[Any], Awaitable[None]]:
    """A progress writer for :func:`conveyor.heartbeat.reporting`: ``columns(detail)`` onto an unfinished row.

    ``columns`` maps a heartbeat detail to the row's values: ``progress`` and ``stage`` and the table's own
    columns (``fps``, ``files_done``…).
    """
    model = run_table(table)

    async def write(detail: Any) -> None:
        values = columns(detail)
        async with sessions.begin() as session:
            row = await session.get(model, run_id, populate_existing=True)
            if row is None or row.finished:
                return
            for name, value in values.items():
                if name == "progress" and value is not None:
                    value = max(0.0, min(100.0, float(value)))
                setattr(row, name, value)

    return write
