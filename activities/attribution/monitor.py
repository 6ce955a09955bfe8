"""Fatigue monitoring and its approvals (worker side): the seed's ``monitor_fatigue`` and SafeExecutor.

:meth:`MonitorActivities.assess_fatigue` grades every active ad of every owner from its daily metrics over the
window ending today (:func:`~activities.attribution.fatigue.assess_fatigue`), stores the verdict on the ad and opens
one approval per critical ad. ``approvals.open_key`` (``"<user>:<ad>"``) is unique and set only while an approval is
pending, so an ad never has two open approvals however many monitor runs race; each run returns every approval
still pending, so a run that died before starting their workflows is made good by the next one.

:meth:`MonitorActivities.execute_action` and :meth:`MonitorActivities.close_approval` end an approval with one
conditional ``UPDATE … WHERE status = 'pending'`` in the transaction that applies its effect: only the call that
changes the row pauses or rotates the ad and writes the audit entry, so a retried activity or a second approval
changes nothing and returns the stored outcome (the action runs exactly once).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.attribution import contract
from activities.attribution.fatigue import DailyMetrics, FatigueLevel, FatigueThresholds, assess_fatigue
from activities.attribution.models import Ad, AdMetric, Approval, AuditEntry, Conversion
from activities.attribution.schemas import ApprovalClose, ApprovalOutcome, ApprovalRequest, FatigueReport
from conveyor.db import dialect_insert
from conveyor.errors import BadInput, NotFound
from conveyor.settings import Settings

#: Ads assessed per transaction (one heartbeat each).
AD_BATCH = 200
#: The shortest wait offered to a re-offered approval whose deadline has (nearly) passed: it expires at once.
MIN_TIMEOUT_S = 1.0
#: The audit entry's action for each way an approval can close without running its action.
CLOSE_ACTIONS = {"rejected": "reject", "expired": "expire"}


def thresholds_from(settings: Settings) -> FatigueThresholds:
    """The fatigue thresholds the operator configured."""
    return FatigueThresholds(
        window_days=settings.fatigue_window_days,
        min_days=settings.fatigue_min_days,
        frequency_rise=settings.fatigue_frequency_rise,
        frequency_ceiling=settings.fatigue_frequency_ceiling,
        cpm_rise=settings.fatigue_cpm_rise,
        ctr_decline=settings.fatigue_ctr_decline,
    )


def open_key(user_id: int, ad_id: str) -> str:
    """The key unique among pending approvals: one open approval per owner's ad."""
    return f"{user_id}:{ad_id}"


