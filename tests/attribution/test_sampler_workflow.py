"""The campaign sampler and the portal ingest workflows on the time-skipping server: posteriors are exactly the prior
plus the rewards delivered (each key once, across ``continue_as_new`` too), the kept allocation is the last one drawn
and replays identically, and the ingest workflow with the real activities over SQLite rewards a won deal's ad."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.worker import (
    HandleUpdateInput,
    Interceptor,
    Replayer,
    UnsandboxedWorkflowRunner,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

import workflows.attribution
from activities.attribution import contract
from activities.attribution.deliveries import HubSpotEvent
from activities.attribution.ingest import IngestActivities, ingest_activities
from activities.attribution.models import Ad, Conversion, WebhookEvent
from activities.attribution.sampler import Allocation
from activities.attribution.schemas import IngestState, Reward, RewardBatch, RewardsApplied, SamplerInput, SamplerView
from api.services.attribution import _inbox_row
from conveyor.auth import create_user
from conveyor.progress import PROGRESS_QUERY, Progress
from conveyor.settings import Settings
from tests.helpers import DATA_CONVERTER, NewWorker, assert_eventually
from tests.helpers.hubspot import deal_event
from workflows.attribution import CampaignSamplerWorkflow, HubSpotIngestWorkflow

Sessions = async_sessionmaker[AsyncSession]
SamplerHandle = WorkflowHandle[Any, None]

#: The sampler's defaults: a uniform prior and a 5 % exploration floor.
PRIOR = (1.0, 1.0)
FLOOR = 0.05


async def start_sampler(client: Client, task_queue: str, owner: int = 7) -> SamplerHandle:
    """A new campaign sampler workflow (a fresh campaign: the test server outlives each test)."""
    campaign = f"camp-{uuid.uuid4().hex[:12]}"
    return await client.start_workflow(
        CampaignSamplerWorkflow.run,
        SamplerInput(owner=owner, campaign_id=campaign),
        id=contract.sampler_workflow_id(owner, campaign),
        task_queue=task_queue,
    )


def batch(*rewards: Reward, ads: tuple[str, ...] = ()) -> RewardBatch:
    """Rewards for the test's campaign (the sampler keys state by workflow, not by the batch's names)."""
    return RewardBatch(owner=7, campaign_id="test", ads=list(ads), rewards=list(rewards))


def win(ad_id: str, key: str, n: float = 1.0) -> Reward:
    """``n`` successes for an ad."""
    return Reward(ad_id=ad_id, successes=n, key=key)


def loss(ad_id: str, key: str, n: float = 1.0) -> Reward:
    """``n`` failures for an ad."""
    return Reward(ad_id=ad_id, failures=n, key=key)


async def deliver(handle: SamplerHandle, rewards: RewardBatch) -> RewardsApplied:
    """Rewards by the ``apply_rewards`` update; its answer."""
    answer: RewardsApplied = await handle.execute_update(contract.REWARD_UPDATE, rewards, result_type=RewardsApplied)
    return answer


async def view(handle: SamplerHandle) -> SamplerView:
    """The ``sampler`` query."""
    seen: SamplerView = await handle.query(contract.SAMPLER_QUERY, result_type=SamplerView)
    return seen


async def allocation(handle: SamplerHandle) -> Allocation | None:
    """The ``allocations`` query."""
    optional: Any = Allocation | None  # the converter takes a union; the signature asks for a class
    drawn: Allocation | None = await handle.query(contract.ALLOCATIONS_QUERY, result_type=optional)
    return drawn


def posteriors(seen: SamplerView) -> dict[str, tuple[float, float]]:
    """Each ad's (alpha, beta)."""
    return {arm.ad_id: (arm.alpha, arm.beta) for arm in seen.arms}


def assert_valid(drawn: Allocation | None, ads: set[str]) -> Allocation:
    """An allocation over ``ads``: probabilities of being best summing to 1, shares at or above the floor."""
    assert drawn is not None
    assert set(drawn.p_best) == set(drawn.shares) == ads
    assert sum(drawn.p_best.values()) == pytest.approx(1.0)
    assert sum(drawn.shares.values()) == pytest.approx(1.0)
    assert min(drawn.shares.values()) >= min(FLOOR, 1 / len(ads)) - 1e-12
    return drawn


