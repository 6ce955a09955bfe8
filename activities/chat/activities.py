"""The conversation's activities (worker side): the reply, sending it, the order, the summary, the follow-up.

Not wired to a worker yet: the chat manifest, its tables (the built-in CRM's orders) and its webhooks come next.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import activity

from activities.chat import contract
from activities.chat.assistant import reply, summary_of
from activities.chat.catalog import Catalog
from activities.chat.crm import CrmClient
from activities.chat.schemas import OrderRequest, OrderResult, SendRequest, SummaryRequest, TurnRequest, TurnResult
from activities.chat.telegram import TelegramClient
from conveyor.errors import BadInput

#: Lines of the conversation a summary keeps verbatim at most (the rest is the assistant's state summary).
SUMMARY_LINES = 10


class ChatActivities:
    """Activities of ``ConversationWorkflow``; the worker gives them the catalog and its outside clients."""

    def __init__(
        self,
        catalog: Catalog,
        telegram: Callable[[], TelegramClient | None] = lambda: None,
        crm: Callable[[], CrmClient | None] = lambda: None,
    ) -> None:
        self._catalog = catalog
        self._telegram = telegram
        self._crm = crm

    @activity.defn(name=contract.GENERATE_REPLY_ACTIVITY)
    async def generate_reply(self, request: TurnRequest) -> TurnResult:
        """The local assistant's reply (deterministic, from the catalog) and the conversation's new state."""
        turn = reply(request.state, request.text, self._catalog)
        return TurnResult(text=turn.text, state=turn.state, order=turn.order)

    @activity.defn(name=contract.SEND_REPLY_ACTIVITY)
    async def send_reply(self, request: SendRequest) -> None:
        """Send a reply on the conversation's channel (Telegram: split past 4,096 characters, replying once)."""
        await self._send(request)

    @activity.defn(name=contract.SEND_FOLLOWUP_ACTIVITY)
    async def send_followup(self, request: SendRequest) -> None:
        """Send a follow-up to a customer whose cart waits."""
        await self._send(request)

    async def _send(self, request: SendRequest) -> None:
        if request.channel != "telegram":
            return  # the API's and ManyChat's replies travel in their answers
        client = self._telegram()
        if client is None:
            raise BadInput("no Telegram bot token: set CONVEYOR_TELEGRAM_BOT_TOKEN", code="TELEGRAM_NOT_CONFIGURED")
        await client.send_message(request.chat_id, request.text, reply_to=request.reply_to)

    @activity.defn(name=contract.CREATE_ORDER_ACTIVITY)
    async def create_order(self, request: OrderRequest) -> OrderResult:
        """Create the order at the outside CRM under its idempotency key (a retry is the same order)."""
        client = self._crm()
        if client is None:
            raise BadInput("no CRM configured: set CONVEYOR_CRM_URL", code="CRM_NOT_CONFIGURED")
        placed = await client.create_order(request.conversation_id, request.order)
        return OrderResult(order_id=placed.order_id)

    @activity.defn(name=contract.SUMMARIZE_ACTIVITY)
    async def summarize(self, request: SummaryRequest) -> str:
        """The conversation so far in a few lines: the assistant's state and the latest messages."""
        lines = [summary_of(request.state)]
        if request.summary:
            lines.insert(0, request.summary.splitlines()[0])
        lines += request.messages[-SUMMARY_LINES:]
        return "\n".join(lines)


def chat_activities(acts: ChatActivities) -> list[Callable[..., Awaitable[Any]]]:
    """The conversation's activities, bound to ``acts``."""
    return [acts.generate_reply, acts.send_reply, acts.send_followup, acts.create_order, acts.summarize]
