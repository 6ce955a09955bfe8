"""The conversation's activities (worker side): the reply, sending it, the order, the summary, the follow-up, and
the seed's health tasks.

The reply comes from the model path (:mod:`activities.chat.llm`, a LangGraph graph calling an OpenAI-compatible
endpoint) when one is configured, else from the deterministic local assistant (:mod:`activities.chat.assistant`).
Each reply is charged once per message (its ``charge_key``), in its own small transaction. Orders go to an outside
CRM when one is configured, else to the built-in CRM's table, each once per idempotency key.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.chat import contract
from activities.chat.assistant import ConversationState, reply, summary_of
from activities.chat.catalog import Catalog
from activities.chat.crm import CrmClient
from activities.chat.llm import catalog_hint, customer_language, generate, price_order
from activities.chat.manychat import ManyChatClient
from activities.chat.models import ChatOrder
from activities.chat.schemas import (
    HealthReport,
    OrderRequest,
    OrderResult,
    SendRequest,
    SummaryRequest,
    TurnRequest,
    TurnResult,
)
from activities.chat.telegram import TelegramClient
from activities.chat.turns import ChatMessage, CreateOrderArgs, LlmRequest, LlmTurn, tool_exchange
from conveyor.credits import charge_usage
from conveyor.db import GroupCommit, dialect_insert
from conveyor.errors import BadInput, ConveyorError
from conveyor.heartbeat import ProgressBox, reporting
from conveyor.models import WorkerCheck

#: Lines of the conversation a summary keeps verbatim at most (the rest is the assistant's state summary).
SUMMARY_LINES = 10


@dataclass(frozen=True)
class ModelEndpoint:
    """An OpenAI-compatible endpoint the replies come from, and the HTTP client the process shares for it."""

    base_url: str
    api_key: SecretStr | None
    model: str
    timeout_s: float
    http: httpx.AsyncClient | None = None


def _history(lines: list[str]) -> list[ChatMessage]:
    """The conversation's recent ``customer: …`` / ``assistant: …`` lines as the model's messages."""
    messages = []
    for line in lines:
        who, _, said = line.partition(": ")
        if said.strip() and who in ("customer", "assistant"):
            messages.append(ChatMessage(role="user" if who == "customer" else "assistant", content=said))
    return messages


def _ordered(state: ConversationState, language: str, number: int, args: CreateOrderArgs) -> ConversationState:
    """The state once the model's order ``number`` is placed: the cart empty, the customer's details kept."""
    return state.model_copy(
        update={
            "language": language,
            "stage": "ordered",
            "cart": (),
            "pending": None,
            "orders_placed": number,
            "customer_name": args.customer_name,
            "phone": args.phone,
            "city": args.city,
        }
    )


class ChatActivities:
    """Activities of ``ConversationWorkflow``; the worker gives them the catalog, the database and outside clients."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        sessions: async_sessionmaker[AsyncSession] | None = None,
        model: ModelEndpoint | None = None,
        telegram: Callable[[], TelegramClient | None] = lambda: None,
        manychat: Callable[[], ManyChatClient | None] = lambda: None,
        crm: Callable[[], CrmClient | None] = lambda: None,
    ) -> None:
        self._catalog = catalog
        self._hint = catalog_hint(catalog)
        self._sessions = sessions
        self._model = model
        self._telegram = telegram
        self._manychat = manychat
        self._crm = crm
        self._charges = GroupCommit(self._write_charges) if sessions is not None else None

    # --- the reply ------------------------------------------------------------------------------------------------

    @activity.defn(name=contract.GENERATE_REPLY_ACTIVITY)
    async def generate_reply(self, request: TurnRequest) -> TurnResult:
        """The reply to a message and the conversation's new state: the model's, else the local assistant's.

        On the model path a ``create_order`` call comes back as the priced order with the call; the workflow
        creates it and asks again with the tool's result (``request.tool_call``) for the text it sends. A model that
        orders again in that second call is not obeyed: the tool's result is the reply.
        """
        async with reporting(ProgressBox("replying")):  # a worker lost while the model thinks is noticed in seconds
            if self._model is None:
                turn = reply(request.state, request.text, self._catalog)
                result = TurnResult(text=turn.text, state=turn.state, order=turn.order)
            else:
                result = await self._model_turn(request, self._model)
            await self._charge(request)
        return result

    @activity.defn(name=contract.PROCESS_AND_RESPOND_ACTIVITY)
    async def process_and_respond(self, request: TurnRequest) -> TurnResult:
        """The seed's ``process_and_respond``: the reply, then its send (``request.deliver``) in the same step.

        A turn with an order is not sent: the order comes first. The send is tried once here; a refusal for good
        comes back as ``delivery_error``, and a passing failure (a 5xx, a rate limit) as ``sent=False`` for the
        conversation's own send step to retry, so the reply is never made twice for a send's sake.
        """
        result = await self.generate_reply(request)
        target = request.deliver
        if target is None or result.order is not None or not result.text.strip():
            return result
        try:
            async with reporting(ProgressBox("sending")):  # a send of many parts outlasts the heartbeat timeout
                await self._send(target.model_copy(update={"text": result.text}))
        except ConveyorError as err:
            if not err.retryable:
                return result.model_copy(update={"delivery_error": err.message})
            activity.logger.info("the reply's send is left to the send step: %s", err.message)
            wait = err.retry_after.total_seconds() if err.retry_after is not None else None
            return result.model_copy(update={"send_after_s": wait})
        return result.model_copy(update={"sent": True})

    async def _model_turn(self, request: TurnRequest, model: ModelEndpoint) -> TurnResult:
        messages = [*_history(request.recent), ChatMessage(role="user", content=request.text)]
        if request.tool_call is not None:
            messages += tool_exchange(request.tool_call, request.tool_result or "")
        llm_request = LlmRequest(summary=request.summary, messages=tuple(messages), catalog_hint=self._hint)
        language = customer_language(llm_request)
        turn: LlmTurn = await generate(
            llm_request,
            base_url=model.base_url,
            api_key=model.api_key,
            model=model.model,
            timeout_s=model.timeout_s,
            catalog=self._catalog,
            http=model.http,
        )
        state = request.state.model_copy(update={"language": language})
        if request.tool_call is not None:  # the final text of a turn that placed an order
            if turn.text is None or turn.fallback:  # it ordered again, or failed: the tool's result is the reply
                return TurnResult(text=request.tool_result or "", state=state, fallback=True)
            return TurnResult(text=turn.text, state=state)
        if turn.tool_call is not None:
            number = request.state.orders_placed + 1
            order = price_order(turn.tool_call.args, self._catalog, number=number)
            ordered = _ordered(request.state, language, number, turn.tool_call.args)
            return TurnResult(text="", state=ordered, order=order, tool_call=turn.tool_call)
        return TurnResult(text=turn.text or "", state=state, fallback=turn.fallback)

    async def _charge(self, request: TurnRequest) -> None:
        """Charge the reply to the conversation's owner, once per message whatever the retries.

        Charges of replies made at once share one transaction (group commit): every reply charges its owner's row,
        and one write lock taken per reply would make the replies queue for it.
        """
        if self._charges is None or request.owner is None or not request.charge_key:
            return
        await self._charges.submit((request.owner, f"chat:{request.charge_key}"[:200]))

    async def _write_charges(self, charges: list[tuple[int, str]]) -> list[bool]:
        assert self._sessions is not None  # only made with sessions
        credits = contract.MESSAGE_PRICE.credits
        async with self._sessions.begin() as session:
            return [await charge_usage(session, owner, credits, reason="chat reply", key=key) for owner, key in charges]

    # --- sending --------------------------------------------------------------------------------------------------

    @activity.defn(name=contract.SEND_REPLY_ACTIVITY)
    async def send_reply(self, request: SendRequest) -> None:
        """Send a reply on the conversation's channel (Telegram: split past 4,096 characters, replying once)."""
        await self._send(request)

    @activity.defn(name=contract.SEND_FOLLOWUP_ACTIVITY)
    async def send_followup(self, request: SendRequest) -> None:
        """Send a follow-up to a customer whose cart waits."""
        await self._send(request)

    async def _send(self, request: SendRequest) -> None:
        if request.channel == "telegram":
            telegram = self._telegram()
            if telegram is None:
                raise BadInput("no Telegram bot token: set CONVEYOR_TELEGRAM_BOT_TOKEN", code="TELEGRAM_NOT_CONFIGURED")
            await telegram.send_message(request.chat_id, request.text, reply_to=request.reply_to)
        elif request.channel == "manychat":
            manychat = self._manychat()
            if manychat is None:
                raise BadInput("no ManyChat API token: set CONVEYOR_MANYCHAT_API_TOKEN", code="MANYCHAT_NOT_CONFIGURED")
            await manychat.send_content(request.chat_id, [request.text])
        # the API's replies are read from the conversation: nothing to send

    # --- orders ---------------------------------------------------------------------------------------------------

    @activity.defn(name=contract.CREATE_ORDER_ACTIVITY)
    async def create_order(self, request: OrderRequest) -> OrderResult:
        """Create the order under its idempotency key (a retry is the same order): at the outside CRM when one is
        configured, else in the built-in CRM's table."""
        client = self._crm()
        if client is not None:
            placed = await client.create_order(request.conversation_id, request.order)
            return OrderResult(order_id=placed.order_id)
        if self._sessions is None or request.owner is None:
            raise BadInput("no CRM configured: set CONVEYOR_CRM_URL", code="CRM_NOT_CONFIGURED")
        return OrderResult(order_id=str(await self._store_order(self._sessions, request)))

    async def _store_order(self, sessions: async_sessionmaker[AsyncSession], request: OrderRequest) -> int:
        order = request.order
        key = contract.order_idempotency_key(request.conversation_id, order.number)
        async with sessions.begin() as session:
            await session.execute(
                dialect_insert(session, ChatOrder)
                .values(
                    user_id=request.owner,
                    idempotency_key=key,
                    conversation_id=request.conversation_id,
                    channel=request.channel,
                    chat_id=request.chat_id,
                    number=order.number,
                    items=[item.model_dump() for item in order.items],
                    customer_name=order.customer_name,
                    phone=order.phone,
                    city=order.city,
                    total=order.total,
                    currency=self._catalog.currency,
                    status="new",
                    created_at=datetime.now(UTC),
                )
                .on_conflict_do_nothing(index_elements=["idempotency_key"])
            )
            order_id = await session.scalar(select(ChatOrder.id).where(ChatOrder.idempotency_key == key))
        return int(order_id or 0)

    # --- summaries ------------------------------------------------------------------------------------------------

    @activity.defn(name=contract.SUMMARIZE_ACTIVITY)
    async def summarize(self, request: SummaryRequest) -> str:
        """The conversation so far in a few lines: the assistant's state and the latest messages."""
        lines = [summary_of(request.state)]
        if request.summary:
            lines.insert(0, request.summary.splitlines()[0])
        lines += request.messages[-SUMMARY_LINES:]
        return "\n".join(lines)

    # --- health (the seed's ``ping`` and ``worker_health_check``) ------------------------------------------------

    @activity.defn(name=contract.PING_ACTIVITY)
    async def ping(self, run: contract.HealthRun) -> str:
        """The seed's ``ping``: answers when a worker serves the default queue."""
        return "pong"

    @activity.defn(name=contract.HEALTH_CHECK_ACTIVITY)
    async def worker_health_check(self, run: contract.HealthRun) -> list[HealthReport]:
        """The seed's ``worker_health_check``: the database, Temporal (it dispatched this) and the configured
        channel APIs, each recorded in ``worker_checks`` for ``/api/health``."""
        reports = [HealthReport(name="chat.temporal", ok=True, detail="dispatched this check")]
        reports.append(await _probe("chat.database", self._database_ok))
        telegram = self._telegram()
        if telegram is not None:
            reports.append(await _probe("chat.telegram", telegram.get_me))
        manychat = self._manychat()
        if manychat is not None:
            reports.append(await _probe("chat.manychat", manychat.page_info))
        await self._record(reports)
        return reports

    async def _database_ok(self) -> None:
        if self._sessions is None:
            raise BadInput("no database", code="NO_DATABASE")
        async with self._sessions() as session:
            await session.execute(text("SELECT 1"))

    async def _record(self, reports: list[HealthReport]) -> None:
        if self._sessions is None:
            return
        try:
            async with self._sessions.begin() as session:
                # a check no longer made (a channel unconfigured since) leaves /api/health with it
                names = [report.name for report in reports]
                await session.execute(
                    delete(WorkerCheck).where(WorkerCheck.name.like("chat.%"), WorkerCheck.name.not_in(names))
                )
                for report in reports:
                    await session.merge(
                        WorkerCheck(
                            name=report.name,
                            ok=report.ok,
                            detail=report.detail[:1000],
                            latency_ms=report.latency_ms,
                            checked_at=datetime.now(UTC),
                        )
                    )
        except Exception as exc:  # noqa: BLE001 - the database being down is what the report says
            activity.logger.warning("worker checks not recorded: %s", exc)


