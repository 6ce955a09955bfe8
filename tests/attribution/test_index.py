"""The winner index: ranking winners, real MiniLM embeddings in a real FAISS index, versions switched atomically in a
local blob store, searches per owner, and both index workflows on the time-skipping server with the real activities.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.attribution import contract
from activities.attribution.index import (
    INDEX_FILE,
    META_FILE,
    IndexActivities,
    IndexMeta,
    creative_text,
    index_activities,
    index_prefix,
    pick_winners,
    switch_index,
    winner_sets,
)
from activities.attribution.models import Ad, CreativeIndex
from activities.attribution.schemas import (
    ArmView,
    IndexBuilt,
    IndexReport,
    OwnerWinners,
    SamplerView,
    SimilarRequest,
    SimilarResult,
    WinnerAd,
    WinnerSets,
)
from activities.persona.embedder import Embedder, shared_embedder
from conveyor.models import User
from conveyor.progress import PROGRESS_QUERY, Progress
from conveyor.storage import BlobStore, blob_store_from_url
from tests.helpers import NewWorker, assert_eventually
from workflows.attribution import CreativeSearchWorkflow, WinnerIndexWorkflow


@dataclass(frozen=True)
class Creative:
    """A planted ad's creative."""

    ad_id: str
    hook: str
    script: str
    offer: str
    tags: tuple[str, ...]


CREATIVES = [
    Creative(
        "ad-fitness",
        "Get fit in twenty minutes a day",
        "Home workouts with no equipment, guided by certified personal trainers.",
        "First month free",
        ("fitness", "workout"),
    ),
    Creative(
        "ad-coffee",
        "Fresh roasted coffee delivered to your door",
        "Single-origin beans roasted every week by small roasters.",
        "20% off your first bag",
        ("coffee", "subscription"),
    ),
    Creative(
        "ad-travel",
        "Cheap flights to Europe this summer",
        "Compare hundreds of airlines and book the lowest fare in seconds.",
        "No booking fees",
        ("travel", "flights"),
    ),
    Creative(
        "ad-mortgage",
        "Stop overpaying on your mortgage",
        "Refinance your home loan online in minutes at a lower interest rate.",
        "Free rate quote",
        ("finance", "mortgage"),
    ),
    Creative(
        "ad-dogfood",
        "Healthy food your dog will love",
        "Vet-designed recipes cooked from fresh meat and vegetables.",
        "Trial box for $5",
        ("pets", "dog food"),
    ),
    Creative(
        "ad-python",
        "Learn Python programming from scratch",
        "Interactive coding lessons with real projects and feedback.",
        "7-day free trial",
        ("education", "coding"),
    ),
]
GARDEN = Creative(
    "ad-garden",
    "Grow your own vegetables at home",
    "Raised garden beds and seed kits for tomatoes, herbs and salad greens.",
    "Free seed pack with every bed",
    ("gardening", "home"),
)


def _winners(owner: int, creatives: Sequence[Creative], campaign: str = "spring") -> OwnerWinners:
    """Every creative as a winner of ``campaign``, best lower bound first."""
    return OwnerWinners(
        user_id=owner,
        winners=[
            WinnerAd(ad_id=c.ad_id, campaign_id=campaign, lower_bound=0.5 - 0.01 * i, mean=0.6, trials=100)
            for i, c in enumerate(creatives)
        ],
    )


async def _user(sessions: async_sessionmaker[AsyncSession], name: str) -> int:
    async with sessions.begin() as session:
        user = User(name=name)
        session.add(user)
        await session.flush()
        return user.id


async def _plant(
    sessions: async_sessionmaker[AsyncSession],
    owner: int,
    creatives: Sequence[Creative],
    *,
    campaign: str = "spring",
    status: str = "active",
) -> None:
    async with sessions.begin() as session:
        for c in creatives:
            session.add(
                Ad(
                    user_id=owner,
                    ad_id=c.ad_id,
                    campaign_id=campaign,
                    name=f"{c.ad_id} name",
                    hook=c.hook,
                    script=c.script,
                    offer=c.offer,
                    tags=list(c.tags),
                    status=status,
                )
            )


