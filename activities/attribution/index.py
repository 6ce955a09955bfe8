"""The winner index (seed 004's ``auto_index_winner``): winners' creatives embedded with MiniLM into a FAISS index.

Every 12 hours :class:`IndexActivities` asks each campaign's sampler workflow for its posteriors, keeps the arms with
enough evidence ranked by their posterior lower credible bound (:func:`pick_winners`), embeds each winner's creative
(:func:`creative_text`) with the offline MiniLM model the persona pipeline uses, and writes an exact inner-product
FAISS index over the unit vectors (inner product = cosine) plus its metadata to the blob store as a new version:
``attribution/index/<user_id>/v<version>/{index.faiss,meta.json}``. Searches read the version an owner's
``CreativeIndex`` row names; the build switches that row to the new version in one conditional UPDATE, so a search
sees either the old version or the new one, never a mix, and older versions' files stay readable.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import faiss
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field
from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.service import RPCError, RPCStatusCode

from activities.attribution import contract
from activities.attribution.models import Ad, CreativeIndex
from activities.attribution.schemas import (
    IndexBuilt,
    OwnerWinners,
    SamplerView,
    SimilarCreative,
    SimilarRequest,
    SimilarResult,
    WinnerAd,
    WinnerSets,
)
from activities.persona.embedder import DIMENSIONS, MODEL_NAME
from conveyor.db import dialect_insert
from conveyor.errors import Retryable
from conveyor.heartbeat import ProgressBox, run_blocking
from conveyor.models import utcnow
from conveyor.storage import BlobStore

INDEX_ROOT = "attribution/index"
INDEX_FILE = "index.faiss"
META_FILE = "meta.json"
#: Conditional switches a build tries before giving up to the retry policy (each loss means another build won).
SWITCH_ATTEMPTS = 5
#: Sampler queries in flight at once while collecting winners.
QUERY_CONCURRENCY = 8
#: Owners whose loaded index a worker keeps in memory (the newest version of each).
CACHED_OWNERS = 64
#: Ad ids per ``IN (...)`` when loading winners' rows (well under every database's parameter limit).
LOAD_CHUNK = 500


class TextEmbedder(Protocol):
    """What the index needs of an embedder: unit vectors of texts (``activities.persona.embedder.Embedder``)."""

    def embed_array(self, texts: Sequence[str], batch_size: int = 32) -> NDArray[np.float32]:
        """Embeddings of ``texts`` as float32 unit vectors of shape (len(texts), 384), in input order."""
        ...


class IndexEntry(BaseModel):
    """One vector's winner, as ``meta.json`` lists them in index order."""

    ad_id: str
    campaign_id: str
    name: str = ""
    hook: str = ""
    offer: str = ""
    tags: list[str] = Field(default_factory=list)
    lower_bound: float


class IndexMeta(BaseModel):
    """``meta.json`` of one index version: its winners in index order and a digest tying it to ``index.faiss``."""

    user_id: int
    version: int
    model: str = MODEL_NAME
    dimensions: int = DIMENSIONS
    index_sha256: str
    entries: list[IndexEntry]


@dataclass(frozen=True)
class LoadedIndex:
    """One version of an owner's index, read from the blob store."""

    version: int
    index: faiss.Index
    meta: IndexMeta


def creative_text(ad: Ad) -> str:
    """The text an ad's creative is embedded as: hook, script, offer and tags, one per line (its name if all empty)."""
    tags = ", ".join(t.strip() for t in (ad.tags or []) if t and t.strip())
    parts = [(ad.hook or "").strip(), (ad.script or "").strip(), (ad.offer or "").strip()]
    if tags:
        parts.append(f"Tags: {tags}")
    text = "\n".join(p for p in parts if p)
    return text or (ad.name or "").strip() or ad.ad_id


