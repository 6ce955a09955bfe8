"""The fatigue monitor's activities on a real SQLite database: grading synthetic metric series, opening one approval
per critical ad however often the monitor runs, and ending an approval exactly once (audited, the ad touched only
when approved)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.attribution import contract
from activities.attribution.fatigue import FatigueThresholds
from activities.attribution.models import Ad, AdMetric, Approval, AuditEntry, Conversion
from activities.attribution.monitor import MonitorActivities, monitor_activities, thresholds_from
from activities.attribution.schemas import ApprovalClose, ApprovalOutcome, FatigueReport
from conveyor.errors import BadInput, NotFound
from conveyor.models import User
from conveyor.settings import Settings

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
TODAY = NOW.date()
TIMEOUT = timedelta(hours=24)
DAYS = 7

Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class Series:
    """A week of daily metrics moving linearly: frequency, CTR and CPM start values and their steps per day."""

    frequency: float = 1.5
    frequency_step: float = 0.0
    ctr: float = 0.03
    ctr_step: float = 0.0
    cpm: float = 5.0
    cpm_step: float = 0.0
    impressions: int = 10_000


FLAT = Series()
#: CTR falls by a twelfth a day, nothing else moves: a warning, no approval.
CTR_FALLING = Series(ctr_step=-0.0025)
#: The audience is saturated (frequency 1.5 → 3.0) while CTR falls: critical, rotate the creative.
SATURATED = Series(frequency_step=0.25, ctr_step=-0.0025)
#: CPM climbs (5 → 8) while CTR falls, frequency flat: critical, pause.
PRICEY = Series(cpm_step=0.5, ctr_step=-0.0025)


@dataclass
class Clock:
    """A settable clock for the activities."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


async def new_user(sessions: Sessions, name: str) -> int:
    """A user's id."""
    async with sessions.begin() as session:
        user = User(name=name)
        session.add(user)
        await session.flush()
        return user.id


async def add_ad(
    sessions: Sessions,
    user_id: int,
    ad_id: str,
    series: Series | None = FLAT,
    *,
    campaign_id: str = "spring",
    status: str = "active",
    days: int = DAYS,
) -> None:
    """An ad of ``campaign_id`` with ``days`` of ``series`` ending today (``None``: no metrics)."""
    async with sessions.begin() as session:
        session.add(Ad(user_id=user_id, ad_id=ad_id, campaign_id=campaign_id, status=status, name=ad_id))
        if series is None:
            return
        for i in range(days):
            s = series
            impressions = s.impressions
            session.add(
                AdMetric(
                    user_id=user_id,
                    ad_id=ad_id,
                    day=TODAY - timedelta(days=days - 1 - i),
                    impressions=impressions,
                    clicks=round(impressions * (s.ctr + s.ctr_step * i)),
                    spend=(s.cpm + s.cpm_step * i) * impressions / 1000,
                    frequency=s.frequency + s.frequency_step * i,
                )
            )


async def add_conversions(sessions: Sessions, user_id: int, ad_id: str, count: int) -> None:
    """``count`` conversions credited to the ad."""
    async with sessions.begin() as session:
        existing = await session.scalar(select(func.count(Conversion.id)))
        for i in range(count):
            session.add(
                Conversion(
                    event_key=f"evt-{existing or 0}-{i}",
                    user_id=user_id,
                    portal_id=1,
                    deal_id=f"deal-{ad_id}-{i}",
                    ad_id=ad_id,
                    campaign_id="spring",
                    occurred_at=NOW,
                )
            )


def monitor(sessions: Sessions, clock: Callable[[], datetime] | None = None) -> MonitorActivities:
    """The real activities with the default thresholds, a 24 h approval timeout and a fixed clock."""
    return MonitorActivities(sessions, FatigueThresholds(), TIMEOUT, clock=clock or Clock())


async def run_monitor(acts: MonitorActivities) -> FatigueReport:
    """One ``assess_fatigue`` activity run."""
    return await ActivityEnvironment().run(acts.assess_fatigue, contract.ScheduledRun())


async def ad_row(sessions: Sessions, user_id: int, ad_id: str) -> Ad:
    """The ad's row now."""
    async with sessions() as session:
        ad = await session.scalar(select(Ad).where(Ad.user_id == user_id, Ad.ad_id == ad_id))
        assert ad is not None
        return ad


async def approvals(sessions: Sessions) -> list[Approval]:
    """Every approval row, in id order."""
    async with sessions() as session:
        return list((await session.scalars(select(Approval).order_by(Approval.id))).all())


