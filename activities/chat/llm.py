"""The chat assistant's model path: a LangGraph graph that asks an OpenAI-compatible endpoint for one reply.

Its pure types live in :mod:`activities.chat.turns`, for the conversation workflow to build a request and read a
turn: :class:`LlmRequest` in, :class:`LlmTurn` out.

A turn is one of three things:

* the model's text — the reply to send;
* a :class:`ToolCall` of ``create_order`` whose arguments were checked against the catalog (known SKU, a size in
  stock for the quantity, a +380 phone). The workflow creates the order on the ``crm`` queue, appends
  :func:`tool_exchange` (the model's tool call and the tool's result) to the messages and calls again for the
  final text;
* a fallback (``fallback=True``) with a clear text in the customer's language: an apology when the endpoint timed
  out, failed (5xx, unreachable) or answered something malformed, or a request to correct the order when the tool
  call was invalid (bad JSON, unknown SKU, a size not in stock, a bad phone). The conversation keeps working.

Only a bad key (401/403 → :class:`BadInput` ``LLM_KEY_INVALID``: the operator must fix it) and a rate limit (429 →
:class:`RateLimited` after ``Retry-After``) raise.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from typing import Any, TypedDict, cast

import httpx
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from activities.chat.assistant import MAX_QUANTITY, OrderDraft, OrderItem
from activities.chat.catalog import Catalog, Language, Product
from activities.chat.contract import RETRY_DELAY, apology_text
from activities.chat.turns import (
    ChatMessage,
    CreateOrderArgs,
    LlmRequest,
    LlmTurn,
    OrderItemArg,
    ToolCall,
)
from conveyor.errors import BadInput, ExternalServiceError, RateLimited
from conveyor.logging import get_logger
from conveyor.outbound import OutboundClient, retry_after

log = get_logger(__name__)

#: The tool's name, as the model calls it.
CREATE_ORDER = "create_order"
#: How long to wait after a 429 without ``Retry-After``: the seed's default retry delay.
DEFAULT_RETRY_AFTER = RETRY_DELAY
#: Never wait longer than this, whatever a header says (the conversation must answer at some point).
_MAX_RETRY_AFTER = timedelta(minutes=10)


def catalog_hint(catalog: Catalog) -> str:
    """The catalog in short for the system prompt: SKU, names, price and the sizes in stock, one product a line."""
    lines = []
    for product in catalog.products:
        sizes = ", ".join(f"{size} ({count} left)" for size, count in product.sizes.items() if count > 0)
        lines.append(
            f"- {product.sku}: {product.name_en} / {product.name_uk}, {product.price} {catalog.currency}; "
            f"sizes in stock: {sizes or 'none'}"
        )
    return "\n".join(lines)


def price_order(args: CreateOrderArgs, catalog: Catalog, *, number: int) -> OrderDraft:
    """The conversation's ``number``-th order from checked tool arguments, priced from the catalog."""
    items = tuple(
        OrderItem(sku=item.sku, size=item.size, quantity=item.quantity, price=catalog.get(item.sku).price)
        for item in args.items
    )
    return OrderDraft(
        number=number,
        items=items,
        customer_name=args.customer_name,
        phone=args.phone,
        city=args.city,
        total=sum(item.price * item.quantity for item in items),
    )


#: The ``create_order`` tool as the chat completions API declares it.
CREATE_ORDER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": CREATE_ORDER,
        "description": (
            "Place the customer's order. Call it only once the customer has confirmed the items, sizes, "
            "quantities, their name, phone and delivery city."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "description": "The order lines.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "sku": {"type": "string", "description": "The product's SKU from the catalog."},
                            "size": {"type": "string", "description": "A size of the product that is in stock."},
                            "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY},
                        },
                        "required": ["sku", "size", "quantity"],
                        "additionalProperties": False,
                    },
                },
                "customer_name": {"type": "string", "description": "The customer's name."},
                "phone": {"type": "string", "description": "The customer's phone number, +380XXXXXXXXX."},
                "city": {"type": "string", "description": "The city to deliver to."},
            },
            "required": ["items", "customer_name", "phone", "city"],
            "additionalProperties": False,
        },
    },
}

