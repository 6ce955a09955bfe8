"""The chat pipeline's worker side: each queue's activities, with the clients one process shares between them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from activities.chat.activities import ChatActivities, ModelEndpoint, chat_activities
from activities.chat.catalog import load_catalog
from activities.chat.crm import CrmClient
from activities.chat.manychat import ManyChatClient
from activities.chat.telegram import TelegramClient
from conveyor.outbound import OutboundClient
from conveyor.resources import WorkerResources
from conveyor.settings import Settings

#: How long one model call may take: inside the seed's 55 s soft limit of the reply step.
MODEL_TIMEOUT_S = 50.0


def _secret(value: Any) -> str:
    """A secret setting's text, empty when unset (compose passes an empty optional value)."""
    return value.get_secret_value().strip() if value is not None else ""


async def _close(client: OutboundClient | httpx.AsyncClient) -> None:
    await client.aclose()


def _model(resources: WorkerResources) -> ModelEndpoint | None:
    s = resources.settings
    if not s.llm_base_url.strip():
        return None
    http = resources.shared("chat.llm-http", lambda: httpx.AsyncClient(timeout=MODEL_TIMEOUT_S), close=_close)
    return ModelEndpoint(s.llm_base_url, s.llm_api_key, s.llm_model, MODEL_TIMEOUT_S, http)


def _clients(resources: WorkerResources, s: Settings) -> dict[str, Callable[[], Any]]:
    """Factories of the process's outside clients (``None`` where the setting is unset)."""

    def telegram() -> TelegramClient | None:
        token = _secret(s.telegram_bot_token)
        if not token:
            return None
        return resources.shared(
            "chat.telegram", lambda: TelegramClient(token, api_url=s.telegram_api_url), close=_close
        )

    def manychat() -> ManyChatClient | None:
        token = _secret(s.manychat_api_token)
        if not token:
            return None
        return resources.shared(
            "chat.manychat", lambda: ManyChatClient(token, api_url=s.manychat_api_url), close=_close
        )

    def crm() -> CrmClient | None:
        if not s.crm_url.strip():
            return None
        key = _secret(s.crm_api_key) or None
        return resources.shared("chat.crm", lambda: CrmClient(s.crm_url, api_key=key), close=_close)

    return {"telegram": telegram, "manychat": manychat, "crm": crm}


def activities(resources: WorkerResources, queue: str) -> list[Callable[..., Any]]:
    """The activities of one chat queue, sharing one catalog and the process's clients."""
    acts = resources.shared(
        "chat.activities",
        lambda: ChatActivities(
            load_catalog(),
            sessions=resources.sessions,
            model=_model(resources),
            **_clients(resources, resources.settings),
        ),
    )
    return chat_activities(acts, queue)
