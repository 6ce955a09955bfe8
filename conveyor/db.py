"""SQLAlchemy 2 async engine and sessions (SQLite by default, PostgreSQL via asyncpg by URL)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

ItemT = TypeVar("ItemT")
AnswerT = TypeVar("AnswerT")


class Base(DeclarativeBase):
    """Declarative base of every Conveyor table."""


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep attributes readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def _alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["configure_logger"] = False
    return cfg


def _upgrade(url: str, revision: str) -> None:
    from alembic import command

    command.upgrade(_alembic_config(url), revision)


async def migrate(url: str, revision: str = "head") -> None:
    """Apply Alembic migrations up to ``revision`` (runs in a thread: Alembic drives its own loop)."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(_upgrade, url, revision)


def dialect_insert(session: AsyncSession | AsyncConnection, model: type[Base], *, core: bool = False) -> Any:
    """An INSERT for ``model`` that knows ``ON CONFLICT`` on the session's database (SQLite or PostgreSQL).

    ``core`` inserts into the model's table rather than the mapped class: many rows at once then skip the ORM's
    per-row bulk bookkeeping (the webhook inbox writes whole deliveries this way).
    """
    target: Any = model.__table__ if core else model
    dialect = session.dialect if isinstance(session, AsyncConnection) else session.get_bind().dialect
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(target)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(target)


class GroupCommit(Generic[ItemT, AnswerT]):
    """Group commit: ``write(items) -> answers`` runs once for every item submitted while the previous write ran.

    Concurrent callers then share one transaction instead of queueing for SQLite's single write lock one by one (its
    busy handler sleeps between tries, which is what makes small writes slow under load); on PostgreSQL it saves a
    commit per caller. Each caller still gets its own answer (``answers[i]`` for ``items[i]``), after the
    transaction holding its item committed, or the write's exception.
    """

    def __init__(self, write: Callable[[list[ItemT]], Awaitable[list[AnswerT]]], *, most: int = 64) -> None:
        self._write = write
        self._most = most
        self._waiting: list[tuple[ItemT, asyncio.Future[AnswerT]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: ItemT) -> AnswerT:
        """Write ``item`` with whatever else is waiting; its answer once committed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[AnswerT] = loop.create_future()
        self._waiting.append((item, done))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_all())
        return await asyncio.shield(done)

    async def _write_all(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[: self._most], self._waiting[self._most :]
            try:
                answers = await self._write([item for item, _ in group])
            except BaseException as err:  # noqa: BLE001 - every caller of the group gets the failure
                for _, done in group:
                    if not done.done():
                        done.set_exception(err)
                        done.exception()  # retrieved: a caller that went away logs nothing
            else:
                for (_, done), answer in zip(group, answers, strict=True):
                    if not done.done():
                        done.set_result(answer)