def pick_winners(view: SamplerView, *, min_trials: float, limit: int) -> list[WinnerAd]:
    """A campaign's winners: arms with at least ``min_trials`` of evidence, best lower credible bound first, at most
    ``limit`` (ties: higher mean, more evidence, then ad id, so the choice never depends on the arms' order)."""
    eligible = [arm for arm in view.arms if arm.trials >= min_trials]
    eligible.sort(key=lambda arm: (-arm.lower_bound, -arm.mean, -arm.trials, arm.ad_id))
    return [
        WinnerAd(
            ad_id=arm.ad_id, campaign_id=view.campaign_id, lower_bound=arm.lower_bound, mean=arm.mean, trials=arm.trials
        )
        for arm in eligible[: max(0, limit)]
    ]


def winner_sets(views: Iterable[SamplerView], *, min_trials: float, limit: int) -> WinnerSets:
    """Every owner's winners (owners in id order, each owner's best lower bound first); owners without any left out."""
    by_owner: dict[int, list[WinnerAd]] = {}
    for view in views:
        by_owner.setdefault(view.owner, []).extend(pick_winners(view, min_trials=min_trials, limit=limit))
    return WinnerSets(
        owners=[
            OwnerWinners(
                user_id=owner, winners=sorted(winners, key=lambda w: (-w.lower_bound, -w.mean, w.campaign_id, w.ad_id))
            )
            for owner, winners in sorted(by_owner.items())
            if winners
        ]
    )


def index_prefix(user_id: int, version: int) -> str:
    """The blob folder of one version of an owner's index."""
    return f"{INDEX_ROOT}/{int(user_id)}/v{int(version)}"


def build_faiss(vectors: NDArray[np.float32]) -> bytes:
    """An exact inner-product FAISS index over unit vectors (so scores are cosines), serialised."""
    index = faiss.IndexFlatIP(DIMENSIONS)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return faiss.serialize_index(index).tobytes()


def load_faiss(data: bytes) -> faiss.Index:
    """A serialised FAISS index, read back."""
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


