"""The attribution pipeline's worker side: each queue's activities, with the clients they share in the process."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from activities.attribution import contract
from activities.attribution.crm import HubSpotCrmClient
from activities.attribution.ingest import IngestActivities, ingest_activities
from conveyor.resources import WorkerResources


def _crm(resources: WorkerResources) -> Callable[[], HubSpotCrmClient | None]:
    """The process's HubSpot CRM client when a token is configured (deal properties for events that lack them)."""
    s = resources.settings

    async def close(client: HubSpotCrmClient) -> None:
        await client.aclose()

    def client() -> HubSpotCrmClient | None:
        token = s.hubspot_access_token.get_secret_value().strip() if s.hubspot_access_token else ""
        if not token:  # unset or empty (compose passes an empty optional value)
            return None
        return resources.shared(
            "attribution.crm", lambda: HubSpotCrmClient(token, base_url=s.hubspot_api_url), close=close
        )

    return client


def activities(resources: WorkerResources, queue: str) -> list[Callable[..., Any]]:
    """The activities of one attribution queue: ingest on webhooks, fatigue and approvals, the winner index."""
    s = resources.settings
    if queue == contract.FATIGUE_QUEUE:
        from activities.attribution.monitor import MonitorActivities, monitor_activities, thresholds_from

        timeout = timedelta(hours=s.attribution_approval_timeout_h)
        return monitor_activities(MonitorActivities(resources.sessions, thresholds_from(s), timeout))
    if queue == contract.INDEX_QUEUE:
        from activities.attribution.index import IndexActivities, index_activities
        from activities.persona.embedder import shared_embedder

        acts = IndexActivities(
            resources.sessions,
            resources.blobs,
            shared_embedder,
            winners_per_campaign=s.attribution_winners,
            min_trials=s.attribution_winner_min_trials,
        )
        return index_activities(acts)
    return ingest_activities(IngestActivities(resources.sessions, s, _crm(resources)))