def _aware(moment: datetime | None) -> datetime | None:
    """``moment`` as UTC-aware (SQLite hands back naive datetimes for timezone columns)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def outcome_of(approval: Approval) -> ApprovalOutcome:
    """An approval row as the workflow reports it."""
    return ApprovalOutcome(
        approval_id=approval.id,
        ad_id=approval.ad_id,
        action=approval.action,
        status=cast(Any, approval.status),
        decided_by=approval.decided_by,
        decided_at=_aware(approval.decided_at),
    )


class MonitorActivities:
    """Activities of ``FatigueMonitorWorkflow`` and ``ApprovalWorkflow``; the worker gives them the DB, the
    thresholds and the approval timeout from its settings (``clock`` is for tests)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        thresholds: FatigueThresholds,
        approval_timeout: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessions = sessions
        self._thresholds = thresholds
        self._approval_timeout = approval_timeout
        self._clock = clock

    @activity.defn(name=contract.ASSESS_FATIGUE)
    async def assess_fatigue(self, _: contract.ScheduledRun) -> FatigueReport:
        """Grade every active ad, store the verdicts, open an approval per critical ad and return all pending ones."""
        now = self._clock()
        today = now.astimezone(UTC).date()
        report = FatigueReport()
        after = 0
        while True:
            async with self._sessions.begin() as session:
                ads = list(
                    (
                        await session.scalars(
                            select(Ad).where(Ad.status == "active", Ad.id > after).order_by(Ad.id).limit(AD_BATCH)
                        )
                    ).all()
                )
                if not ads:
                    break
                after = ads[-1].id
                await self._assess_batch(session, ads, today, now, report)
            activity.heartbeat(after)
        async with self._sessions() as session:
            pending = (await session.scalars(select(Approval).where(Approval.status == "pending"))).all()
            report.approvals = [self._request(a, now) for a in sorted(pending, key=lambda a: a.id)]
        return report

    async def _assess_batch(
        self, session: AsyncSession, ads: Sequence[Ad], today: date, now: datetime, report: FatigueReport
    ) -> None:
        """Assess one batch of ads in ``session``'s transaction, opening approvals for the critical ones."""
        start = today - timedelta(days=self._thresholds.window_days - 1)
        keys = {(ad.user_id, ad.ad_id) for ad in ads}
        rows = await session.scalars(
            select(AdMetric).where(
                AdMetric.user_id.in_({u for u, _ in keys}),
                AdMetric.ad_id.in_({a for _, a in keys}),
                AdMetric.day >= start,
                AdMetric.day <= today,
            )
        )
        metrics: dict[tuple[int, str], list[DailyMetrics]] = defaultdict(list)
        for row in rows:
            if (row.user_id, row.ad_id) in keys:
                metrics[row.user_id, row.ad_id].append(
                    DailyMetrics(
                        day=row.day,
                        impressions=row.impressions,
                        clicks=row.clicks,
                        spend=row.spend,
                        frequency=row.frequency,
                    )
                )
        for ad in ads:
            verdict = assess_fatigue(ad.ad_id, metrics[ad.user_id, ad.ad_id], self._thresholds, as_of=today)
            ad.fatigue_level = verdict.level.value
            ad.fatigue_reasons = list(verdict.reasons)
            ad.fatigue_checked_at = now
            report.assessed += 1
            if verdict.level is FatigueLevel.WARNING:
                report.warning += 1
            elif verdict.level is FatigueLevel.CRITICAL:
                report.critical += 1
                await self._open(session, ad, verdict.action or "pause", verdict.reasons, now)

    async def _open(self, session: AsyncSession, ad: Ad, action: str, reasons: Sequence[str], now: datetime) -> None:
        """Open an approval for ``ad`` unless one is pending (the unique open key decides, even between racing runs)."""
        insert = (
            dialect_insert(session, Approval)
            .values(
                user_id=ad.user_id,
                ad_id=ad.ad_id,
                action=action,
                reasons=list(reasons),
                status="pending",
                open_key=open_key(ad.user_id, ad.ad_id),
                requested_at=now,
                deadline=now + self._approval_timeout,
            )
            .on_conflict_do_nothing(index_elements=["open_key"])
            .returning(Approval.id)
        )
        approval_id = (await session.execute(insert)).scalar_one_or_none()
        if approval_id is not None:
            await session.execute(
                update(Approval)
                .where(Approval.id == approval_id)
                .values(workflow_id=contract.approval_workflow_id(approval_id))
            )

    def _request(self, approval: Approval, now: datetime) -> ApprovalRequest:
        """What an approval's workflow needs: the action, why, and the time left until its deadline."""
        deadline = _aware(approval.deadline) or now + self._approval_timeout
        return ApprovalRequest(
            approval_id=approval.id,
            user_id=approval.user_id,
            ad_id=approval.ad_id,
            action=cast(Literal["pause", "rotate"], approval.action),
            reasons=list(approval.reasons),
            timeout_s=max(MIN_TIMEOUT_S, (deadline - now).total_seconds()),
        )

    @activity.defn(name=contract.EXECUTE_ACTION)
    async def execute_action(self, close: ApprovalClose) -> ApprovalOutcome:
        """Mark the approval executed and pause or rotate its ad, once; a repeat returns the stored outcome."""
        if close.status != "executed":
            raise BadInput(f"execute_action needs status 'executed', not {close.status!r}", code="BAD_APPROVAL_STATUS")
        async with self._sessions.begin() as session:
            now = self._clock()
            if await self._claim(session, close, now, executed_at=now):
                approval = await self._approval(session, close.approval_id)
                details: dict[str, Any] = {"reasons": list(approval.reasons), "note": close.note}
                ad = await session.scalar(select(Ad).where(Ad.user_id == approval.user_id, Ad.ad_id == approval.ad_id))
                if ad is None:
                    details["ad_missing"] = True
                else:
                    details["previous_status"] = ad.status
                    ad.status = "paused" if approval.action == "pause" else "rotated"
                    if approval.action == "rotate":
                        details["left_running"] = await _best_active_sibling(session, ad)
                session.add(self._audit(approval, approval.action, close.by, details, now))
            else:
                approval = await self._approval(session, close.approval_id)
            return outcome_of(approval)

    @activity.defn(name=contract.CLOSE_APPROVAL)
    async def close_approval(self, close: ApprovalClose) -> ApprovalOutcome:
        """Mark the approval rejected or expired, once, with its audit entry; the ad is never touched."""
        action = CLOSE_ACTIONS.get(close.status)
        if action is None:
            raise BadInput(
                f"close_approval needs status 'rejected' or 'expired', not {close.status!r}",
                code="BAD_APPROVAL_STATUS",
            )
        async with self._sessions.begin() as session:
            now = self._clock()
            claimed = await self._claim(session, close, now, executed_at=None)
            approval = await self._approval(session, close.approval_id)
            if claimed:
                details = {"reasons": list(approval.reasons), "note": close.note, "proposed": approval.action}
                session.add(self._audit(approval, action, close.by, details, now))
            return outcome_of(approval)

    @staticmethod
    async def _claim(
        session: AsyncSession, close: ApprovalClose, now: datetime, *, executed_at: datetime | None
    ) -> bool:
        """End the approval if it is still pending; whether this call is the one that ended it."""
        result = cast(
            CursorResult[Any],
            await session.execute(
                update(Approval)
                .where(Approval.id == close.approval_id, Approval.status == "pending")
                .values(
                    status=close.status, open_key=None, decided_by=close.by, decided_at=now, executed_at=executed_at
                )
                .execution_options(synchronize_session=False)
            ),
        )
        return result.rowcount == 1

    @staticmethod
    async def _approval(session: AsyncSession, approval_id: int) -> Approval:
        """The approval's row as the database holds it now."""
        approval = await session.get(Approval, approval_id, populate_existing=True)
        if approval is None:
            raise NotFound(f"approval {approval_id} not found", code="APPROVAL_NOT_FOUND")
        return approval

    @staticmethod
    def _audit(approval: Approval, action: str, actor: str, details: dict[str, Any], now: datetime) -> AuditEntry:
        return AuditEntry(
            user_id=approval.user_id,
            approval_id=approval.id,
            ad_id=approval.ad_id,
            action=action,
            actor=actor,
            details=details,
            at=now,
        )


async def _best_active_sibling(session: AsyncSession, ad: Ad) -> dict[str, Any] | None:
    """The campaign's other active ad with the most conversions (ties: lowest ad id), left running by a rotation."""
    conversions = func.count(Conversion.id)
    row = (
        await session.execute(
            select(Ad.ad_id, conversions)
            .outerjoin(Conversion, and_(Conversion.user_id == Ad.user_id, Conversion.ad_id == Ad.ad_id))
            .where(
                Ad.user_id == ad.user_id,
                Ad.campaign_id == ad.campaign_id,
                Ad.status == "active",
                Ad.ad_id != ad.ad_id,
            )
            .group_by(Ad.ad_id)
            .order_by(conversions.desc(), Ad.ad_id)
            .limit(1)
        )
    ).first()
    return None if row is None else {"ad_id": row[0], "conversions": int(row[1])}


def monitor_activities(acts: MonitorActivities) -> list[Callable[..., Any]]:
    """Every activity the fatigue queue serves."""
    return [acts.assess_fatigue, acts.execute_action, acts.close_approval]