class IndexActivities:
    """Activities of the winner index; the worker gives them the DB, the blob store, the embedder and the settings'
    winner rules (``attribution_winners`` per campaign, ``attribution_winner_min_trials`` of evidence)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        blobs: BlobStore,
        embedder: Callable[[], TextEmbedder],
        *,
        winners_per_campaign: int = 20,
        min_trials: float = 1.0,
    ) -> None:
        self._sessions = sessions
        self._blobs = blobs
        self._embedder = embedder
        self._winners = winners_per_campaign
        self._min_trials = min_trials
        # (user_id, version) → loaded index; only the newest version of each owner is kept
        self._cache: OrderedDict[tuple[int, int], LoadedIndex] = OrderedDict()

    # --- collect ------------------------------------------------------------------------------------------------

    @activity.defn(name=contract.COLLECT_WINNERS)
    async def collect_winners(self, _: contract.ScheduledRun) -> WinnerSets:
        """Ask every campaign with active ads for its sampler's posteriors and rank each campaign's winners."""
        async with self._sessions() as session:
            campaigns = (
                await session.execute(
                    select(Ad.user_id, Ad.campaign_id)
                    .where(Ad.status == "active")
                    .distinct()
                    .order_by(Ad.user_id, Ad.campaign_id)
                )
            ).all()
        client = activity.client()
        gate = asyncio.Semaphore(QUERY_CONCURRENCY)

        async def view_of(owner: int, campaign_id: str) -> SamplerView | None:
            handle = client.get_workflow_handle(contract.sampler_workflow_id(owner, campaign_id))
            async with gate:
                try:
                    view: SamplerView = await handle.query(contract.SAMPLER_QUERY, result_type=SamplerView)
                except RPCError as err:
                    if err.status == RPCStatusCode.NOT_FOUND:  # no sampler yet: no evidence, no winners
                        return None
                    raise
            activity.heartbeat(f"{owner}/{campaign_id}")
            # the row's owner and campaign are what we asked about, whatever the view says
            return view.model_copy(update={"owner": owner, "campaign_id": campaign_id})

        views = await asyncio.gather(*(view_of(owner, campaign) for owner, campaign in campaigns))
        return winner_sets((v for v in views if v is not None), min_trials=self._min_trials, limit=self._winners)

    # --- build --------------------------------------------------------------------------------------------------

    @activity.defn(name=contract.BUILD_INDEX)
    async def build_index(self, owner: OwnerWinners) -> IndexBuilt:
        """Embed the owner's winners into a new index version and switch the owner's index to it (no winners with
        an ad row: the current version, unchanged)."""
        user_id = owner.user_id
        async with self._sessions() as session:
            current = await session.get(CreativeIndex, user_id)
            version = current.version if current is not None else 0
            unchanged = IndexBuilt(
                user_id=user_id,
                version=version,
                vectors=current.vectors if current is not None else 0,
                blob_prefix=current.blob_prefix if current is not None else "",
            )
            ads = await _load_ads(session, user_id, [w.ad_id for w in owner.winners])
        entries: list[IndexEntry] = []
        texts: list[str] = []
        seen: set[str] = set()
        for winner in owner.winners:
            ad = ads.get(winner.ad_id)
            if ad is None or winner.ad_id in seen:
                continue
            seen.add(winner.ad_id)
            texts.append(creative_text(ad))
            entries.append(
                IndexEntry(
                    ad_id=ad.ad_id,
                    campaign_id=ad.campaign_id,
                    name=ad.name or "",
                    hook=ad.hook or "",
                    offer=ad.offer or "",
                    tags=list(ad.tags or []),
                    lower_bound=winner.lower_bound,
                )
            )
        if not entries:
            return unchanged

        box = ProgressBox({"stage": "embedding", "vectors": len(texts)})

        def embed_and_build() -> bytes:
            vectors = self._embedder().embed_array(texts)
            box.set({"stage": "indexing", "vectors": len(texts)})
            return build_faiss(vectors)

        index_bytes = await run_blocking(embed_and_build, progress=box)
        digest = hashlib.sha256(index_bytes).hexdigest()
        for _attempt in range(SWITCH_ATTEMPTS):
            new_version = version + 1
            prefix = index_prefix(user_id, new_version)
            meta = IndexMeta(user_id=user_id, version=new_version, index_sha256=digest, entries=entries)
            box.set({"stage": "writing", "version": new_version})
            await run_blocking(functools.partial(self._write, prefix, index_bytes, meta), progress=box)
            if await switch_index(self._sessions, user_id, version, new_version, prefix, len(entries)):
                return IndexBuilt(user_id=user_id, version=new_version, vectors=len(entries), blob_prefix=prefix)
            # another build switched first: ours becomes the version after the one it wrote
            async with self._sessions() as session:
                current = await session.get(CreativeIndex, user_id)
                version = current.version if current is not None else 0
        raise Retryable(
            f"the winner index of owner {user_id} kept being switched by other builds ({SWITCH_ATTEMPTS} tries)",
            code="INDEX_SWITCH_RACED",
            details={"user_id": user_id},
        )

    def _write(self, prefix: str, index_bytes: bytes, meta: IndexMeta) -> None:
        """Write one version's files (the index first: a meta file is only ever next to its index)."""
        self._blobs.put_bytes(f"{prefix}/{INDEX_FILE}", index_bytes, "application/octet-stream")
        self._blobs.put_bytes(f"{prefix}/{META_FILE}", meta.model_dump_json().encode(), "application/json")

    # --- search -------------------------------------------------------------------------------------------------

    @activity.defn(name=contract.SEARCH_CREATIVES)
    async def search_creatives(self, request: SimilarRequest) -> SimilarResult:
        """The owner's winners whose creatives are nearest ``request.text``, best first, with cosine scores."""
        async with self._sessions() as session:
            row = await session.get(CreativeIndex, request.user_id)
            version, prefix, vectors = (row.version, row.blob_prefix, row.vectors) if row else (0, "", 0)
        if version == 0 or vectors == 0:
            return SimilarResult(version=version, results=[])
        loaded = await self._loaded(request.user_id, version, prefix)

        def search() -> tuple[NDArray[np.float32], NDArray[np.int64]]:
            query = self._embedder().embed_array([request.text])
            scores, ids = loaded.index.search(query, min(request.k, loaded.index.ntotal))
            return scores, ids

        scores, ids = await asyncio.to_thread(search)
        results = []
        for score, position in zip(scores[0], ids[0], strict=True):
            if position < 0:
                continue
            entry = loaded.meta.entries[int(position)]
            results.append(
                SimilarCreative(
                    ad_id=entry.ad_id,
                    campaign_id=entry.campaign_id,
                    name=entry.name,
                    hook=entry.hook,
                    offer=entry.offer,
                    tags=entry.tags,
                    score=round(float(score), 4),
                    lower_bound=entry.lower_bound,
                )
            )
        return SimilarResult(version=version, results=results)

    async def _loaded(self, user_id: int, version: int, prefix: str) -> LoadedIndex:
        """The owner's index at ``version``, from this process's cache or the blob store."""
        key = (user_id, version)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        loaded = await asyncio.to_thread(self._read, user_id, version, prefix)
        for old in [k for k in self._cache if k[0] == user_id and k[1] < version]:
            del self._cache[old]
        if not any(k[0] == user_id and k[1] > version for k in self._cache):
            self._cache[key] = loaded
            while len(self._cache) > CACHED_OWNERS:
                self._cache.popitem(last=False)
        return loaded

    def _read(self, user_id: int, version: int, prefix: str) -> LoadedIndex:
        """Read and check one version's files: the meta must name this version and this exact index file."""
        index_bytes = self._blobs.get_bytes(f"{prefix}/{INDEX_FILE}")
        meta = IndexMeta.model_validate_json(self._blobs.get_bytes(f"{prefix}/{META_FILE}"))
        index = load_faiss(index_bytes)
        if (
            meta.user_id != user_id
            or meta.version != version
            or meta.index_sha256 != hashlib.sha256(index_bytes).hexdigest()
            or index.ntotal != len(meta.entries)
        ):
            raise Retryable(
                f"winner index v{version} of owner {user_id} at {prefix!r}: meta.json does not match index.faiss",
                code="INDEX_MISMATCH",
                details={"user_id": user_id, "version": version},
            )
        return LoadedIndex(version=version, index=index, meta=meta)