async def _row(sessions: async_sessionmaker[AsyncSession], owner: int) -> CreativeIndex | None:
    async with sessions() as session:
        return await session.get(CreativeIndex, owner)


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    """A local blob store of the test's own."""
    return blob_store_from_url(str(tmp_path / "blobs"))


@pytest.fixture
def acts(sessions: async_sessionmaker[AsyncSession], blobs: BlobStore) -> IndexActivities:
    """The real index activities over the test's database and blob store, with the real MiniLM embedder."""
    return IndexActivities(sessions, blobs, shared_embedder, winners_per_campaign=3, min_trials=5.0)


async def _build(acts: IndexActivities, owner: OwnerWinners) -> IndexBuilt:
    built: IndexBuilt = await ActivityEnvironment().run(acts.build_index, owner)
    return built


async def _search(acts: IndexActivities, owner: int, text: str, k: int = 5) -> SimilarResult:
    result: SimilarResult = await ActivityEnvironment().run(
        acts.search_creatives, SimilarRequest(user_id=owner, text=text, k=k)
    )
    return result


# --- pure parts -----------------------------------------------------------------------------------------------------


def test_creative_text_joins_hook_script_offer_and_tags_and_falls_back_to_the_name() -> None:
    full = Ad(ad_id="a1", name="Spring sale", hook=" Big hook ", script="The script.", offer="50% off", tags=["x", "y"])
    assert creative_text(full) == "Big hook\nThe script.\n50% off\nTags: x, y"
    assert creative_text(Ad(ad_id="a2", name="Spring sale", hook="", script="", offer="", tags=[])) == "Spring sale"
    assert creative_text(Ad(ad_id="a3", name="", hook="", script="", offer="", tags=[" "])) == "a3"
    assert (
        creative_text(Ad(ad_id="a4", name="n", hook="", script="", offer="", tags=["only tags"])) == "Tags: only tags"
    )


def _arm(ad_id: str, lower_bound: float, trials: float, mean: float = 0.5) -> ArmView:
    return ArmView(ad_id=ad_id, alpha=1, beta=1, mean=mean, lower_bound=lower_bound, trials=trials)


def _view(owner: int, campaign: str, arms: list[ArmView]) -> SamplerView:
    return SamplerView(
        owner=owner, campaign_id=campaign, arms=arms, allocation=None, rewards_applied=0, duplicates_ignored=0
    )


def test_winners_are_ranked_by_lower_bound_not_mean_and_need_enough_evidence() -> None:
    view = _view(
        1,
        "c1",
        [
            _arm("lucky", lower_bound=0.95, trials=3, mean=0.99),  # three lucky conversions: too little evidence
            _arm("steady", lower_bound=0.40, trials=300, mean=0.45),
            _arm("hyped", lower_bound=0.20, trials=12, mean=0.70),  # high mean, wide posterior: ranks below steady
            _arm("solid", lower_bound=0.30, trials=80, mean=0.35),
            _arm("tied-b", lower_bound=0.10, trials=50),
            _arm("tied-a", lower_bound=0.10, trials=50),
        ],
    )
    winners = pick_winners(view, min_trials=10, limit=10)
    assert [w.ad_id for w in winners] == ["steady", "solid", "hyped", "tied-a", "tied-b"]
    assert winners[0] == WinnerAd(ad_id="steady", campaign_id="c1", lower_bound=0.40, mean=0.45, trials=300)
    assert [w.ad_id for w in pick_winners(view, min_trials=10, limit=2)] == ["steady", "solid"]
    assert [w.ad_id for w in pick_winners(view, min_trials=0, limit=1)] == ["lucky"]
    assert pick_winners(view, min_trials=1000, limit=5) == []