SYSTEM_PROMPT = """\
You are the shop assistant of a clothing shop, chatting with a customer in a messenger.
Answer briefly and kindly, in the customer's language (Ukrainian or English). Prices are in UAH.
Offer only the products and sizes of the catalog below, and only sizes that are in stock.
To place an order you need the items (product, size, quantity), the customer's name, phone (+380XXXXXXXXX) and \
delivery city: ask for whatever is missing, show the order with its total and ask the customer to confirm. \
Call create_order only after the customer confirmed, with the products' SKUs. When create_order returns, tell the \
customer what it says (the order number, or that the order is pending).

Catalog:
{catalog}

What happened earlier in this conversation:
{summary}"""


# --- the endpoint -----------------------------------------------------------------------------------------------


class RawToolCall(BaseModel):
    """A tool call as the model sent it, before its arguments are checked."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    arguments: str


class ModelAnswer(BaseModel):
    """The assistant message of a chat completion: text, tool calls, or both."""

    model_config = ConfigDict(frozen=True)

    content: str | None = None
    tool_calls: tuple[RawToolCall, ...] = ()


class ChatCompletionsClient(OutboundClient):
    """Calls an OpenAI-compatible ``POST {base_url}/chat/completions`` and maps failures onto the taxonomy.

    401/403 → :class:`BadInput` ``LLM_KEY_INVALID``; 429 → :class:`RateLimited` after ``Retry-After``; a timeout,
    a network failure, any other non-2xx answer or a malformed body → :class:`ExternalServiceError`.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: SecretStr | str | None,
        model: str,
        timeout_s: float,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if not base_url.strip():
            raise BadInput("no LLM endpoint is configured", code="LLM_NOT_CONFIGURED")
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else (api_key or "")
        self.model = model
        super().__init__(timeout_s=timeout_s, http=http)

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ModelAnswer:
        """The model's answer to ``messages`` with ``tools`` offered."""
        payload = {"model": self.model, "messages": messages, "tools": tools, "tool_choice": "auto"}
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        try:
            # httpx's timeout bounds each phase; this bounds the whole exchange (a server dripping tokens).
            async with asyncio.timeout(self._timeout_s):
                response = await self._http.post(self._url, headers=headers, json=payload, timeout=self._timeout_s)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise ExternalServiceError(
                f"the LLM endpoint did not answer within {self._timeout_s:g} s", code="LLM_TIMEOUT"
            ) from exc
        except httpx.HTTPError as exc:
            raise ExternalServiceError(
                self._redact(f"the LLM endpoint is unreachable: {type(exc).__name__}: {exc}"), code="LLM_UNAVAILABLE"
            ) from exc
        _raise_for_status(response)
        return _parse_answer(response)

    def _redact(self, text: str) -> str:
        """``text`` with the API key blanked out, should an error ever echo it."""
        return text.replace(self._key, "***") if self._key else text


def _raise_for_status(response: httpx.Response) -> None:
    """Raise the taxonomy's error for an answer that is not a success."""
    status = response.status_code
    if status < 300:
        return
    if status in (401, 403):
        raise BadInput(
            f"the LLM endpoint refused the API key (HTTP {status}): set a valid CONVEYOR_LLM_API_KEY",
            code="LLM_KEY_INVALID",
        )
    if status == 429:
        retry_after = _retry_after(response.headers)
        raise RateLimited(
            f"the LLM endpoint's rate limit was reached; retry in {retry_after.total_seconds():g} s",
            code="LLM_RATE_LIMITED",
            retry_after=retry_after,
        )
    raise ExternalServiceError(f"the LLM endpoint answered HTTP {status}", code="LLM_UNAVAILABLE")


def _retry_after(headers: httpx.Headers) -> timedelta:
    """How long the endpoint asks us to wait: ``Retry-After`` in seconds, else :data:`DEFAULT_RETRY_AFTER`."""
    return retry_after(headers.get("retry-after"), default=DEFAULT_RETRY_AFTER, most=_MAX_RETRY_AFTER)


