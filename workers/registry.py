"""What runs on each task queue: workflows and the activities built from shared resources."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from activities.analysis.activities import AnalysisActivities, analysis_activities
from activities.crawl.activities import CrawlActivities, crawl_activities
from activities.crawl.browser import BrowserPool
from activities.persona.activities import PersonaActivities, persona_activities
from activities.persona.embedder import shared_embedder
from activities.persona.vectors import VectorStore, open_chroma
from activities.video.activities import VideoActivities, video_activities
from activities.video.captions import AnyCaptioner, make_captioner
from activities.video.maintenance import VideoMaintenanceActivities, video_maintenance_activities
from conveyor.settings import Settings
from conveyor.storage import BlobStore
from workflows.analysis import AnalysisWorkflow
from workflows.crawl import CrawlSessionWorkflow
from workflows.maintenance import (
    CleanupCrawlSessionsWorkflow,
    MonitorResourcesWorkflow,
    PurgeAnalysisWorkWorkflow,
    VideoCleanupWorkflow,
)
from workflows.persona import PersonaIngestionWorkflow, PersonaSearchWorkflow
from workflows.video import VideoJobWorkflow


@dataclass
class Resources:
    """Clients a worker process opens once and hands to activity classes."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    blobs: BlobStore
    browser: BrowserPool
    """One Chromium per worker process, launched on first use."""
    _crawl: CrawlActivities | None = field(default=None, init=False, repr=False)
    _vectors: VectorStore | None = field(default=None, init=False, repr=False)
    _video: VideoActivities | None = field(default=None, init=False, repr=False)
    _captioner: AnyCaptioner | None = field(default=None, init=False, repr=False)

    def crawl(self) -> CrawlActivities:
        """The crawl activities of this process (one instance shared by the crawl pipeline's queues)."""
        if self._crawl is None:
            self._crawl = CrawlActivities(self.sessions, self.blobs, self.settings, self.browser)
        return self._crawl

    def vectors(self) -> VectorStore:
        """The process's vector store (embedded Chroma under var/, or the server at ``chroma_url``)."""
        if self._vectors is None:
            s = self.settings
            self._vectors = VectorStore(open_chroma(s.chroma_path_resolved, s.chroma_url or None))
        return self._vectors

    def captioner(self) -> AnyCaptioner:
        """The process's Whisper models (loaded on first use, kept for the next job)."""
        if self._captioner is None:
            s = self.settings
            self._captioner = make_captioner(s.whisper_cache_dir_resolved, s.whisper_checkpoint)
        return self._captioner

    def video(self) -> VideoActivities:
        """The video activities of this process (one instance shared by the video queues)."""
        if self._video is None:
            self._video = VideoActivities(self.sessions, self.blobs, self.settings, self.captioner)
        return self._video


@dataclass(frozen=True)
class QueueRegistration:
    """The workflows and activities served on one queue."""

    workflows: Sequence[type] = ()
    activities: Callable[[Resources], list[Callable[..., Any]]] = field(default=lambda _r: [])


def _analysis(res: Resources) -> list[Callable[..., Any]]:
    return analysis_activities(
        AnalysisActivities(res.sessions, res.blobs, max_upload_bytes=res.settings.max_upload_bytes)
    )


def _crawl_queue(queue: str) -> Callable[[Resources], list[Callable[..., Any]]]:
    return lambda res: crawl_activities(res.crawl(), queue)


def _persona(res: Resources) -> list[Callable[..., Any]]:
    return persona_activities(PersonaActivities(res.sessions, res.vectors, shared_embedder))


def _video_queue(queue: str) -> Callable[[Resources], list[Callable[..., Any]]]:
    return lambda res: video_activities(res.video(), queue)


def _maintenance(res: Resources) -> list[Callable[..., Any]]:
    return video_maintenance_activities(VideoMaintenanceActivities(res.sessions, res.settings))


#: Queues that have something to run. Pipelines add their entries here.
REGISTRY: dict[str, QueueRegistration] = {
    "analysis": QueueRegistration(workflows=(AnalysisWorkflow, PurgeAnalysisWorkWorkflow), activities=_analysis),
    "crawl": QueueRegistration(workflows=(CrawlSessionWorkflow,), activities=_crawl_queue("crawl")),
    "tickets": QueueRegistration(activities=_crawl_queue("tickets")),
    "media": QueueRegistration(activities=_crawl_queue("media")),
    "persona": QueueRegistration(workflows=(PersonaIngestionWorkflow, PersonaSearchWorkflow), activities=_persona),
    "default": QueueRegistration(workflows=(CleanupCrawlSessionsWorkflow,), activities=_crawl_queue("default")),
    "render": QueueRegistration(workflows=(VideoJobWorkflow,), activities=_video_queue("render")),
    "preview": QueueRegistration(activities=_video_queue("preview")),
    "transcode": QueueRegistration(activities=_video_queue("transcode")),
    "caption": QueueRegistration(activities=_video_queue("caption")),
    "maintenance": QueueRegistration(
        workflows=(VideoCleanupWorkflow, MonitorResourcesWorkflow), activities=_maintenance
    ),
}

#: Every workflow class Conveyor defines (for replay tests and the sandbox).
ALL_WORKFLOWS: tuple[type, ...] = tuple(w for reg in REGISTRY.values() for w in reg.workflows)