async def test_posteriors_are_exactly_the_prior_plus_rewards_by_update_and_signal(
    client: Client, new_worker: NewWorker
) -> None:
    async with new_worker([CampaignSamplerWorkflow]) as worker:
        handle = await start_sampler(client, worker.task_queue)
        first = await deliver(handle, batch(win("ad-a", "k1"), loss("ad-a", "k2"), win("ad-b", "k3"), ads=("ad-c",)))
        await handle.signal(contract.REWARD_SIGNAL, batch(win("ad-a", "k4"), loss("ad-c", "k5", 2.0)))
        last = await deliver(handle, batch(loss("ad-b", "k6"), win("ad-d", "k7", 0.5)))
        seen = await view(handle)

    assert (first.applied, first.duplicates, last.applied, last.duplicates) == (3, 0, 2, 0)
    assert posteriors(seen) == {
        "ad-a": (PRIOR[0] + 2, PRIOR[1] + 1),
        "ad-b": (PRIOR[0] + 1, PRIOR[1] + 1),
        "ad-c": (PRIOR[0], PRIOR[1] + 2),
        "ad-d": (PRIOR[0] + 0.5, PRIOR[1]),  # fractional evidence (multi-touch) is kept as is
    }
    arms = {arm.ad_id: arm for arm in seen.arms}
    assert arms["ad-a"].trials == 3 and arms["ad-a"].mean == pytest.approx(3 / 5)
    assert arms["ad-a"].lower_bound < arms["ad-a"].mean
    assert (seen.rewards_applied, seen.duplicates_ignored) == (7, 0)


async def test_a_repeated_key_changes_nothing_and_is_counted_as_a_duplicate(
    client: Client, new_worker: NewWorker
) -> None:
    async with new_worker([CampaignSamplerWorkflow]) as worker:
        handle = await start_sampler(client, worker.task_queue)
        applied = await deliver(handle, batch(win("ad-a", "k1"), loss("ad-b", "k2")))
        before = await view(handle)
        repeated = await deliver(handle, batch(win("ad-a", "k1", 5.0), loss("ad-b", "k2")))
        await handle.signal(contract.REWARD_SIGNAL, batch(win("ad-a", "k1")))
        after = await view(handle)

    assert (repeated.applied, repeated.duplicates) == (0, 2)
    assert posteriors(after) == posteriors(before) == {"ad-a": (2.0, 1.0), "ad-b": (1.0, 2.0)}
    assert (after.rewards_applied, after.duplicates_ignored) == (2, 3)
    # Nothing changed, so nothing was drawn again: the allocation is the one the first delivery drew.
    assert repeated.allocation == applied.allocation == after.allocation


async def test_the_allocations_query_returns_the_allocation_the_last_handler_drew(
    client: Client, new_worker: NewWorker
) -> None:
    async with new_worker([CampaignSamplerWorkflow]) as worker:
        handle = await start_sampler(client, worker.task_queue)
        assert await allocation(handle) is None  # nothing drawn before the first delivery
        registered = await deliver(handle, batch(ads=("ad-a", "ad-b", "ad-c")))
        even = assert_valid(await allocation(handle), {"ad-a", "ad-b", "ad-c"})
        answered = await deliver(handle, batch(*(win("ad-c", f"c{i}") for i in range(30)), loss("ad-a", "a0")))
        skewed = assert_valid(await allocation(handle), {"ad-a", "ad-b", "ad-c"})
        losses = [loss("ad-c", f"l{i}") for i in range(60)]
        await handle.signal(contract.REWARD_SIGNAL, batch(*losses, *(win("ad-b", f"b{i}") for i in range(30))))
        flipped = await assert_eventually(lambda: _best_is(handle, "ad-b"))
        seen = await view(handle)

    assert registered.allocation == even and registered.applied == 0  # new ads alone draw an allocation
    assert max(even.p_best.values()) < 0.6  # three uniform priors: no clear favourite
    assert answered.allocation == skewed
    assert skewed.p_best["ad-c"] > 0.9 and skewed.shares["ad-a"] == pytest.approx(FLOOR, abs=0.01)
    assert flipped.p_best["ad-b"] > 0.9
    assert seen.allocation == flipped


async def _best_is(handle: SamplerHandle, ad_id: str) -> Allocation:
    """The kept allocation once ``ad_id`` is its favourite (a signal is applied in the background)."""
    drawn = assert_valid(await allocation(handle), {"ad-a", "ad-b", "ad-c"})
    assert max(drawn.p_best, key=drawn.p_best.__getitem__) == ad_id, drawn
    return drawn


