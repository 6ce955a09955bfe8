"""The persona pipeline's worker side: the embedder, the process's vector store and the activities."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.persona.activities import PersonaActivities, persona_activities
from activities.persona.embedder import shared_embedder
from activities.persona.vectors import VectorStore, open_chroma
from conveyor.resources import WorkerResources


def activities(resources: WorkerResources, queue: str) -> list[Callable[..., Any]]:
    """Every persona activity; the vector store opens on first use (embedded Chroma, or the server)."""
    s = resources.settings

    def vectors() -> VectorStore:
        return resources.shared(
            "persona.vectors", lambda: VectorStore(open_chroma(s.chroma_path_resolved, s.chroma_url or None))
        )

    acts = PersonaActivities(
        resources.sessions, vectors, shared_embedder, data_root=s.persona_data_root_resolved, blobs=resources.blobs
    )
    return persona_activities(acts)
