"""What every run looks like over HTTP: its lifecycle fields, read from the row, with its Web UI link; and the
reads every pipeline's routes share: one of a user's runs, or a page of them, always reconciled with Temporal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator
from sqlalchemy import inspect, select

from api.caller import Caller
from api.deps import CallerDep
from api.pages import Page, PageDep, PageParams, page_of, paginate
from conveyor.errors import NotFound
from conveyor.reconcile import reconcile
from conveyor.records import RunColumns
from conveyor.runs import RunStatus
from conveyor.settings import Settings

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound=RunColumns)


def context_settings(info: ValidationInfo) -> Settings | None:
    """The settings a response model was validated with (see :func:`public`)."""
    context: dict[str, Any] = info.context or {}
    settings = context.get("settings")
    return settings if isinstance(settings, Settings) else None


class RunOut(BaseModel):
    """A run's lifecycle: status, stage, progress 0-100, workflow and Web UI link, error kind/code/message, times."""

    model_config = ConfigDict(from_attributes=True)

    status: str
    stage: str | None
    progress: float
    workflow_id: str | None
    workflow_url: str | None = None
    error_kind: str | None
    error_code: str | None
    error_message: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    @model_validator(mode="after")
    def _link(self, info: ValidationInfo) -> RunOut:
        settings = context_settings(info)
        if settings is not None and self.workflow_id:
            self.workflow_url = settings.workflow_ui_url(self.workflow_id)
        return self


def public(model: type[M], row: object, settings: Settings, **extra: Any) -> M:
    """The public form of a row: ``model`` read from its attributes (``extra`` added), links from ``settings``."""
    if extra:
        values: dict[str, Any] = {}
        for name, field in model.model_fields.items():
            attribute = field.validation_alias if isinstance(field.validation_alias, str) else name
            if name not in extra and hasattr(row, attribute):
                values[attribute] = getattr(row, attribute)
        return model.model_validate({**values, **extra}, context={"settings": settings})
    return model.model_validate(row, context={"settings": settings})


async def owned_run(caller: Caller, model: type[R], run_id: str, *, what: str, code: str) -> R:
    """The caller's run ``run_id`` of ``model``, reconciled with Temporal; another user's is NotFound ``code``."""
    row = await caller.session.get(model, run_id)
    if row is None or getattr(row, "user_id", None) != caller.user.id:
        raise NotFound(f"{what} {run_id} not found", code=code)
    await reconcile(caller.session, caller.client, [row])
    return row


async def owned_runs(
    caller: Caller, model: type[R], window: PageParams, *, status: RunStatus | None = None
) -> tuple[Sequence[R], int]:
    """A page of the caller's runs of ``model`` (of one status if given), newest first, reconciled; and the total."""
    owner = getattr(model, "user_id")  # noqa: B009  (every user-facing run table has one)
    query = select(model).where(owner == caller.user.id)
    if status is not None:
        query = query.where(model.status == status.value)
    tie_break = inspect(model).primary_key  # rows created in the same instant keep one order across pages
    rows, total = await paginate(caller.session, query.order_by(model.created_at.desc(), *tie_break), window)
    await reconcile(caller.session, caller.client, rows)
    return rows, total


def add_listing(
    router: APIRouter,
    path: str,
    model: type[R],
    response_model: type[M],
    out: Callable[[R, Settings], M],
    *,
    name: str,
    description: str,
) -> None:
    """Add ``GET path`` to ``router``: a page of the user's runs of ``model`` (``?status=`` to filter), newest first,
    each read through :func:`owned_runs` (so reconciled with Temporal) and shown as ``out(row, settings)``."""

    async def listing(caller: CallerDep, window: PageDep, status: RunStatus | None = None) -> Page[Any]:
        rows, total = await owned_runs(caller, model, window, status=status)
        return page_of([out(row, caller.settings) for row in rows], total, window)

    page_model: Any = Page[response_model]  # type: ignore[valid-type]  # a generic page of a class given at run time
    router.add_api_route(path, listing, methods=["GET"], response_model=page_model, name=name, description=description)
