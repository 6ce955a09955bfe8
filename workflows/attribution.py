"""Attribution workflows (seed 004's ML service): per-portal ingest, per-campaign samplers, fatigue approvals and
the winner index. Deterministic: every read and write is an activity; randomness is ``workflow.random()`` in
handlers, never in queries.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes

with workflow.unsafe.imports_passed_through():
    import asyncio

    from temporalio.exceptions import (
        ActivityError,
        ApplicationError,
        WorkflowAlreadyStartedError,
        is_cancelled_exception,
    )

    from activities.attribution import contract
    from activities.attribution.sampler import Allocation, CampaignSampler
    from activities.attribution.schemas import (
        ApprovalClose,
        ApprovalOutcome,
        ApprovalRequest,
        ArmView,
        BatchRequest,
        BatchResult,
        Decision,
        FatigueReport,
        IndexBuilt,
        IndexReport,
        IngestState,
        RewardBatch,
        RewardDelivery,
        RewardsApplied,
        RewardsSent,
        SamplerInput,
        SamplerView,
        SignalDecision,
        SimilarRequest,
        SimilarResult,
        WinnerSets,
    )
    from conveyor.errors import Conflict, ErrorKind
    from conveyor.progress import PROGRESS_QUERY, Progress
    from conveyor.steps import Step, retries
    from conveyor.temporal import OWNER_ATTR, PIPELINE_ATTR


#: A batch may fetch up to its size in deals from HubSpot (8 at a time) before its transaction.
APPLY_BATCH = Step(
    contract.APPLY_BATCH,
    timedelta(minutes=5),
    retries(10, first=timedelta(seconds=1), most=timedelta(minutes=1)),
    heartbeat=timedelta(seconds=15),
)
REWARD_SAMPLERS = Step(contract.REWARD_SAMPLERS, timedelta(seconds=60), retries(10, most=timedelta(minutes=1)))
#: An idle portal looks at its inbox again this often, in case a wake-up was lost (an API that died mid-request).
IDLE_RECHECK = timedelta(minutes=5)
#: Continue as new past this many history events (a wake-up signal and a batch add a handful each).
HISTORY_LIMIT = 4000
#: A sampler continues as new after this many reward deliveries (each is one signal or update in its history).
SAMPLER_DELIVERIES_PER_RUN = 500


@workflow.defn(name=contract.INGEST_WORKFLOW)
class HubSpotIngestWorkflow:
    """One per portal, long-running: applies the portal's accepted events in batches whenever the API rings.

    The API writes every accepted event to the inbox, then signals ``wake`` (signal-with-start). Each wake-up runs
    batches until the inbox holds nothing pending; rewards a batch earned go to the campaigns' samplers. Wake-ups
    that arrive during a batch are coalesced into the next one, so a burst costs a batch per few hundred events.
    """

    def __init__(self) -> None:
        self._wakes = 0
        self._seen = 0
        self._state = IngestState(portal_id=0)
        self._progress = Progress(stage="idle")

    @workflow.signal(name=contract.WAKE_SIGNAL)
    def wake(self) -> None:
        """New events were accepted for this portal."""
        self._wakes += 1

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> Progress:
        """Events processed and failed so far (this run and the runs it continued)."""
        return self._progress

    def _report(self, stage: str, remaining: int = 0) -> None:
        s = self._state
        self._progress = self._progress.advance(
            workflow.now(),
            stage=stage,
            done=s.processed + s.failed,
            total=s.processed + s.failed + remaining,
            message=f"{s.processed} processed, {s.failed} failed in {s.batches} batches; {remaining} pending",
        )

    @workflow.run
    async def run(self, state: IngestState) -> None:
        """Drain the inbox, wait for the next wake-up (or the idle re-check), and continue as new before the history
        grows long."""
        self._state = state
        while True:
            self._seen = self._wakes
            result = await APPLY_BATCH.run(BatchRequest(portal_id=state.portal_id, limit=state.batch_size), BatchResult)
            if result.processed or result.failed:
                state.batches += 1
                state.processed += result.processed
                state.failed += result.failed
            if result.rewards:
                await REWARD_SAMPLERS.run(RewardDelivery(batches=result.rewards), RewardsSent)
            self._report("applying" if result.remaining else "idle", result.remaining)
            if workflow.info().get_current_history_length() > HISTORY_LIMIT or (
                workflow.info().is_continue_as_new_suggested()
            ):
                await workflow.wait_condition(workflow.all_handlers_finished)
                state.generation += 1
                workflow.continue_as_new(state)
            if result.remaining:
                continue
            try:
                await workflow.wait_condition(lambda: self._wakes > self._seen, timeout=IDLE_RECHECK)
            except TimeoutError:
                pass


def sampler_view(owner: int, sampler: CampaignSampler) -> SamplerView:
    """A campaign sampler's posteriors, allocation and counts, ads in id order."""
    arms = []
    for ad_id in sorted(sampler.arms):
        alpha, beta = sampler.posterior(ad_id)
        arms.append(
            ArmView(
                ad_id=ad_id,
                alpha=alpha,
                beta=beta,
                mean=sampler.mean(ad_id),
                lower_bound=sampler.lower_bound(ad_id),
                trials=sampler.arms[ad_id].trials,
            )
        )
    return SamplerView(
        owner=owner,
        campaign_id=sampler.campaign_id,
        arms=arms,
        allocation=sampler.allocation,
        rewards_applied=sampler.rewards_applied,
        duplicates_ignored=sampler.duplicates_ignored,
    )