async def test_an_update_with_negative_evidence_is_refused_and_changes_nothing(
    client: Client, new_worker: NewWorker
) -> None:
    async with new_worker([CampaignSamplerWorkflow]) as worker:
        handle = await start_sampler(client, worker.task_queue)
        await deliver(handle, batch(win("ad-a", "k1")))
        with pytest.raises(WorkflowUpdateFailedError):
            await deliver(handle, batch(win("ad-a", "k2"), win("ad-b", "k3", -1.0)))
        seen = await view(handle)

    assert posteriors(seen) == {"ad-a": (2.0, 1.0)}
    assert (seen.rewards_applied, seen.duplicates_ignored) == (1, 0)


async def test_posteriors_and_dedupe_keys_survive_continue_as_new(
    client: Client, new_worker: NewWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workflows.attribution, "SAMPLER_DELIVERIES_PER_RUN", 3)
    # The sandbox would import its own copy of the module, without the patched constant.
    async with new_worker([CampaignSamplerWorkflow], workflow_runner=UnsandboxedWorkflowRunner()) as worker:
        handle = await start_sampler(client, worker.task_queue)
        first_run = handle.result_run_id
        for i in range(3):
            await deliver(handle, batch(win("ad-a", f"k{i}"), loss("ad-b", f"l{i}")))

        async def continued() -> str:
            run_id = (await handle.describe()).run_id
            assert run_id != first_run
            return run_id

        await assert_eventually(continued, within_s=20)
        carried = await view(handle)
        repeat = await deliver(handle, batch(win("ad-a", "k0"), loss("ad-b", "l2")))
        fresh = await deliver(handle, batch(win("ad-b", "k9")))
        after = await view(handle)
        old = await client.get_workflow_handle(handle.id, run_id=first_run).describe()

    assert old.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert posteriors(carried) == {"ad-a": (4.0, 1.0), "ad-b": (1.0, 4.0)}
    assert carried.rewards_applied == 6 and carried.allocation is not None
    assert (repeat.applied, repeat.duplicates) == (0, 2)  # keys applied before the new run are still recognised
    assert fresh.applied == 1
    assert posteriors(after) == {"ad-a": (4.0, 1.0), "ad-b": (2.0, 4.0)}
    assert (after.rewards_applied, after.duplicates_ignored) == (7, 2)


class _UpdateAnswers(Interceptor):
    """Records what every ``apply_rewards`` update handler returns (while replaying a history)."""

    def __init__(self) -> None:
        self.answers: list[Any] = []

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        answers = self.answers

        class Inbound(WorkflowInboundInterceptor):
            async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
                answer = await super().handle_update_handler(input)
                if input.update == contract.REWARD_UPDATE:
                    answers.append(answer)
                return answer

        return Inbound


async def test_a_replayed_history_draws_the_same_allocations_without_nondeterminism(
    client: Client, new_worker: NewWorker
) -> None:
    async with new_worker([CampaignSamplerWorkflow]) as worker:
        handle = await start_sampler(client, worker.task_queue)
        answers = [
            await deliver(handle, batch(win("ad-a", "k1"), loss("ad-b", "k2"), ads=("ad-c",))),
            await deliver(handle, batch(win("ad-b", "k3"), win("ad-c", "k4"))),
            await deliver(handle, batch(win("ad-b", "k3"))),  # a duplicate: nothing drawn
            await deliver(handle, batch(loss("ad-a", "k5", 3.0))),
        ]
        kept = await allocation(handle)
        history = await handle.fetch_history()

    recorder = _UpdateAnswers()
    replayer = Replayer(workflows=[CampaignSamplerWorkflow], data_converter=DATA_CONVERTER, interceptors=[recorder])
    replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    again = _UpdateAnswers()
    twice = Replayer(workflows=[CampaignSamplerWorkflow], data_converter=DATA_CONVERTER, interceptors=[again])
    await twice.replay_workflow(history)

    assert replayed.replay_failure is None
    assert recorder.answers == answers
    assert [a.allocation for a in again.answers] == [a.allocation for a in recorder.answers]
    assert kept == answers[-1].allocation
    assert answers[2].allocation == answers[1].allocation


async def _new_owner(sessions: Sessions, ads: dict[str, str]) -> int:
    """A user owning ``ads`` (ad → campaign)."""
    async with sessions.begin() as session:
        user, _key = await create_user(session, f"ingest-{uuid.uuid4().hex[:8]}", 100)
        for ad_id, campaign in ads.items():
            session.add(Ad(user_id=user.id, ad_id=ad_id, campaign_id=campaign, name=ad_id))
        return user.id


