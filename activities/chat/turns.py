"""The model path's pure types: what the conversation workflow and the ``llm`` activity exchange about a turn.

Light (pydantic only): :class:`LlmRequest` (the summary, the recent :class:`ChatMessage`\\ s, a catalog hint) in,
:class:`LlmTurn` out — the model's text, a checked ``create_order`` :class:`ToolCall`, or a fallback text — and
:func:`tool_exchange`, the two messages the workflow appends after creating an order before asking again.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from activities.chat.assistant import MAX_QUANTITY, PHONE_PATTERN

#: Longest customer name or city the tool accepts (the local assistant's limit).
_NAME_MAX = 60


class OrderItemArg(BaseModel):
    """One line of the order the model asks for: a product by SKU, its size and how many."""

    model_config = ConfigDict(frozen=True)

    sku: str = Field(min_length=1, max_length=64)
    size: str = Field(min_length=1, max_length=16)
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class CreateOrderArgs(BaseModel):
    """The ``create_order`` tool's arguments: what, to whom (name, +380 phone) and which city to deliver to."""

    model_config = ConfigDict(frozen=True)

    items: tuple[OrderItemArg, ...] = Field(min_length=1)
    customer_name: str = Field(min_length=1, max_length=_NAME_MAX)
    phone: str = Field(pattern=PHONE_PATTERN)
    city: str = Field(min_length=1, max_length=_NAME_MAX)

    @field_validator("customer_name", "city", mode="before")
    @classmethod
    def _strip(cls, value: object) -> object:
        """Names and cities without surrounding blanks (a blank one is then refused)."""
        return value.strip() if isinstance(value, str) else value

    @field_validator("phone", mode="before")
    @classmethod
    def _international_phone(cls, value: object) -> object:
        """A Ukrainian number as models write it (``067 123 45 67``, ``+38 (067)…``) in its +380XXXXXXXXX form."""
        if not isinstance(value, str):
            return value
        digits = re.sub(r"\D", "", value)
        if not re.fullmatch(r"[\d\s().+\-]+", value.strip()):
            return value
        if len(digits) == 12 and digits.startswith("380"):
            return f"+{digits}"
        if len(digits) == 10 and digits.startswith("0") and not value.strip().startswith("+"):
            return f"+38{digits}"
        return value


class ToolCall(BaseModel):
    """A ``create_order`` call of the model, with arguments checked against the catalog."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    args: CreateOrderArgs


class ChatMessage(BaseModel):
    """One message of the conversation as the model sees it (the system prompt is added by :func:`generate`)."""

    model_config = ConfigDict(frozen=True)

    role: Literal["user", "assistant", "tool"]
    content: str = ""
    tool_call_id: str | None = None
    """For a ``tool`` message: the id of the call it answers."""
    tool_calls: tuple[ToolCall, ...] = ()
    """For an ``assistant`` message: the tool calls it made."""

    @model_validator(mode="after")
    def _tool_fields_fit_role(self) -> ChatMessage:
        """A tool message answers a call; only an assistant message makes calls."""
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id it answers")
        if self.role != "tool" and self.tool_call_id is not None:
            raise ValueError("only a tool message has a tool_call_id")
        if self.role != "assistant" and self.tool_calls:
            raise ValueError("only an assistant message makes tool calls")
        return self


class LlmRequest(BaseModel):
    """What the model is asked: the conversation's summary, its recent messages and the shop's catalog in short."""

    model_config = ConfigDict(frozen=True)

    summary: str = ""
    messages: tuple[ChatMessage, ...] = Field(min_length=1)
    catalog_hint: str = Field(description="Products, sizes in stock and prices, one per line, for the system prompt.")


class LlmTurn(BaseModel):
    """The model's answer to one request: a reply text, or a checked tool call, or a fallback text."""

    model_config = ConfigDict(frozen=True)

    text: str | None = None
    tool_call: ToolCall | None = None
    fallback: bool = False
    """True when ``text`` is ours, not the model's: it failed, or its order was invalid."""

    @model_validator(mode="after")
    def _one_answer(self) -> LlmTurn:
        """Exactly one of text and tool call; a fallback is always a text."""
        if (self.text is None) == (self.tool_call is None):
            raise ValueError("a turn is either a text or a tool call")
        if self.fallback and self.text is None:
            raise ValueError("a fallback turn carries a text")
        return self


def tool_exchange(call: ToolCall, result: str) -> tuple[ChatMessage, ChatMessage]:
    """The two messages to append before asking again: the model's tool call and the tool's ``result``."""
    return (
        ChatMessage(role="assistant", tool_calls=(call,)),
        ChatMessage(role="tool", content=result, tool_call_id=call.id),
    )
