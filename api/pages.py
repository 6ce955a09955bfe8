"""Pagination written once: bounded ``limit``/``offset`` query parameters, a generic page, and the query for it.

No ``from __future__ import annotations`` here: FastAPI reads the window's ``Query`` bounds from the annotations
of a function made per call of :func:`page_params`, which must be real objects, not strings naming its locals.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")
R = TypeVar("R")

#: The largest offset accepted (beyond any table Conveyor keeps; larger numbers overflow the databases' integers).
MAX_OFFSET = 1_000_000_000


class Page(BaseModel, Generic[T]):
    """One page of a listing: the items, how many there are in all, and the window asked for."""

    items: list[T]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class PageParams:
    """A listing window."""

    limit: int
    offset: int


def page_params(default: int = 50, most: int = 200) -> Callable[..., PageParams]:
    """A dependency reading ``limit`` (1..``most``, default ``default``) and ``offset`` (0..:data:`MAX_OFFSET`)."""

    def read(
        limit: Annotated[int, Query(ge=1, le=most, description=f"Items per page (at most {most}).")] = default,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")] = 0,
    ) -> PageParams:
        return PageParams(limit=limit, offset=offset)

    return read


PageDep = Annotated[PageParams, Depends(page_params())]


async def paginate(session: AsyncSession, query: Select[R], window: PageParams) -> tuple[Sequence[R], int]:
    """The rows of ``query`` in ``window`` and the count of all its rows."""
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = (await session.scalars(query.limit(window.limit).offset(window.offset))).all()
    return rows, int(total or 0)


def page_of(items: Sequence[T], total: int, window: PageParams) -> Page[T]:
    """A :class:`Page` of ``items`` out of ``total``."""
    return Page[T](items=list(items), total=total, limit=window.limit, offset=window.offset)