async def audit(sessions: Sessions) -> list[AuditEntry]:
    """Every audit entry, in id order."""
    async with sessions() as session:
        return list((await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all())


async def execute(acts: MonitorActivities, approval_id: int, by: str = "ana", note: str = "") -> ApprovalOutcome:
    """One ``execute_action`` run."""
    close = ApprovalClose(approval_id=approval_id, status="executed", by=by, note=note)
    return await ActivityEnvironment().run(acts.execute_action, close)


async def close(acts: MonitorActivities, approval_id: int, status: str, by: str = "bo") -> ApprovalOutcome:
    """One ``close_approval`` run."""
    request = ApprovalClose.model_validate({"approval_id": approval_id, "status": status, "by": by})
    return await ActivityEnvironment().run(acts.close_approval, request)


def test_thresholds_come_from_the_settings() -> None:
    settings = Settings(
        fatigue_window_days=10,
        fatigue_min_days=5,
        fatigue_frequency_rise=0.05,
        fatigue_frequency_ceiling=4.0,
        fatigue_cpm_rise=0.06,
        fatigue_ctr_decline=0.07,
    )
    assert thresholds_from(settings) == FatigueThresholds(
        window_days=10, min_days=5, frequency_rise=0.05, frequency_ceiling=4.0, cpm_rise=0.06, ctr_decline=0.07
    )


def test_the_fatigue_queue_serves_the_three_monitor_activities(sessions: Sessions) -> None:
    names = {fn.__temporal_activity_definition.name for fn in monitor_activities(monitor(sessions))}  # type: ignore[attr-defined]
    assert names == {contract.ASSESS_FATIGUE, contract.EXECUTE_ACTION, contract.CLOSE_APPROVAL}


async def test_each_ad_is_graded_from_its_own_series_and_the_verdict_stored(sessions: Sessions) -> None:
    owner = await new_user(sessions, "ana")
    await add_ad(sessions, owner, "flat", FLAT)
    await add_ad(sessions, owner, "tiring", CTR_FALLING)
    await add_ad(sessions, owner, "saturated", SATURATED)
    await add_ad(sessions, owner, "pricey", PRICEY)
    await add_ad(sessions, owner, "new", SATURATED, days=2)

    report = await run_monitor(monitor(sessions))

    assert (report.assessed, report.warning, report.critical) == (5, 1, 2)
    levels = {ad: (await ad_row(sessions, owner, ad)).fatigue_level for ad in ("flat", "tiring", "saturated", "pricey")}
    assert levels == {"flat": "none", "tiring": "warning", "saturated": "critical", "pricey": "critical"}
    new = await ad_row(sessions, owner, "new")
    assert new.fatigue_level == "none" and "only 2 day(s)" in new.fatigue_reasons[0]
    saturated = await ad_row(sessions, owner, "saturated")
    assert saturated.fatigue_reasons[0].startswith("CTR falling")
    assert any(r.startswith("frequency rising") for r in saturated.fatigue_reasons)
    assert saturated.fatigue_checked_at is not None
    assert saturated.fatigue_checked_at.replace(tzinfo=UTC) == NOW
    assert saturated.status == "active"  # flagging never acts on its own
    assert {(r.ad_id, r.action) for r in report.approvals} == {("saturated", "rotate"), ("pricey", "pause")}


async def test_metrics_outside_the_window_ending_today_are_not_used(sessions: Sessions) -> None:
    owner = await new_user(sessions, "ana")
    await add_ad(sessions, owner, "stale", SATURATED)
    later = Clock(NOW + timedelta(days=4))  # the window ends today, not on the ad's latest day: 3 days left in it

    report = await run_monitor(monitor(sessions, later))

    assert report.critical == 0 and report.approvals == []
    assert (await ad_row(sessions, owner, "stale")).fatigue_reasons[0].startswith("only 3 day(s)")


async def test_a_critical_ad_opens_exactly_one_approval_however_often_the_monitor_runs(sessions: Sessions) -> None:
    owner = await new_user(sessions, "ana")
    await add_ad(sessions, owner, "saturated", SATURATED)
    clock = Clock()
    acts = monitor(sessions, clock)

    first = await run_monitor(acts)
    clock.now = NOW + timedelta(hours=6)
    second = await run_monitor(acts)

    rows = await approvals(sessions)
    assert len(rows) == 1
    row = rows[0]
    assert (row.user_id, row.ad_id, row.action, row.status) == (owner, "saturated", "rotate", "pending")
    assert row.open_key == f"{owner}:saturated"
    assert row.workflow_id == contract.approval_workflow_id(row.id)
    assert row.deadline is not None and row.deadline.replace(tzinfo=UTC) == NOW + TIMEOUT
    assert row.reasons and row.reasons[0].startswith("CTR falling")
    # both runs offer the one pending approval; the re-run offers only the time left until its deadline
    assert [r.approval_id for r in first.approvals] == [row.id] == [r.approval_id for r in second.approvals]
    assert first.approvals[0].timeout_s == TIMEOUT.total_seconds()
    assert second.approvals[0].timeout_s == (TIMEOUT - timedelta(hours=6)).total_seconds()
    assert second.critical == 1


async def test_an_approval_offered_after_its_deadline_gets_the_shortest_wait(sessions: Sessions) -> None:
    owner = await new_user(sessions, "ana")
    await add_ad(sessions, owner, "saturated", SATURATED)
    clock = Clock()
    acts = monitor(sessions, clock)
    await run_monitor(acts)
    await add_ad(sessions, owner, "later", FLAT)

    clock.now = NOW + TIMEOUT + timedelta(hours=1)
    report = await run_monitor(acts)

    assert [r.timeout_s for r in report.approvals] == [1.0]


async def test_a_closed_approval_lets_a_later_run_ask_again(sessions: Sessions) -> None:
    owner = await new_user(sessions, "ana")
    await add_ad(sessions, owner, "saturated", SATURATED)
    acts = monitor(sessions)
    first = await run_monitor(acts)
    await close(acts, first.approvals[0].approval_id, "rejected")

    second = await run_monitor(acts)

    rows = await approvals(sessions)
    assert [r.status for r in rows] == ["rejected", "pending"]
    assert rows[0].open_key is None
    assert [r.approval_id for r in second.approvals] == [rows[1].id]


async def test_another_users_ads_are_assessed_and_approved_separately(sessions: Sessions) -> None:
    ana = await new_user(sessions, "ana")
    bo = await new_user(sessions, "bo")
    cy = await new_user(sessions, "cy")
    await add_ad(sessions, ana, "ad-1", SATURATED)
    await add_ad(sessions, bo, "ad-1", FLAT)  # the same ad id, another owner, other metrics
    await add_ad(sessions, cy, "ad-1", PRICEY)

    report = await run_monitor(monitor(sessions))

    assert (await ad_row(sessions, ana, "ad-1")).fatigue_level == "critical"
    assert (await ad_row(sessions, bo, "ad-1")).fatigue_level == "none"
    assert (await ad_row(sessions, cy, "ad-1")).fatigue_level == "critical"
    assert sorted((r.user_id, r.action) for r in report.approvals) == [(ana, "rotate"), (cy, "pause")]
    assert sorted(r.open_key or "" for r in await approvals(sessions)) == sorted([f"{ana}:ad-1", f"{cy}:ad-1"])


async def test_paused_and_rotated_ads_are_not_assessed(sessions: Sessions) -> None:
    owner = await new_user(sessions, "ana")
    await add_ad(sessions, owner, "paused", SATURATED, status="paused")
    await add_ad(sessions, owner, "rotated", SATURATED, status="rotated")
    await add_ad(sessions, owner, "no-metrics", None)

    report = await run_monitor(monitor(sessions))

    assert (report.assessed, report.critical, report.approvals) == (1, 0, [])
    assert (await ad_row(sessions, owner, "paused")).fatigue_checked_at is None
    assert (await ad_row(sessions, owner, "no-metrics")).fatigue_reasons == ["no metrics"]


async def test_the_monitor_walks_ads_in_batches(sessions: Sessions, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("activities.attribution.monitor.AD_BATCH", 2)
    owner = await new_user(sessions, "ana")
    for i in range(5):
        await add_ad(sessions, owner, f"ad-{i}", SATURATED if i % 2 else FLAT)
    heartbeats: list[object] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: heartbeats.append(details[0])

    report = await env.run(monitor(sessions).assess_fatigue, contract.ScheduledRun())

    assert (report.assessed, report.critical, len(report.approvals)) == (5, 2, 2)
    assert len(heartbeats) == 3  # one per batch of two ads


async def test_execute_action_twice_pauses_once_with_one_audit_entry(sessions: Sessions) -> None:
    owner = await new_user(sessions, "ana")
    await add_ad(sessions, owner, "pricey", PRICEY)
    clock = Clock()
    acts = monitor(sessions, clock)
    approval_id = (await run_monitor(acts)).approvals[0].approval_id
    clock.now = NOW + timedelta(hours=2)

    first = await execute(acts, approval_id, by="ana", note="CPM too high")
    clock.now = NOW + timedelta(hours=3)
    second = await execute(acts, approval_id, by="dan")

    assert first == second
    assert (first.status, first.action, first.ad_id, first.decided_by) == ("executed", "pause", "pricey", "ana")
    assert first.decided_at == NOW + timedelta(hours=2)
    assert (await ad_row(sessions, owner, "pricey")).status == "paused"
    [entry] = await audit(sessions)
    assert (entry.user_id, entry.approval_id, entry.ad_id, entry.action, entry.actor) == (
        owner,
        approval_id,
        "pricey",
        "pause",
        "ana",
    )
    assert entry.at.replace(tzinfo=UTC) == NOW + timedelta(hours=2)
    assert entry.details["note"] == "CPM too high"
    assert entry.details["reasons"][0].startswith("CTR falling")
    [row] = await approvals(sessions)
    assert (row.status, row.open_key, row.decided_by) == ("executed", None, "ana")
    assert row.executed_at is not None and row.executed_at.replace(tzinfo=UTC) == NOW + timedelta(hours=2)


async def test_rotation_records_the_campaigns_best_active_ad_left_running(sessions: Sessions) -> None:
    owner = await new_user(sessions, "ana")
    await add_ad(sessions, owner, "saturated", SATURATED)
    await add_ad(sessions, owner, "steady", FLAT)
    await add_ad(sessions, owner, "star", FLAT)
    await add_ad(sessions, owner, "stopped", FLAT, status="paused")
    await add_ad(sessions, owner, "elsewhere", FLAT, campaign_id="autumn")
    await add_conversions(sessions, owner, "steady", 1)
    await add_conversions(sessions, owner, "star", 3)
    await add_conversions(sessions, owner, "stopped", 9)
    await add_conversions(sessions, owner, "elsewhere", 9)
    acts = monitor(sessions)
    approval_id = (await run_monitor(acts)).approvals[0].approval_id

    outcome = await execute(acts, approval_id)

    assert (outcome.status, outcome.action) == ("executed", "rotate")
    assert (await ad_row(sessions, owner, "saturated")).status == "rotated"
    [entry] = await audit(sessions)
    assert entry.action == "rotate"
    assert entry.details["left_running"] == {"ad_id": "star", "conversions": 3}
    assert entry.details["previous_status"] == "active"


async def test_close_rejected_or_expired_never_touches_the_ad(sessions: Sessions) -> None:
    owner = await new_user(sessions, "ana")
    await add_ad(sessions, owner, "saturated", SATURATED)
    await add_ad(sessions, owner, "pricey", PRICEY, campaign_id="autumn")
    acts = monitor(sessions)
    ids = {r.ad_id: r.approval_id for r in (await run_monitor(acts)).approvals}

    rejected = await close(acts, ids["saturated"], "rejected", by="bo")
    expired = await close(acts, ids["pricey"], "expired", by="timeout")
    again = await close(acts, ids["saturated"], "rejected", by="cy")
    late_approval = await execute(acts, ids["saturated"], by="dan")

    assert (rejected.status, rejected.decided_by) == ("rejected", "bo")
    assert (expired.status, expired.decided_by) == ("expired", "timeout")
    assert again == rejected and late_approval == rejected  # the first ending stands
    for ad in ("saturated", "pricey"):
        assert (await ad_row(sessions, owner, ad)).status == "active"
    entries = await audit(sessions)
    assert [(e.ad_id, e.action, e.actor) for e in entries] == [
        ("saturated", "reject", "bo"),
        ("pricey", "expire", "timeout"),
    ]
    assert entries[0].details["proposed"] == "rotate"


async def test_an_unknown_approval_or_a_wrong_status_is_refused(sessions: Sessions) -> None:
    acts = monitor(sessions)
    with pytest.raises(NotFound):
        await execute(acts, 404)
    with pytest.raises(NotFound):
        await close(acts, 404, "rejected")
    with pytest.raises(BadInput):
        await close(acts, 1, "executed")
    with pytest.raises(BadInput):
        await ActivityEnvironment().run(acts.execute_action, ApprovalClose(approval_id=1, status="rejected", by="ana"))