def _parse_answer(response: httpx.Response) -> ModelAnswer:
    """The assistant message of a chat completion; :class:`ExternalServiceError` ``LLM_ANSWER_MALFORMED``."""
    try:
        message = response.json()["choices"][0]["message"]
        content = message.get("content")
        calls = tuple(
            RawToolCall(id=call["id"], name=call["function"]["name"], arguments=_arguments(call["function"]))
            for call in message.get("tool_calls") or ()
        )
        answer = ModelAnswer(content=content, tool_calls=calls)
    except (ValueError, LookupError, TypeError, AttributeError) as exc:
        # ValidationError is a ValueError: a tool call without id or arguments text is as malformed as no JSON.
        raise ExternalServiceError(
            "the LLM endpoint answered something that is not a chat completion", code="LLM_ANSWER_MALFORMED"
        ) from exc
    if not answer.tool_calls and not (answer.content or "").strip():
        raise ExternalServiceError("the LLM endpoint answered an empty message", code="LLM_ANSWER_MALFORMED")
    return answer


def _arguments(function: dict[str, Any]) -> Any:
    """A tool call's arguments as JSON text (some OpenAI-compatible servers send an object instead of its text)."""
    arguments = function["arguments"]
    return json.dumps(arguments) if isinstance(arguments, dict) else arguments


# --- the graph --------------------------------------------------------------------------------------------------


class ChatState(TypedDict, total=False):
    """The graph's state for one request."""

    request: LlmRequest
    catalog: Catalog
    answer: ModelAnswer
    turn: LlmTurn


ChatGraph = CompiledStateGraph[ChatState, Any, ChatState, ChatState]


def build_graph(client: ChatCompletionsClient) -> ChatGraph:
    """The assistant's graph: ``model`` asks the endpoint, then ``check_order`` (a tool call) or ``reply`` (text)."""

    async def model(state: ChatState) -> ChatState:
        """Ask the endpoint for the next assistant message."""
        return {"answer": await client.complete(wire_messages(state["request"]), [CREATE_ORDER_TOOL])}

    graph = StateGraph(ChatState)
    graph.add_node("model", model)
    graph.add_node("check_order", _check_order)
    graph.add_node("reply", _reply)
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", _after_model, ["check_order", "reply"])
    graph.add_edge("check_order", END)
    graph.add_edge("reply", END)
    return graph.compile()


def _after_model(state: ChatState) -> str:
    """A tool call goes to be checked; a text is the reply."""
    return "check_order" if state["answer"].tool_calls else "reply"


async def _reply(state: ChatState) -> ChatState:
    """The model's text is the reply."""
    return {"turn": LlmTurn(text=(state["answer"].content or "").strip())}


async def _check_order(state: ChatState) -> ChatState:
    """The model's first tool call, checked against the catalog; a request to correct the order when it is invalid.

    Only the first call is taken (a model that places two orders at once placed one too many); the workflow echoes
    back just that call, so the conversation the model sees stays consistent.
    """
    call = state["answer"].tool_calls[0]
    language = customer_language(state["request"])
    args, problem = parse_order(call, state["catalog"], language)
    if args is None:
        log.warning("the model's create_order call is invalid; asking the customer to correct it", problem=problem)
        return {"turn": LlmTurn(text=problem, fallback=True)}
    return {"turn": LlmTurn(tool_call=ToolCall(id=call.id, args=args))}


def parse_order(call: RawToolCall, catalog: Catalog, language: Language) -> tuple[CreateOrderArgs | None, str]:
    """The call's arguments checked against the catalog, with SKUs and sizes as the catalog spells them.

    Returns ``(args, "")``, or ``(None, text)`` with a text in ``language`` asking the customer to correct what is
    wrong: an unknown tool or product, a size not in stock for the quantity, a phone that is not Ukrainian, or
    arguments that are not the tool's JSON.
    """
    if call.name != CREATE_ORDER:
        return None, _text(language, "order_unclear")
    try:
        raw = json.loads(call.arguments)
        args = CreateOrderArgs.model_validate(raw)
    except ValidationError as exc:
        fields = {error["loc"][0] for error in exc.errors() if error["loc"]}
        return None, _text(language, "phone" if fields == {"phone"} else "order_unclear")
    except ValueError:
        return None, _text(language, "order_unclear")
    items: list[OrderItemArg] = []
    for item in args.items:
        product = catalog.by_sku(item.sku) or catalog.find(item.sku)
        if product is None:
            return None, _text(language, "unknown_product", sku=item.sku)
        size = product.size(item.size)
        if size is None or not catalog.in_stock(product.sku, size, item.quantity):
            return None, _size_problem(product, size or item.size, item.quantity, language)
        items.append(OrderItemArg(sku=product.sku, size=size, quantity=item.quantity))
    return args.model_copy(update={"items": tuple(items)}), ""