def test_winner_sets_group_campaigns_by_owner_and_leave_out_owners_without_winners() -> None:
    sets = winner_sets(
        [
            _view(7, "b", [_arm("b1", 0.2, 50), _arm("b2", 0.6, 50)]),
            _view(3, "x", [_arm("x1", 0.9, 1)]),  # not enough evidence: owner 3 has no winners
            _view(7, "a", [_arm("a1", 0.4, 50), _arm("a2", 0.1, 50), _arm("a3", 0.05, 50)]),
            _view(5, "c", [_arm("c1", 0.3, 50)]),
        ],
        min_trials=10,
        limit=2,
    )
    assert [o.user_id for o in sets.owners] == [5, 7]
    assert [(w.campaign_id, w.ad_id) for w in sets.owners[1].winners] == [
        ("b", "b2"),
        ("a", "a1"),
        ("b", "b1"),
        ("a", "a2"),
    ]


# --- build and search with the real embedder, FAISS and blob store --------------------------------------------------


async def test_search_finds_the_planted_winner_from_a_paraphrase(
    sessions: async_sessionmaker[AsyncSession], blobs: BlobStore, acts: IndexActivities
) -> None:
    owner = await _user(sessions, "ana")
    await _plant(sessions, owner, CREATIVES)
    built = await _build(acts, _winners(owner, CREATIVES))
    assert built == IndexBuilt(user_id=owner, version=1, vectors=6, blob_prefix=index_prefix(owner, 1))
    assert built.blob_prefix == f"attribution/index/{owner}/v1"
    row = await _row(sessions, owner)
    assert row is not None and (row.version, row.vectors, row.blob_prefix) == (1, 6, built.blob_prefix)
    meta = IndexMeta.model_validate_json(blobs.get_bytes(f"{built.blob_prefix}/{META_FILE}"))
    assert [e.ad_id for e in meta.entries] == [c.ad_id for c in CREATIVES]  # index order = winners' order
    travel = meta.entries[2]
    assert travel.hook == "Cheap flights to Europe this summer" and travel.tags == ["travel", "flights"]

    for query, expected in [
        ("affordable airfare for a European holiday", "ad-travel"),
        ("nutritious meals for my puppy", "ad-dogfood"),
        ("refinancing a house loan with a better rate", "ad-mortgage"),
        ("an online course to become a software developer", "ad-python"),
    ]:
        result = await _search(acts, owner, query, k=3)
        assert result.version == 1
        assert [r.ad_id for r in result.results][0] == expected, (query, result.results)
        assert len(result.results) == 3
        scores = [r.score for r in result.results]
        assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1.0001
        assert scores[0] - scores[1] > 0.05  # the planted winner stands out, not a coin toss

    top = (await _search(acts, owner, "cheap plane tickets to Paris", k=1)).results
    assert [(t.ad_id, t.campaign_id, t.offer) for t in top] == [("ad-travel", "spring", "No booking fees")]
    assert top[0].lower_bound == pytest.approx(0.48)
    # k larger than the index: every vector once
    everything = await _search(acts, owner, "anything", k=50)
    assert sorted(r.ad_id for r in everything.results) == sorted(c.ad_id for c in CREATIVES)


