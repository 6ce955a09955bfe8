"""Column builders the migrations share.

Every builder returns fresh ``sa.Column`` objects on each call (a column belongs to one table). The migrations
are history: a builder must keep producing exactly the columns the revisions that use it created, so a new shape
gets a new builder (or a new keyword with the old default), never an edit of an old one.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

TS = sa.DateTime(timezone=True)

Column = sa.Column[Any]
ColumnType = sa.types.TypeEngine[Any] | type[sa.types.TypeEngine[Any]]


def pk(type_: ColumnType = sa.Integer, name: str = "id") -> Column:
    """The primary key column (an integer ``id`` unless told)."""
    return sa.Column(name, type_, primary_key=True)


def uuid_pk(name: str = "id") -> Column:
    """A primary key holding a UUID's 36-character text."""
    return pk(sa.String(36), name)


def parent_fk(name: str, type_: ColumnType, target: str, *, index: bool = True, unique: bool = False) -> Column:
    """A required reference to ``target`` (``table.column``) whose rows go when the parent goes."""
    fk = sa.ForeignKey(target, ondelete="CASCADE")
    return sa.Column(name, type_, fk, nullable=False, index=index or None, unique=unique or None)


def user_fk() -> Column:
    """The owning user (``users.id``), indexed."""
    return parent_fk("user_id", sa.Integer, "users.id")


def required(**types: ColumnType) -> list[Column]:
    """Plain ``NOT NULL`` columns, one a keyword (``name=type``), in the order given."""
    return [sa.Column(name, type_, nullable=False) for name, type_ in types.items()]


def optional(**types: ColumnType) -> list[Column]:
    """Plain nullable columns, one a keyword (``name=type``), in the order given."""
    return [sa.Column(name, type_, nullable=True) for name, type_ in types.items()]


def status(length: int = 20) -> Column:
    """The required, indexed ``status`` word of a row that lists are filtered by."""
    return sa.Column("status", sa.String(length), nullable=False, index=True)


def workflow_id() -> Column:
    """The Temporal workflow that runs the row, once started."""
    return sa.Column("workflow_id", sa.String(100), nullable=True)


def error_columns() -> list[Column]:
    """``error_code`` and ``error_message`` of a failure."""
    return [sa.Column("error_code", sa.String(64), nullable=True), sa.Column("error_message", sa.Text, nullable=True)]


def created_at(*, index: bool = False) -> Column:
    """The required creation time."""
    return sa.Column("created_at", TS, nullable=False, index=index or None)


def updated_at(*, nullable: bool = False) -> Column:
    """The last change's time."""
    return sa.Column("updated_at", TS, nullable=nullable)


def run_times() -> list[Column]:
    """``started_at`` and ``completed_at``, unset until the run gets there."""
    return [sa.Column("started_at", TS, nullable=True), sa.Column("completed_at", TS, nullable=True)]


def run_columns(*, created_index: bool = False, times: bool = True) -> list[Column]:
    """The tail of a run row: workflow, error, created/updated and (unless ``times`` is off) start/end times."""
    tail = [workflow_id(), *error_columns(), created_at(index=created_index), updated_at()]
    return [*tail, *run_times()] if times else tail


def job_columns() -> list[Column]:
    """The tail of a job row: error, workflow, created and start/end times (no ``updated_at``)."""
    return [*error_columns(), workflow_id(), created_at(), *run_times()]