def _size_problem(product: Product, size: str, quantity: int, language: Language) -> str:
    """Why ``quantity`` × ``product`` in ``size`` cannot be sold, and which sizes can."""
    left = product.stock(size)
    in_stock = ", ".join(product.sizes_in_stock()) or _text(language, "none")
    if left > 0:
        return _text(language, "too_few", name=product.name(language), size=size, left=left, quantity=quantity)
    return _text(language, "size_unavailable", name=product.name(language), size=size, sizes=in_stock)


# --- entry point ------------------------------------------------------------------------------------------------


async def generate(
    request: LlmRequest,
    *,
    base_url: str,
    api_key: SecretStr | str | None,
    model: str,
    timeout_s: float,
    catalog: Catalog,
    http: httpx.AsyncClient | None = None,
) -> LlmTurn:
    """The assistant's next turn for ``request``: the model's text, a checked ``create_order`` call, or a fallback.

    Never raises for a timeout, an unreachable or failing endpoint or a malformed answer (a fallback apology);
    raises :class:`BadInput` ``LLM_KEY_INVALID`` for a refused key and :class:`RateLimited` for a 429.
    """
    async with ChatCompletionsClient(
        base_url=base_url, api_key=api_key, model=model, timeout_s=timeout_s, http=http
    ) as client:
        try:
            state = await build_graph(client).ainvoke({"request": request, "catalog": catalog})
        except ExternalServiceError as exc:
            log.warning("the LLM endpoint failed; answering with an apology", code=exc.code, error=exc.message)
            return LlmTurn(text=apology_text(customer_language(request)), fallback=True)
    return cast(ChatState, state)["turn"]


def wire_messages(request: LlmRequest) -> list[dict[str, Any]]:
    """The request as chat completions messages: the system prompt (catalog, summary), then the conversation."""
    system = SYSTEM_PROMPT.format(catalog=request.catalog_hint.strip(), summary=request.summary.strip() or "(nothing)")
    return [{"role": "system", "content": system}, *(_wire(message) for message in request.messages)]


def _wire(message: ChatMessage) -> dict[str, Any]:
    """One message in the chat completions shape."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": CREATE_ORDER, "arguments": call.args.model_dump_json()},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


_CYRILLIC = re.compile(r"[\u0400-\u04ff]")


def customer_language(request: LlmRequest) -> Language:
    """Ukrainian when the customer's latest message has Cyrillic letters, else English."""
    latest = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    return "uk" if _CYRILLIC.search(latest) else "en"


_TEXTS: dict[str, tuple[str, str]] = {
    "order_unclear": (
        "Sorry, I couldn't put your order together. Please send the products with their sizes and quantities, "
        "your name, phone (+380XXXXXXXXX) and delivery city once more.",
        "Вибачте, не вдалося оформити замовлення. Надішліть, будь ласка, ще раз товари з розмірами й кількістю, "
        "ваше ім'я, телефон (+380XXXXXXXXX) і місто доставки.",
    ),
    "phone": (
        "The phone number doesn't look right. Please send it as +380XXXXXXXXX or 0XXXXXXXXX.",
        "Номер телефону виглядає неправильно. Надішліть його, будь ласка, у форматі +380XXXXXXXXX або 0XXXXXXXXX.",
    ),
    "unknown_product": (
        "Sorry, we don't sell “{sku}”. Please choose from our catalog and confirm the order again.",
        "Вибачте, товару «{sku}» у нас немає. Оберіть, будь ласка, з каталогу й підтвердіть замовлення ще раз.",
    ),
    "size_unavailable": (
        "Sorry, the {name} in size {size} is not available. In stock: {sizes}. Which size would you like?",
        "Вибачте, {name} розміру {size} немає в наявності. Є: {sizes}. Який розмір обрати?",
    ),
    "too_few": (
        "Sorry, only {left} of the {name} in size {size} left, not {quantity}. How many would you like?",
        "Вибачте, {name} розміру {size} залишилось лише {left}, а не {quantity}. Скільки оформити?",
    ),
    "none": ("none", "немає"),
}


def _text(language: Language, key: str, **values: object) -> str:
    """The text ``key`` in ``language`` with ``values`` filled in."""
    english, ukrainian = _TEXTS[key]
    return (ukrainian if language == "uk" else english).format(**values)