async def test_rebuild_switches_to_version_two_and_keeps_version_one_files(
    sessions: async_sessionmaker[AsyncSession], blobs: BlobStore, acts: IndexActivities
) -> None:
    owner = await _user(sessions, "ana")
    await _plant(sessions, owner, [*CREATIVES, GARDEN])
    first = await _build(acts, _winners(owner, CREATIVES))
    before = await _search(acts, owner, "planting tomatoes and herbs in my backyard")
    assert before.version == 1 and "ad-garden" not in [r.ad_id for r in before.results]  # cached v1 in the process

    second = await _build(acts, _winners(owner, [GARDEN, *CREATIVES[:3]]))
    assert (second.version, second.vectors, second.blob_prefix) == (2, 4, f"attribution/index/{owner}/v2")
    after = await _search(acts, owner, "planting tomatoes and herbs in my backyard")
    assert after.version == 2
    assert after.results[0].ad_id == "ad-garden"
    assert {r.ad_id for r in after.results} == {"ad-garden", "ad-fitness", "ad-coffee", "ad-travel"}

    # version 1 is still there, whole, for anyone still reading it
    for name in (INDEX_FILE, META_FILE):
        assert blobs.exists(f"{first.blob_prefix}/{name}")
    old_meta = IndexMeta.model_validate_json(blobs.get_bytes(f"{first.blob_prefix}/{META_FILE}"))
    assert old_meta.version == 1 and len(old_meta.entries) == 6


async def test_one_owners_search_never_returns_another_owners_winners(
    sessions: async_sessionmaker[AsyncSession], acts: IndexActivities
) -> None:
    ana, bo = await _user(sessions, "ana"), await _user(sessions, "bo")
    await _plant(sessions, ana, CREATIVES)
    bo_travel = Creative(
        "bo-trips", "Weekend city breaks by train", "Rail trips across the Alps.", "Kids ride free", ()
    )
    await _plant(sessions, bo, [bo_travel, GARDEN], campaign="bo-campaign")
    await _build(acts, _winners(ana, CREATIVES))
    # bo's winners also name ana's ad ids: only bo's own ad rows are indexed
    built = await _build(acts, _winners(bo, [bo_travel, GARDEN, CREATIVES[2]], campaign="bo-campaign"))
    assert (built.version, built.vectors) == (1, 2)

    bo_result = await _search(acts, bo, "cheap flights to Europe this summer", k=10)
    assert {r.ad_id for r in bo_result.results} == {"bo-trips", "ad-garden"}
    assert {r.campaign_id for r in bo_result.results} == {"bo-campaign"}
    ana_result = await _search(acts, ana, "weekend city breaks by train", k=10)
    assert {r.ad_id for r in ana_result.results} == {c.ad_id for c in CREATIVES}


async def test_search_before_any_build_is_version_zero_with_no_results(
    sessions: async_sessionmaker[AsyncSession], acts: IndexActivities
) -> None:
    owner = await _user(sessions, "ana")
    await _plant(sessions, owner, CREATIVES)
    assert await _search(acts, owner, "cheap flights") == SimilarResult(version=0, results=[])


async def test_no_indexable_winners_keeps_the_current_version(
    sessions: async_sessionmaker[AsyncSession], blobs: BlobStore, acts: IndexActivities
) -> None:
    owner = await _user(sessions, "ana")
    await _plant(sessions, owner, CREATIVES[:2])
    ghosts = _winners(owner, [GARDEN])  # a winner without an ad row
    assert await _build(acts, ghosts) == IndexBuilt(user_id=owner, version=0, vectors=0, blob_prefix="")
    assert await _row(sessions, owner) is None and list(blobs.list("attribution/")) == []

    first = await _build(acts, _winners(owner, CREATIVES[:2]))
    assert await _build(acts, OwnerWinners(user_id=owner, winners=[])) == first
    assert await _build(acts, ghosts) == first
    assert [b.key.rsplit("/", 2)[-2] for b in blobs.list("attribution/")] == ["v1", "v1"]


async def test_switch_moves_only_from_the_version_it_read(sessions: async_sessionmaker[AsyncSession]) -> None:
    owner = await _user(sessions, "ana")
    assert await switch_index(sessions, owner, 0, 1, index_prefix(owner, 1), 3)
    assert not await switch_index(sessions, owner, 0, 1, index_prefix(owner, 1), 9)  # a second first build lost
    assert await switch_index(sessions, owner, 1, 2, index_prefix(owner, 2), 4)
    assert not await switch_index(sessions, owner, 1, 2, "stale", 5)
    row = await _row(sessions, owner)
    assert row is not None and (row.version, row.vectors, row.blob_prefix) == (2, 4, index_prefix(owner, 2))