async def _probe(name: str, check: Callable[[], Awaitable[Any]]) -> HealthReport:
    """Run one check; its outcome and how long it took (a failure is a report, not an error)."""
    began = time.perf_counter()
    try:
        await check()
    except Exception as exc:  # noqa: BLE001 - any failure is the check's answer
        return HealthReport(name=name, ok=False, detail=f"{type(exc).__name__}: {exc}"[:500])
    return HealthReport(name=name, ok=True, latency_ms=round((time.perf_counter() - began) * 1000, 1))


def chat_activities(acts: ChatActivities, queue: str | None = None) -> list[Callable[..., Awaitable[Any]]]:
    """The activities of one chat queue (every queue's when ``queue`` is None), bound to ``acts``."""
    by_queue: dict[str, list[Callable[..., Awaitable[Any]]]] = {
        contract.LLM_QUEUE: [acts.generate_reply, acts.process_and_respond],
        contract.WEBHOOKS_QUEUE: [acts.send_reply],
        contract.FOLLOWUPS_QUEUE: [acts.send_followup],
        contract.CRM_QUEUE: [acts.create_order],
        contract.SUMMARIZATION_QUEUE: [acts.summarize],
        contract.DEFAULT_QUEUE: [acts.ping, acts.worker_health_check],
    }
    if queue is None:
        return [act for acts_of_queue in by_queue.values() for act in acts_of_queue]
    return by_queue[queue]