async def switch_index(
    sessions: async_sessionmaker[AsyncSession],
    user_id: int,
    expected: int,
    new_version: int,
    prefix: str,
    vectors: int,
) -> bool:
    """In one transaction, point ``user_id``'s index row at ``new_version`` only if it still names ``expected``
    (no row counts as version 0); False when another build switched it first."""
    values: dict[str, Any] = {
        "version": new_version,
        "blob_prefix": prefix,
        "vectors": vectors,
        "built_at": utcnow(),
    }
    async with sessions.begin() as session:
        moved = await session.execute(
            update(CreativeIndex)
            .where(CreativeIndex.user_id == user_id, CreativeIndex.version == expected)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        assert isinstance(moved, CursorResult)
        if moved.rowcount == 1:
            return True
        if expected != 0:
            return False
        created = await session.execute(
            dialect_insert(session, CreativeIndex)
            .values(user_id=user_id, **values)
            .on_conflict_do_nothing(index_elements=[CreativeIndex.user_id])
        )
        assert isinstance(created, CursorResult)
        return created.rowcount == 1


async def _load_ads(session: AsyncSession, user_id: int, ad_ids: Sequence[str]) -> dict[str, Ad]:
    """The owner's ad rows of ``ad_ids``, by ad id (ids without a row are left out)."""
    wanted = list(dict.fromkeys(ad_ids))
    found: dict[str, Ad] = {}
    for start in range(0, len(wanted), LOAD_CHUNK):
        chunk = wanted[start : start + LOAD_CHUNK]
        rows = await session.scalars(select(Ad).where(Ad.user_id == user_id, Ad.ad_id.in_(chunk)))
        found.update((ad.ad_id, ad) for ad in rows)
    return found


def index_activities(acts: IndexActivities) -> list[Callable[..., Any]]:
    """The winner index's activities, bound to ``acts``, for a worker of ``attribution.index``."""
    return [acts.collect_winners, acts.build_index, acts.search_creatives]
