"""Admission: the one check every pipeline's start path makes before it stores, converts or starts anything.

A run is admitted when its user has fewer than the pipeline's cap of runs under way (``TOO_MANY_RUNNING``, 429)
and can pay the run's most (``INSUFFICIENT_CREDITS``, 402): the most is then held, named after the run's row,
and settled when that row ends (:func:`conveyor.records.settle_ended_runs`): the units delivered are charged,
the rest given back.

Race safety: admission first writes the user's row (a no-op ``UPDATE``), which holds that row's write lock until
the caller commits, on SQLite (the database's write lock) and PostgreSQL (the row lock) alike. Two admissions of
one user therefore run one after the other, and the second counts the first's hold: they cannot both pass a cap
of 1. The caller commits its run rows in the same transaction (and must not hold it open across slow work).

A slot is freed when its run's row ends, and a run Temporal ended itself (terminated, timed out) only ends its row
when something reconciles it. So a user found at the cap has their open runs of the pipeline read back against
Temporal first (:func:`conveyor.reconcile.close_ended`, before the user's lock is taken): runs Temporal closed are
ended and settled in the caller's transaction, and their slots count no more.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import CursorResult, distinct, func, inspect, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from conveyor.credits import available_credits
from conveyor.errors import InsufficientCredits, NotFound, RateLimited
from conveyor.models import CreditHold, User
from conveyor.pipeline import Pipeline
from conveyor.reconcile import close_ended
from conveyor.records import RUN_TABLES, RunColumns
from conveyor.settings import Settings


@dataclass(frozen=True)
class RunCharge:
    """One run row a start path is about to record, and the most it can cost."""

    run_table: str
    run_id: str
    amount: int
    details: dict[str, Any] = field(default_factory=dict)
    """What the amount was computed from (units, baselines); the row reads it back when it is settled."""


def running_cap(settings: Settings, pipeline: Pipeline) -> int:
    """How many runs of ``pipeline`` one user may have under way (the setting, else the manifest's default)."""
    default = pipeline.max_running if pipeline.max_running is not None else 0
    return int(settings.max_running_per_user.get(pipeline.name, default))


async def running_runs(session: AsyncSession, user_id: int, pipeline: str) -> int:
    """The user's runs of ``pipeline`` under way: distinct workflows that still hold credits."""
    count = await session.scalar(
        select(func.count(distinct(CreditHold.run_group))).where(
            CreditHold.user_id == user_id, CreditHold.pipeline == pipeline, CreditHold.status == "active"
        )
    )
    return int(count or 0)


async def close_ended_runs(session: AsyncSession, client: Client, user_id: int, pipeline: str) -> bool:
    """End (and settle) the user's open runs of ``pipeline`` that Temporal has closed; True if any ended.

    The rows are changed and flushed in ``session``'s transaction, not committed (the caller commits).
    """
    held = await session.execute(
        select(CreditHold.run_table, CreditHold.run_id).where(
            CreditHold.user_id == user_id,
            CreditHold.pipeline == pipeline,
            CreditHold.status == "active",
            CreditHold.run_table.is_not(None),
            CreditHold.run_id.is_not(None),
        )
    )
    ids: dict[str, set[str]] = {}
    for table, run_id in held:
        ids.setdefault(str(table), set()).add(str(run_id))
    rows: list[RunColumns] = []
    for table, run_ids in sorted(ids.items()):
        model = RUN_TABLES.get(table)
        if model is None:
            continue
        key = inspect(model).primary_key[0]
        found = await session.scalars(
            select(model).where(key.in_(sorted(run_ids))).execution_options(populate_existing=True)
        )
        rows.extend(found)
    return await close_ended(session, client, rows)


async def check_credits(session: AsyncSession, user_id: int, amount: int) -> None:
    """INSUFFICIENT_CREDITS unless the user has ``amount`` available (holds nothing; a cheap early check)."""
    available = await available_credits(session, user_id)
    if available < amount:
        raise InsufficientCredits(
            f"this run costs {amount} credits but only {available} are available",
            details={"required": amount, "available": available},
        )


async def admit(
    session: AsyncSession,
    settings: Settings,
    user_id: int,
    pipeline: Pipeline,
    *,
    group: str,
    charges: Sequence[RunCharge],
    client: Client | None = None,
) -> list[CreditHold]:
    """Admit one run (workflow ``group``) of ``pipeline``: check the cap, hold each charge; nothing is committed.

    With ``client``, a user at the cap first has their open runs of the pipeline reconciled with Temporal
    (:func:`close_ended_runs`), so a run Temporal ended that nobody read back does not keep its slot.
    Raises TOO_MANY_RUNNING (429, naming the pipeline and the cap) or INSUFFICIENT_CREDITS (402); either way
    nothing is held. The caller adds its rows and commits in the same transaction, which ends the user's lock.
    """
    cap = running_cap(settings, pipeline)
    if client is not None and await running_runs(session, user_id, pipeline.name) >= cap:
        await close_ended_runs(session, client, user_id, pipeline.name)
    locked = await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(credits_held=User.credits_held)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(locked, CursorResult)
    if locked.rowcount == 0:
        raise NotFound(f"user {user_id} not found", code="USER_NOT_FOUND")
    running = await running_runs(session, user_id, pipeline.name)
    if running >= cap:
        raise RateLimited(
            f"you already have {running} {pipeline.name} run(s) under way; the cap is {cap}: wait for one to end",
            code="TOO_MANY_RUNNING",
            details={"pipeline": pipeline.name, "cap": cap, "running": running},
        )
    total = sum(max(0, c.amount) for c in charges)
    taken = await session.execute(
        update(User)
        .where(User.id == user_id, User.credits - User.credits_held >= total)
        .values(credits_held=User.credits_held + total)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(taken, CursorResult)
    if taken.rowcount == 0:
        available = await available_credits(session, user_id)
        raise InsufficientCredits(
            f"this {pipeline.name} run costs up to {total} credits but only {available} are available",
            details={"pipeline": pipeline.name, "required": total, "available": available},
        )
    holds = [
        CreditHold(
            reference=f"{pipeline.name}:{c.run_id}:{uuid.uuid4().hex[:8]}",
            user_id=user_id,
            amount=max(0, c.amount),
            status="active",
            pipeline=pipeline.name,
            run_table=c.run_table,
            run_id=c.run_id,
            run_group=group,
            details=dict(c.details),
        )
        for c in charges
    ]
    session.add_all(holds)
    await session.flush()
    return holds