class RacingEmbedder:
    """The real embedder, while another build switches the owner's index to ``version`` during the first embedding
    (written with a connection of its own, as another worker would)."""

    def __init__(self, database: Path, owner: int, version: int) -> None:
        self._database, self._owner, self._version = database, owner, version
        self.raced = False

    def embed_array(self, texts: Sequence[str], batch_size: int = 32) -> NDArray[np.float32]:
        """Embed ``texts``; the first time, let the other build switch first."""
        if not self.raced:
            self.raced = True
            with sqlite3.connect(self._database) as db:
                db.execute(
                    "UPDATE creative_indexes SET version = ?, blob_prefix = ? WHERE user_id = ?",
                    (self._version, index_prefix(self._owner, self._version), self._owner),
                )
        embedder: Embedder = shared_embedder()
        return embedder.embed_array(texts, batch_size)


async def test_a_build_that_loses_the_switch_takes_the_next_version_and_never_rewinds(
    sessions: async_sessionmaker[AsyncSession], blobs: BlobStore, acts: IndexActivities, tmp_path: Path
) -> None:
    owner = await _user(sessions, "ana")
    await _plant(sessions, owner, CREATIVES)
    await _build(acts, _winners(owner, CREATIVES[:2]))
    racer = RacingEmbedder(tmp_path / "conveyor.db", owner, version=5)
    racing = IndexActivities(sessions, blobs, lambda: racer, winners_per_campaign=3, min_trials=5.0)

    built = await _build(racing, _winners(owner, CREATIVES))
    assert racer.raced
    assert (built.version, built.vectors, built.blob_prefix) == (6, 6, index_prefix(owner, 6))
    row = await _row(sessions, owner)
    assert row is not None and (row.version, row.blob_prefix) == (6, index_prefix(owner, 6))
    result = await _search(racing, owner, "affordable airfare for a European holiday")
    assert result.version == 6 and result.results[0].ad_id == "ad-travel"


# --- both workflows with the real activities ------------------------------------------------------------------------


@workflow.defn(name="StandInSamplerWorkflow", sandboxed=False)
class StandInSamplerWorkflow:
    """Stands in for a campaign's sampler workflow: answers the ``sampler`` query with the view it was started with."""

    @workflow.init
    def __init__(self, view: SamplerView) -> None:
        self._view = view

    @workflow.run
    async def run(self, view: SamplerView) -> None:
        """Wait until terminated."""
        await workflow.wait_condition(lambda: False)

    @workflow.query(name=contract.SAMPLER_QUERY)
    def sampler(self) -> SamplerView:
        """The posteriors it was given."""
        return self._view