@workflow.defn(name=contract.SAMPLER_WORKFLOW)
class CampaignSamplerWorkflow:
    """One per campaign, long-running: the seed's BattleHardenedSampler holding a Beta posterior per ad.

    Rewards arrive as ``reward`` signals (from ingest batches) or ``apply_rewards`` updates, each reward with its
    dedupe key, applied once whatever the repeats (the recent keys travel through ``continue_as_new``). After each
    delivery that changed something the allocation is drawn again — Thompson sampling with ``workflow.random()`` —
    and kept; the ``allocations`` query returns the one kept (a query may not draw: it is not replayed).
    """

    @workflow.init
    def __init__(self, start: SamplerInput) -> None:
        self._owner = start.owner
        self._sampler = start.state or CampaignSampler(campaign_id=start.campaign_id)
        self._deliveries = 0

    def _apply(self, batch: RewardBatch) -> RewardsApplied:
        known = len(self._sampler.arms)
        for ad_id in batch.ads:
            self._sampler.add_ad(ad_id)
        applied = sum(1 for r in batch.rewards if self._sampler.reward(r.ad_id, r.successes, r.failures, r.key))
        if applied or len(self._sampler.arms) != known or self._sampler.allocation is None:
            self._sampler.allocate(workflow.random())
        self._deliveries += 1
        return RewardsApplied(
            applied=applied, duplicates=len(batch.rewards) - applied, allocation=self._sampler.allocation
        )

    @workflow.signal(name=contract.REWARD_SIGNAL)
    def reward(self, batch: RewardBatch) -> None:
        """Apply rewards (each once per key) and draw the allocation again."""
        self._apply(batch)

    @workflow.update(name=contract.REWARD_UPDATE)
    def apply_rewards(self, batch: RewardBatch) -> RewardsApplied:
        """Apply rewards and answer how many changed the posteriors, with the allocation drawn after them."""
        return self._apply(batch)

    @apply_rewards.validator
    def _check_rewards(self, batch: RewardBatch) -> None:
        for r in batch.rewards:
            if not r.key or len(r.key) > 128 or r.successes < 0 or r.failures < 0:
                raise ValueError(f"reward for {r.ad_id!r}: a key of 1-128 characters and non-negative evidence")

    @workflow.query(name=contract.ALLOCATIONS_QUERY)
    def allocations(self) -> Allocation | None:
        """The allocation last drawn: each ad's probability of being best and its budget share."""
        return self._sampler.allocation

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> Progress:
        """Rewards applied so far (a long-lived entity: it never reaches 100 %)."""
        s = self._sampler
        best = max(s.allocation.shares.items(), key=lambda kv: kv[1]) if s.allocation and s.allocation.shares else None
        lead = f"; {best[0]} leads with {best[1]:.0%} of the budget" if best else ""
        return Progress(
            stage="sampling",
            done=s.rewards_applied,
            message=f"{len(s.arms)} ads, {s.rewards_applied} rewards, {s.duplicates_ignored} repeats ignored{lead}",
        )

    @workflow.query(name=contract.SAMPLER_QUERY)
    def sampler(self) -> SamplerView:
        """Posteriors, lower credible bounds, the allocation and the reward counts."""
        return sampler_view(self._owner, self._sampler)

    @workflow.run
    async def run(self, start: SamplerInput) -> None:
        """Hold the posteriors; continue as new (carrying them and the recent keys) before the history grows."""
        await workflow.wait_condition(
            lambda: self._deliveries >= SAMPLER_DELIVERIES_PER_RUN or workflow.info().is_continue_as_new_suggested()
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(SamplerInput(owner=self._owner, campaign_id=start.campaign_id, state=self._sampler))


#: One pass over every active ad, a transaction and a heartbeat per batch of ads.
ASSESS_FATIGUE = Step(
    contract.ASSESS_FATIGUE,
    timedelta(minutes=30),
    retries(5, first=timedelta(seconds=10), most=timedelta(minutes=5)),
    heartbeat=timedelta(seconds=60),
)
#: An approved action must run: a database outage of up to about an hour is waited out, then the workflow fails
#: (visible in the Web UI) and the approval stays pending, so the next monitor run offers it again.
EXECUTE_ACTION = Step(
    contract.EXECUTE_ACTION, timedelta(seconds=30), retries(20, first=timedelta(seconds=2), most=timedelta(minutes=5))
)
CLOSE_APPROVAL = Step(
    contract.CLOSE_APPROVAL, timedelta(seconds=30), retries(20, first=timedelta(seconds=2), most=timedelta(minutes=5))
)
#: The shortest wait for a decision (an approval re-offered after its deadline expires at once).
MIN_DECISION_WAIT = timedelta(seconds=1)


@workflow.defn(name=contract.FATIGUE_WORKFLOW)
class FatigueMonitorWorkflow:
    """Every 6 hours (a Schedule, overlap SKIP): grade every active ad and ask a human about each critical one.

    Each pending approval gets its own ``ApprovalWorkflow`` child, abandoned so it outlives this run; its id is the
    approval's, so a run that offers an approval already waiting starts nothing twice.
    """

    def __init__(self) -> None:
        self._progress = Progress(stage="assessing")

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> Progress:
        """Assessing, then starting approvals, then done with the counts."""
        return self._progress

    @workflow.run
    async def run(self, _: contract.ScheduledRun) -> FatigueReport:
        """Assess the ads, start an approval workflow per pending approval, return the report."""
        self._progress = self._progress.advance(workflow.now(), stage="assessing")
        report = await ASSESS_FATIGUE.run(contract.ScheduledRun(), FatigueReport)
        total = len(report.approvals)
        self._progress = self._progress.advance(workflow.now(), stage="approvals", total=total)
        for done, request in enumerate(report.approvals, start=1):
            try:
                await workflow.start_child_workflow(
                    ApprovalWorkflow.run,
                    request,
                    id=contract.approval_workflow_id(request.approval_id),
                    task_queue=contract.FATIGUE_QUEUE,
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    # findable like every Conveyor workflow, by pipeline and by the ad's owner
                    search_attributes=TypedSearchAttributes(
                        [
                            SearchAttributePair(PIPELINE_ATTR, contract.NAME),
                            SearchAttributePair(OWNER_ATTR, str(request.user_id)),
                        ]
                    ),
                )
            except WorkflowAlreadyStartedError:
                pass  # its workflow is already waiting for the decision
            self._progress = self._progress.advance(
                workflow.now(), done=done, percent=100.0 * done / total if total else 100.0
            )
        self._progress = self._progress.advance(
            workflow.now(),
            stage="done",
            percent=100.0,
            message=f"{report.assessed} ads assessed: {report.warning} warning, {report.critical} critical; "
            f"{total} approval(s) pending",
        )
        return report


@workflow.defn(name=contract.APPROVAL_WORKFLOW)
class ApprovalWorkflow:
    """The seed's SafeExecutor: a critical ad's action waits for a human's approve or reject, 24 h at most.

    Decisions come as the ``decide`` update (API, CLI: answered once the decision is carried out) or the ``approve``
    / ``reject`` signals (the Web UI). Only the first decision counts: a different second one is refused by the
    update's validator and ignored as a signal. Approve runs the action exactly once (the activity's conditional
    update); reject, or no decision before the timeout, closes the approval and runs nothing. The wait is a durable
    timer, so an approval survives worker and server restarts.
    """

    @workflow.init
    def __init__(self, request: ApprovalRequest) -> None:
        self._decision: Decision | None = None
        self._expired = False
        self._finished = False
        self._outcome = ApprovalOutcome(
            approval_id=request.approval_id, ad_id=request.ad_id, action=request.action, status="pending"
        )
        self._progress = Progress(stage="waiting", total=1, message=f"{request.action} {request.ad_id}?")

    def _decide(self, decision: Decision) -> None:
        if self._decision is None and not self._expired:
            self._decision = decision

    @workflow.signal(name=contract.APPROVE_SIGNAL)
    def approve(self, decision: SignalDecision) -> None:
        """Approve the action (ignored once a decision was taken or the approval expired)."""
        self._decide(Decision(approve=True, by=decision.by, note=decision.note))

    @workflow.signal(name=contract.REJECT_SIGNAL)
    def reject(self, decision: SignalDecision) -> None:
        """Reject the action (ignored once a decision was taken or the approval expired)."""
        self._decide(Decision(approve=False, by=decision.by, note=decision.note))

    @workflow.update(name=contract.DECIDE_UPDATE)
    async def decide(self, decision: Decision) -> ApprovalOutcome:
        """Approve or reject; answers once the decision is carried out (a repeat of it gets the same outcome)."""
        self._decide(decision)
        await workflow.wait_condition(lambda: self._finished)
        return self._outcome

    @decide.validator
    def _check_decision(self, decision: Decision) -> None:
        """Refuse a decision after the timeout, and one that contradicts the decision already taken."""
        approval = self._outcome.approval_id
        if self._expired:
            raise Conflict(
                f"approval {approval} expired without a decision", code="APPROVAL_EXPIRED"
            ).to_application_error()
        taken = self._decision
        if taken is not None and taken.approve != decision.approve:
            verdict = "approved" if taken.approve else "rejected"
            raise Conflict(
                f"approval {approval} was already {verdict} by {taken.by}", code="APPROVAL_DECIDED"
            ).to_application_error()

    @workflow.query(name=contract.APPROVAL_QUERY)
    def approval(self) -> ApprovalOutcome:
        """The approval's state: pending, or how it ended, by whom and when."""
        return self._outcome

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> Progress:
        """Waiting for a decision, carrying it out, or how it ended."""
        return self._progress

    @workflow.run
    async def run(self, request: ApprovalRequest) -> ApprovalOutcome:
        """Wait for the first decision or the timeout, carry it out once, and return how the approval ended."""
        self._progress = self._progress.advance(workflow.now())
        wait = max(MIN_DECISION_WAIT, timedelta(seconds=request.timeout_s))
        try:
            await workflow.wait_condition(lambda: self._decision is not None, timeout=wait)
        except TimeoutError:
            self._expired = True
        decision = self._decision
        self._progress = self._progress.advance(workflow.now(), stage="deciding")
        if decision is None:
            step, close = CLOSE_APPROVAL, ApprovalClose(approval_id=request.approval_id, status="expired", by="timeout")
        else:
            step = EXECUTE_ACTION if decision.approve else CLOSE_APPROVAL
            close = ApprovalClose(
                approval_id=request.approval_id,
                status="executed" if decision.approve else "rejected",
                by=decision.by,
                note=decision.note,
            )
        self._outcome = await step.run(close, ApprovalOutcome)
        self._finished = True
        self._progress = self._progress.advance(
            workflow.now(), stage=self._outcome.status, done=1, percent=100.0, message=self._outcome.decided_by or ""
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._outcome


#: Sampler queries for every campaign with active ads (one short RPC each).
COLLECT_WINNERS = Step(contract.COLLECT_WINNERS, timedelta(minutes=2), retries(3, first=timedelta(seconds=5)))
#: Embedding an owner's winners (≈100 creatives/s on 2 cores) and writing a FAISS version; heartbeats every second.
BUILD_INDEX = Step(
    contract.BUILD_INDEX,
    timedelta(minutes=10),
    retries(3, first=timedelta(seconds=10), most=timedelta(minutes=2)),
    heartbeat=timedelta(seconds=30),
)
#: One embedding and one exact search; inside the search workflow's own 60 s.
SEARCH_CREATIVES = Step(contract.SEARCH_CREATIVES, contract.SIMILAR_TIMEOUT, retries(3))


@workflow.defn(name=contract.INDEX_WORKFLOW)
class WinnerIndexWorkflow:
    """Every 12 hours (a Schedule): collect each campaign's winners, then switch each owner's index to a new version.

    Owners are built one after another (embedding is CPU-bound); one owner's failed build does not stop the others',
    and the run fails at the end naming the owners whose index kept its previous version.
    """

    def __init__(self) -> None:
        self._progress = Progress(stage="queued")

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> Progress:
        """Owners whose index was built, of those with winners."""
        return self._progress

    @workflow.run
    async def run(self, _: contract.ScheduledRun) -> IndexReport:
        """Collect winners, build each owner's index, report the versions switched to."""
        self._progress = self._progress.advance(workflow.now(), stage="collecting", message="asking the samplers")
        winners = await COLLECT_WINNERS.run(contract.ScheduledRun(), WinnerSets)
        total = len(winners.owners)
        report = IndexReport()
        failed: list[int] = []
        self._progress = self._progress.advance(
            workflow.now(), stage="building", total=total, message=f"{total} owners with winners"
        )
        for done, owner in enumerate(winners.owners, start=1):
            try:
                report.built.append(await BUILD_INDEX.run(owner, IndexBuilt))
            except ActivityError as err:
                if is_cancelled_exception(err):
                    raise asyncio.CancelledError() from err
                workflow.logger.warning("winner index of owner %s not built: %s", owner.user_id, err.cause or err)
                failed.append(owner.user_id)
            self._progress = self._progress.advance(
                workflow.now(),
                done=done,
                percent=100.0 * done / total,
                message=f"{len(report.built)} built" + (f", {len(failed)} failed" if failed else ""),
            )
        if failed:
            self._progress = self._progress.advance(workflow.now(), stage="failed")
            raise ApplicationError(
                f"winner index not rebuilt for owners {failed}: they keep their previous version",
                {"failed": failed, "built": [b.user_id for b in report.built]},
                type=ErrorKind.EXTERNAL_SERVICE.value,
                non_retryable=True,
            )
        self._progress = self._progress.advance(workflow.now(), stage="completed", percent=100.0, done=total)
        return report


@workflow.defn(name=contract.SIMILAR_WORKFLOW)
class CreativeSearchWorkflow:
    """Runs one similar-creative search on a worker of ``attribution.index``, where the embedder and indexes are."""

    def __init__(self) -> None:
        self._progress = Progress(stage="queued", total=1)

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> Progress:
        """Searching, or completed."""
        return self._progress

    @workflow.run
    async def run(self, request: SimilarRequest) -> SimilarResult:
        """The owner's winners nearest the text, best first."""
        self._progress = self._progress.advance(workflow.now(), stage="searching")
        result = await SEARCH_CREATIVES.run(request, SimilarResult)
        self._progress = self._progress.advance(
            workflow.now(), stage="completed", percent=100.0, done=1, message=f"{len(result.results)} creatives"
        )
        return result
