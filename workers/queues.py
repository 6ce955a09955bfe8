"""Every task queue, with the seeds' worker concurrency and the group that serves it when distributed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskQueue:
    """A Temporal task queue and how many activities one worker runs on it at once."""

    name: str
    max_concurrent_activities: int
    group: str
    description: str


QUEUES: dict[str, TaskQueue] = {
    q.name: q
    for q in (
        # BugHive QA crawler (seed 000)
        TaskQueue("crawl", 2, "crawl", "crawl sessions and page visits"),
        TaskQueue("tickets", 4, "crawl", "bug tickets"),
        TaskQueue("media", 8, "crawl", "screenshots"),
        TaskQueue("default", 2, "crawl", "everything else"),
        # MIRT chat workers (seed 001)
        TaskQueue("llm", 4, "chat", "assistant replies"),
        TaskQueue("summarization", 2, "chat", "conversation summaries"),
        TaskQueue("followups", 2, "chat", "follow-up messages"),
        TaskQueue("crm", 2, "chat", "CRM orders"),
        TaskQueue("webhooks", 4, "chat", "incoming chat webhooks"),
        # persona ingestion (seed 002)
        TaskQueue("persona", 2, "persona", "persona collections into the vector store"),
        # Agensium analysis routing (seed 003): CELERY_WORKER_CONCURRENCY=4
        TaskQueue("analysis", 4, "analysis", "routed data-analysis tasks"),
        # GeminiVideo (seed 004)
        TaskQueue("render", 2, "video", "video renders"),
        TaskQueue("preview", 4, "video", "preview frames and contact sheets"),
        TaskQueue("transcode", 2, "video", "transcodes"),
        TaskQueue("caption", 1, "video", "speech to captions"),
        TaskQueue("maintenance", 1, "maintenance", "cleanup and resource monitoring"),
        TaskQueue("attribution", 4, "maintenance", "ad attribution webhooks"),
    )
}


def queue(name: str) -> TaskQueue:
    """The registered queue called ``name`` (KeyError if there is none)."""
    return QUEUES[name]
