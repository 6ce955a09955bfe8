"""ConversationWorkflow: one durable conversation per chat (seed 001, MIRT's workers as one workflow).

Messages reach it as the ``message`` update (the reply is the update's result: the API's ``wait: true`` and
ManyChat's synchronous answer) or the ``queue_message`` signal (queued). They are processed strictly in arrival
order, one at a time (an ``asyncio.Lock``: handlers acquire it in the order their events sit in the history), while
other chats' workflows run in parallel. Each message's key is processed once; a redelivery gets the first reply
again (kept for the latest :data:`~activities.chat.schemas.REPLY_MEMORY` messages) and nothing is sent twice. The
keys travel through ``continue_as_new``.

Follow-ups and summaries are durable timers here, replacing the seed's 15-minute and hourly scans: after
``followup_after_s`` idle with an unfinished cart one follow-up is sent (at most ``followup_max`` per idle period);
after ``summary_every`` messages, or ``summary_idle_s`` idle, the conversation is summarised, old messages are
dropped and the workflow continues as new carrying summary, cart and recent keys.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.chat import contract
    from activities.chat.assistant import OrderDraft
    from activities.chat.schemas import (
        DEDUPE_WINDOW,
        REPLY_MEMORY,
        ConversationInput,
        ConversationView,
        HealthReport,
        IncomingMessage,
        OrderRequest,
        OrderResult,
        Reply,
        SendRequest,
        SummaryRequest,
        TurnRequest,
        TurnResult,
    )
    from conveyor.progress import PROGRESS_QUERY, Progress
    from conveyor.steps import Step, retries

#: The seed's ``max_retries=3`` with its 60 s default delay, backing off from there.
SEED_RETRY = retries(contract.MAX_ATTEMPTS, first=timedelta(seconds=2), most=contract.RETRY_DELAY)
#: The reply step heartbeats while the model thinks (up to most of a minute): a worker lost mid-reply is noticed this
#: soon and the reply is made again on another, rather than after the step's whole 60 s limit.
REPLY_HEARTBEAT = timedelta(seconds=15)
GENERATE = Step(
    contract.GENERATE_REPLY_ACTIVITY,
    contract.GENERATE_REPLY.hard,
    SEED_RETRY,
    heartbeat=REPLY_HEARTBEAT,
    queue=contract.LLM_QUEUE,
)
#: The seed's ``process_and_respond``: the reply and its send in one step, when the reply goes out on the channel.
PROCESS_AND_RESPOND = Step(
    contract.PROCESS_AND_RESPOND_ACTIVITY,
    contract.PROCESS_AND_RESPOND.hard,
    SEED_RETRY,
    heartbeat=REPLY_HEARTBEAT,
    queue=contract.LLM_QUEUE,
)
SEND = Step(contract.SEND_REPLY_ACTIVITY, contract.SEND_REPLY.hard, SEED_RETRY, queue=contract.WEBHOOKS_QUEUE)
#: The order's first try, with the reply waiting: a short retry, then the customer is told it is pending.
PLACE_ORDER = Step(
    contract.CREATE_ORDER_ACTIVITY,
    contract.CREATE_ORDER.hard,
    retries(2, first=timedelta(seconds=2)),
    queue=contract.CRM_QUEUE,
)
#: An order is then retried far longer than a reply: the CRM being down must never lose it.
CREATE_ORDER = Step(
    contract.CREATE_ORDER_ACTIVITY,
    contract.CREATE_ORDER.hard,
    retries(10, first=timedelta(seconds=5), most=timedelta(minutes=10)),
    queue=contract.CRM_QUEUE,
)
SUMMARIZE = Step(contract.SUMMARIZE_ACTIVITY, contract.SUMMARIZE.hard, SEED_RETRY, queue=contract.SUMMARIZATION_QUEUE)
FOLLOWUP = Step(
    contract.SEND_FOLLOWUP_ACTIVITY, contract.SEND_FOLLOWUP.hard, SEED_RETRY, queue=contract.FOLLOWUPS_QUEUE
)


def _retryable(err: ActivityError) -> bool:
    """Whether an activity failed for a reason that may pass (the CRM down), not a permanent refusal."""
    cause = err.cause
    return not (isinstance(cause, ApplicationError) and cause.non_retryable)


def _reason(err: ActivityError) -> str:
    """An activity failure in one line: its cause's message (e.g. Telegram's "chat not found")."""
    cause = err.cause
    return str(cause.message if isinstance(cause, FailureError) else err.message)[:500]


#: Messages kept verbatim after a summary (the rest live on in the summary).
KEEP_RECENT = 6
#: Lines of the conversation the reply step sees besides the summary.
CONTEXT_LINES = 12


@workflow.defn(name=contract.CONVERSATION_WORKFLOW)
class ConversationWorkflow:
    """One chat: replies in order, once per message; follow-ups and summaries on durable timers."""

    @workflow.init
    def __init__(self, start: ConversationInput) -> None:
        self._start = start
        self._carry = start.carry.model_copy(deep=True)
        self._seen = set(self._carry.seen)
        self._lock = asyncio.Lock()
        self._messages = 0
        self._seen_count = 0
        self._last_at: datetime | None = None
        self._progress = Progress(stage="waiting")
        self._later: list[asyncio.Future[None]] = []

    # --- messages -------------------------------------------------------------------------------------------------

    @workflow.update(name=contract.MESSAGE_UPDATE)
    async def message(self, incoming: IncomingMessage) -> Reply:
        """Process a message (after the ones before it) and answer with its reply."""
        return await self._handle(incoming, queued=False)

    @workflow.signal(name=contract.MESSAGE_SIGNAL)
    async def queue_message(self, incoming: IncomingMessage) -> None:
        """Process a message in its turn; its reply is only sent."""
        await self._handle(incoming, queued=True)

    @workflow.signal(name=contract.LATE_SIGNAL)
    async def deliver_later(self, key: str) -> None:
        """The synchronous caller of message ``key`` gave up (ManyChat's holding answer): send its reply instead."""
        async with self._lock:
            if key in self._carry.delivered:
                return  # its reply went out already (Telegram's replies always do; a repeated signal)
            if key in self._carry.replies:
                await self._deliver(self._carry.replies[key], None)
                self._carry.delivered.append(key)
            elif key not in self._carry.late:
                self._carry.late.append(key)  # the message itself has not come yet: sent when it is answered
                del self._carry.late[: -contract.LATE_MEMORY]

    async def _handle(self, incoming: IncomingMessage, *, queued: bool) -> Reply:
        """Answer a message once. Its reply goes out on the channel for Telegram, and for ManyChat when nobody waits
        for it (queued, or its caller gave up); an update's caller gets it as the update's result."""
        async with self._lock:
            if incoming.key in self._seen:
                first = self._carry.replies.get(incoming.key, "")
                return Reply(key=incoming.key, text=first, duplicate=True)
            carry = self._carry
            channel = self._start.channel
            send = channel == "telegram" or incoming.key in carry.late or (queued and channel == "manychat")
            deliver = SendRequest(channel=channel, chat_id=self._start.chat_id, text="", reply_to=incoming.message_id)
            request = TurnRequest(
                state=carry.state,
                summary=carry.summary,
                text=incoming.text,
                recent=carry.recent[-CONTEXT_LINES:],
                owner=self._start.owner,
                charge_key=f"{workflow.info().workflow_id}:{incoming.key}",
                deliver=deliver if send else None,
            )
            turn = last = await self._generate(request)
            text = turn.text
            order_number = None
            if turn.order is not None:
                order_number = turn.order.number
                outcome = await self._order(turn.order, turn.state.language)
                if turn.tool_call is not None:  # the model path: the model words the reply from the tool's result
                    update = {"tool_call": turn.tool_call, "tool_result": outcome, "charge_key": None}
                    last = await self._generate(request.model_copy(update=update))
                    text = outcome if last.fallback else last.text  # never an apology for an order it placed
                elif outcome != contract.order_placed_text(turn.state.language, turn.order.number):
                    text = f"{text}\n\n{outcome}"
            if send:
                if last.sent and last.text == text:
                    carry.delivery_error = None
                elif last.delivery_error is not None:
                    carry.delivery_error = last.delivery_error
                else:
                    if last.send_after_s:  # the channel asked for a pause (a 429): the send step waits it out
                        await workflow.sleep(timedelta(seconds=last.send_after_s))
                    await self._deliver(text, incoming.message_id)
                if incoming.key in carry.late:
                    carry.late.remove(incoming.key)
            self._remember(incoming, turn, text)
            if send:
                carry.delivered.append(incoming.key)
            return Reply(key=incoming.key, text=text, order_number=order_number)

    async def _generate(self, request: TurnRequest) -> TurnResult:
        """The reply step (sending it too when the request says where); when it fails for good (a refused model key,
        retries spent) an apology, state unchanged."""
        step = GENERATE if request.deliver is None else PROCESS_AND_RESPOND
        try:
            return await step.run(request, TurnResult)
        except ActivityError as err:
            workflow.logger.warning("the reply step failed for good: %s", _reason(err))
            return TurnResult(text=contract.apology_text(request.state.language), state=request.state, fallback=True)

    async def _order(self, order: OrderDraft, language: str) -> str:
        """Create the order at the CRM; what the customer is told: placed, or pending (retried in the background)."""
        request = OrderRequest(
            conversation_id=workflow.info().workflow_id,
            order=order,
            owner=self._start.owner,
            channel=self._start.channel,
            chat_id=self._start.chat_id,
        )
        try:
            placed = await PLACE_ORDER.run(request, OrderResult)
        except ActivityError as err:
            if not _retryable(err):
                workflow.logger.warning("the CRM refused order %s: %s", order.number, _reason(err))
                return contract.order_refused_text(language)
            # the CRM is down: the customer is told the order is pending, and it is retried in the background
            # under the same idempotency key (never two orders), the customer told once it is placed
            self._later.append(asyncio.ensure_future(self._place_later(request, language)))
            return contract.pending_order_text(language)
        self._carry.orders.append(placed.order_id or str(order.number))
        return contract.order_placed_text(language, order.number)

    async def _place_later(self, request: OrderRequest, language: str) -> None:
        """Retry an order the CRM could not take, then tell the customer it is placed."""
        try:
            placed = await CREATE_ORDER.run(request, OrderResult)
        except ActivityError as err:
            workflow.logger.error("order %s could not be placed: %s", request.order.number, _reason(err))
            async with self._lock:  # the customer, told it was pending, is told it failed
                await self._deliver(contract.order_refused_text(language), None)
            return
        self._carry.orders.append(placed.order_id or str(request.order.number))
        async with self._lock:  # never before the reply that said the order was pending
            await self._deliver(contract.order_placed_text(language, request.order.number), None)

    async def _deliver(self, text: str, reply_to: int | None) -> None:
        """Send ``text`` on the conversation's channel; a refusal for good is recorded on the conversation."""
        if self._start.channel == "api":
            return  # the API's replies are read from the conversation
        try:
            await SEND.call(
                SendRequest(channel=self._start.channel, chat_id=self._start.chat_id, text=text, reply_to=reply_to)
            )
        except ActivityError as err:
            self._carry.delivery_error = _reason(err)
            workflow.logger.warning("the reply could not be delivered: %s", self._carry.delivery_error)
        else:
            self._carry.delivery_error = None

    def _remember(self, incoming: IncomingMessage, turn: TurnResult, text: str) -> None:
        carry = self._carry
        carry.state = turn.state
        carry.recent += [f"customer: {incoming.text}", f"assistant: {text}"]
        carry.seen.append(incoming.key)
        self._seen.add(incoming.key)
        while len(carry.seen) > DEDUPE_WINDOW:
            self._seen.discard(carry.seen.pop(0))
        carry.replies[incoming.key] = text
        while len(carry.replies) > REPLY_MEMORY:
            del carry.replies[next(iter(carry.replies))]
        carry.delivered = [key for key in carry.delivered if key in carry.replies]  # only a kept reply is resent
        carry.messages_since_summary += 1
        carry.followups_sent = 0  # a new message starts a new idle period
        self._messages += 1
        self._last_at = workflow.now()
        self._progress = self._progress.advance(
            workflow.now(), stage=carry.state.stage, done=len(carry.seen), message=f"{len(carry.seen)} messages"
        )

    # --- queries --------------------------------------------------------------------------------------------------

    @workflow.query(name=contract.CONVERSATION_QUERY)
    def conversation(self) -> ConversationView:
        """The conversation: stage, summary, recent messages, cart, follow-ups sent and orders placed."""
        carry = self._carry
        return ConversationView(
            channel=self._start.channel,
            chat_id=self._start.chat_id,
            stage=carry.state.stage,
            summary=carry.summary,
            recent=carry.recent,
            cart=[item.model_dump() for item in carry.state.cart],
            followups_sent=carry.followups_sent,
            orders_placed=carry.state.orders_placed,
            messages_seen=len(carry.seen),
            orders=carry.orders,
            delivery_error=carry.delivery_error,
            language=carry.state.language,
        )

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> Progress:
        """Messages processed and the conversation's stage."""
        return self._progress

    # --- timers ---------------------------------------------------------------------------------------------------

    def _cart_waiting(self) -> bool:
        state = self._carry.state
        return bool(state.cart) and state.stage != "ordered" and self._carry.followups_sent < self._start.followup_max

    def _woken(self) -> bool:
        """A message came since the wait began, or enough of them for a summary."""
        return self._messages != self._seen_count or self._summary_due()

    def _summary_due(self) -> bool:
        """Enough messages for a summary, or a history Temporal says is long enough to continue as new."""
        if workflow.info().is_continue_as_new_suggested() and self._carry.messages_since_summary:
            return True
        return self._carry.messages_since_summary >= self._start.summary_every

    def _next_wait(self) -> timedelta | None:
        """How long to wait for a message before the next timer's work (``None``: until one comes)."""
        waits = []
        if self._cart_waiting():
            waits.append(self._start.followup_after_s)
        if self._carry.messages_since_summary:
            waits.append(self._start.summary_idle_s)
        if not waits:
            return None
        idle = (workflow.now() - (self._last_at or workflow.now())).total_seconds()
        return timedelta(seconds=max(0.001, min(waits) - idle))

    @workflow.run
    async def run(self, start: ConversationInput) -> None:
        """Wait for messages; send follow-ups and summarise on their timers; continue as new after a summary."""
        self._last_at = self._last_at or workflow.now()  # a continued run counts idle time from its start
        while True:
            self._seen_count = self._messages
            try:
                await workflow.wait_condition(self._woken, timeout=self._next_wait())
            except TimeoutError:
                pass
            if self._messages != self._seen_count and not self._summary_due():
                continue  # a message came: the idle timers start again
            async with self._lock:
                idle = (workflow.now() - self._last_at).total_seconds() if self._last_at else 0.0
                if self._cart_waiting() and idle >= start.followup_after_s:
                    text = contract.followup_text(self._carry.state.language)
                    if start.channel != "api":
                        try:
                            await FOLLOWUP.call(SendRequest(channel=start.channel, chat_id=start.chat_id, text=text))
                        except ActivityError as err:
                            self._carry.delivery_error = _reason(err)
                        else:
                            self._carry.delivery_error = None
                    self._carry.followups_sent += 1
                    self._carry.recent.append(f"assistant: {text}")
                if self._summary_due() or (self._carry.messages_since_summary and idle >= start.summary_idle_s):
                    await self._summarize()
                    break
        # messages that came meanwhile are answered, and orders still being retried placed, before the run hands over
        await workflow.wait_condition(self._settled)
        workflow.continue_as_new(start.model_copy(update={"carry": self._carry}))

    def _settled(self) -> bool:
        """No message is being answered and no order is being retried."""
        return workflow.all_handlers_finished() and all(later.done() for later in self._later)

    async def _summarize(self) -> None:
        carry = self._carry
        request = SummaryRequest(summary=carry.summary, state=carry.state, messages=carry.recent)
        carry.summary = await SUMMARIZE.run(request, str)
        carry.recent = carry.recent[-KEEP_RECENT:]
        carry.messages_since_summary = 0


PING = Step(contract.PING_ACTIVITY, contract.HEALTH.hard, retries(1), queue=contract.DEFAULT_QUEUE)
HEALTH_CHECK = Step(contract.HEALTH_CHECK_ACTIVITY, contract.HEALTH.hard, retries(1), queue=contract.DEFAULT_QUEUE)


@workflow.defn(name=contract.HEALTH_WORKFLOW)
class ChatHealthWorkflow:
    """The seed's 5-minute health tasks: ``ping``, then ``worker_health_check`` (recorded for ``/api/health``)."""

    @workflow.run
    async def run(self, run: contract.HealthRun) -> list[HealthReport]:
        """Ping the default queue's worker, then check the database and the configured channel APIs."""
        await PING.run(run, str)
        reports: list[HealthReport] = await HEALTH_CHECK.run(run, list[HealthReport])
        return reports