async def _statuses(sessions: Sessions, portal: int) -> list[str]:
    """The portal's inbox statuses, in order of acceptance."""
    async with sessions() as session:
        rows = await session.scalars(
            select(WebhookEvent.status).where(WebhookEvent.portal_id == portal).order_by(WebhookEvent.id)
        )
        return list(rows)


async def test_the_ingest_workflow_applies_the_inbox_on_wake_and_rewards_the_won_deals_ad_in_its_sampler(
    client: Client, new_worker: NewWorker, sessions: Sessions, tmp_path: Path
) -> None:
    campaign = f"spring-{uuid.uuid4().hex[:8]}"
    portal = 300_000_000 + uuid.uuid4().int % 100_000_000
    owner = await _new_owner(sessions, {"ad-w": campaign, "ad-l": campaign})
    acts = IngestActivities(sessions, Settings(var_dir=tmp_path))
    ingest_id = contract.ingest_workflow_id(portal)
    sampler_id = contract.sampler_workflow_id(owner, campaign)
    worker = new_worker(
        [HubSpotIngestWorkflow, CampaignSamplerWorkflow],
        ingest_activities(acts),
        task_queue=contract.WEBHOOK_QUEUE,  # where the reward activity starts the samplers
    )
    async with worker:
        ingest = await client.start_workflow(
            HubSpotIngestWorkflow.run, IngestState(portal_id=portal), id=ingest_id, task_queue=contract.WEBHOOK_QUEUE
        )
        try:

            async def drained() -> Progress:
                progress: Progress = await ingest.query(PROGRESS_QUERY, result_type=Progress)
                assert progress.message.startswith("0 processed"), progress  # the empty inbox was looked at
                return progress

            await assert_eventually(drained, within_s=20)
            events = [
                deal_event(
                    1, portal=portal, deal=41, stage="qualifiedtobuy", amount="500.00", ad="ad-w", campaign=campaign
                ),
                deal_event(2, portal=portal, deal=41, amount="500.00", ad="ad-w", campaign=campaign),
                deal_event(3, portal=portal, deal=42, stage="closedlost", amount="90.00", ad="ad-l", campaign=campaign),
            ]
            async with sessions.begin() as session:
                for raw in events:
                    session.add(WebhookEvent(**_inbox_row(HubSpotEvent.model_validate(raw), owner)))
            await ingest.signal(contract.WAKE_SIGNAL)

            deadline = asyncio.get_running_loop().time() + 30
            while (statuses := await _statuses(sessions, portal)) != ["processed"] * 3:
                assert asyncio.get_running_loop().time() < deadline, statuses
                await asyncio.sleep(0.2)

            sampler = client.get_workflow_handle(sampler_id)

            async def rewarded() -> SamplerView:
                seen = await view(sampler)
                assert posteriors(seen) == {"ad-l": PRIOR, "ad-w": (PRIOR[0] + 1, PRIOR[1])}
                return seen

            seen = await assert_eventually(rewarded, within_s=20)
            progress = await assert_eventually(lambda: _progress_done(ingest, 3), within_s=20)
        finally:
            for workflow_id in (ingest_id, sampler_id):  # the shared test server must not keep them on the queue
                with contextlib.suppress(RPCError):  # the sampler never started if the test failed early
                    await client.get_workflow_handle(workflow_id).terminate("test over")

    assert seen.rewards_applied == 1 and seen.owner == owner
    assert_valid(seen.allocation, {"ad-w", "ad-l"})
    assert progress.message.startswith("3 processed, 0 failed")
    async with sessions() as session:
        revenue = await session.scalars(select(Conversion.revenue_cents).order_by(Conversion.id))
        assert list(revenue) == [20_000, 50_000, 0]


async def _progress_done(handle: WorkflowHandle[Any, Any], done: int) -> Progress:
    """The ingest workflow's progress once it counts ``done`` events."""
    progress: Progress = await handle.query(PROGRESS_QUERY, result_type=Progress)
    assert progress.done == done, progress
    return progress


async def test_the_sampler_answers_the_progress_query_every_workflow_answers(
    client: Client, new_worker: NewWorker
) -> None:
    worker = new_worker([CampaignSamplerWorkflow])
    async with worker:
        handle = await start_sampler(client, worker.task_queue)
        await handle.execute_update(
            contract.REWARD_UPDATE,
            batch(Reward(ad_id="a", successes=1, key="k1"), ads=("a", "b")),
            result_type=RewardsApplied,
        )
        progress = await handle.query(PROGRESS_QUERY, result_type=Progress)
    assert (progress.stage, progress.done) == ("sampling", 1)
    assert progress.message.startswith("2 ads, 1 rewards, 0 repeats ignored; ")