async def test_index_workflow_builds_each_owners_index_and_search_workflow_finds_the_winner(
    env: WorkflowEnvironment,
    client: Client,
    new_worker: NewWorker,
    sessions: async_sessionmaker[AsyncSession],
    acts: IndexActivities,
) -> None:
    ana, bo = await _user(sessions, "ana"), await _user(sessions, "bo")
    run = uuid.uuid4().hex[:8]
    summer, winter, pets = f"summer-{run}", f"winter-{run}", f"pets-{run}"
    await _plant(sessions, ana, CREATIVES[:4], campaign=summer)
    await _plant(sessions, ana, [GARDEN], campaign=winter)  # no sampler for this campaign yet: skipped
    await _plant(sessions, bo, [CREATIVES[4]], campaign=pets)
    samplers = {
        (ana, summer): [
            _arm("ad-travel", 0.30, 60),
            _arm("ad-coffee", 0.20, 40),
            _arm("ad-fitness", 0.90, 2),  # too little evidence (min 5 trials)
            _arm("ad-mortgage", 0.10, 30),
            _arm("ad-python", 0.05, 30),  # fourth best: beyond the 3 winners per campaign
        ],
        (bo, pets): [_arm("ad-dogfood", 0.25, 25)],
    }
    async with new_worker(
        [WinnerIndexWorkflow, CreativeSearchWorkflow, StandInSamplerWorkflow], index_activities(acts)
    ) as worker:
        handles = [
            await client.start_workflow(
                StandInSamplerWorkflow.run,
                _view(owner, campaign, arms),
                id=contract.sampler_workflow_id(owner, campaign),
                task_queue=worker.task_queue,
            )
            for (owner, campaign), arms in samplers.items()
        ]
        try:

            async def answering() -> None:
                for handle in handles:
                    assert (await handle.query(StandInSamplerWorkflow.sampler)).arms

            await assert_eventually(answering, within_s=20)
            index = await client.start_workflow(
                WinnerIndexWorkflow.run,
                contract.ScheduledRun(),
                id=f"index-{run}",
                task_queue=worker.task_queue,
            )
            # the stand-ins wait forever: skipping time would run them into their execution timeout meanwhile
            with env.auto_time_skipping_disabled():
                report: IndexReport = await index.result()
            progress = await index.query(PROGRESS_QUERY, result_type=Progress)
        finally:
            for handle in handles:
                await handle.terminate("test over")

        assert [(b.user_id, b.version, b.vectors) for b in report.built] == [(ana, 1, 3), (bo, 1, 1)]
        assert (progress.stage, progress.done, progress.total, progress.percent) == ("completed", 2, 2, 100.0)
        async with sessions() as session:
            rows = (await session.scalars(select(CreativeIndex).order_by(CreativeIndex.user_id))).all()
        assert [(r.user_id, r.version, r.vectors) for r in rows] == [(ana, 1, 3), (bo, 1, 1)]

        search = await client.start_workflow(
            CreativeSearchWorkflow.run,
            SimilarRequest(user_id=ana, text="affordable airfare for a European holiday", k=5),
            id=f"similar-{run}",
            task_queue=worker.task_queue,
        )
        found = await search.result()
        assert found.version == 1
        assert [r.ad_id for r in found.results][0] == "ad-travel"
        assert {r.ad_id for r in found.results} == {"ad-travel", "ad-coffee", "ad-mortgage"}
        assert (await search.query(PROGRESS_QUERY, result_type=Progress)).stage == "completed"


async def test_one_owners_failed_build_leaves_the_others_built_and_fails_the_run_naming_it(
    client: Client, new_worker: NewWorker
) -> None:
    built: list[int] = []

    @activity.defn(name=contract.COLLECT_WINNERS)
    async def collect_winners(_: contract.ScheduledRun) -> WinnerSets:
        return WinnerSets(owners=[_winners(owner, CREATIVES[:1]) for owner in (11, 12, 13)])

    @activity.defn(name=contract.BUILD_INDEX)
    async def build_index(owner: OwnerWinners) -> IndexBuilt:
        if owner.user_id == 12:
            raise ApplicationError("blob store refused the write", type="BadInput", non_retryable=True)
        built.append(owner.user_id)
        return IndexBuilt(user_id=owner.user_id, version=1, vectors=1, blob_prefix=index_prefix(owner.user_id, 1))

    async with new_worker([WinnerIndexWorkflow], [collect_winners, build_index]) as worker:
        handle = await client.start_workflow(
            WinnerIndexWorkflow.run, contract.ScheduledRun(), id=f"index-{uuid.uuid4()}", task_queue=worker.task_queue
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        progress = await handle.query(PROGRESS_QUERY, result_type=Progress)

    assert built == [11, 13]  # owner 13 was still built after owner 12 failed
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and "[12]" in cause.message
    assert cause.details[0] == {"failed": [12], "built": [11, 13]}
    assert (progress.stage, progress.done, progress.total) == ("failed", 3, 3)
