"""ManyChat's wire formats and sending API client: External Requests in, Dynamic Blocks and ``sendContent`` out.

Incoming, a ManyChat flow's External Request action POSTs ``{"subscriber_id", "text", "message_id"}`` (the body
is configured in the flow; ids may arrive as numbers or strings) with ``Authorization: Bearer <secret>``
(:func:`check_bearer`), and waits for the answer: a `Dynamic Block
<https://github.com/manychat/dynamic_block_docs>`_, ``{"version": "v2", "content": {"type": <channel>,
"messages": [{"type": "text", "text": …}]}}`` (:func:`dynamic_block`). ManyChat shows at most
:data:`MAX_MESSAGES` messages of a block.

Late, a reply not ready in time goes through ManyChat's API, ``POST {api_url}/fb/sending/sendContent`` with
``{"subscriber_id", "data": <dynamic block>, "message_tag"?}`` and the API token as a bearer
(:class:`ManyChatClient`). ManyChat answers ``{"status": "success"}`` or ``{"status": "error", "message": …,
"details": …}``; the answers map onto the error taxonomy: 429 → :class:`RateLimited` (``Retry-After``, else
:data:`DEFAULT_RETRY_AFTER`); 401/403 → permanent ``MANYCHAT_TOKEN_INVALID``; other 4xx → permanent
``MANYCHAT_REJECTED``; 5xx, timeouts and network failures → retryable ``MANYCHAT_UNAVAILABLE``.

**Channels.** ``content.type`` names the channel for Telegram, Instagram and WhatsApp; Messenger (``facebook``) is
ManyChat's default and carries no ``type``. Each channel has its own text limit (:data:`TEXT_LIMITS`).

**Overflow.** Texts longer than the channel's limit are split (:func:`~activities.chat.telegram.split_text`);
if that gives more than ten messages, the first nine are kept and the tenth holds as much of the rest as fits,
ending in ``…``: the block stays valid and a reader sees it was cut. (Joining the overflow into the last
message would break the per-message limit.) A chat reply never comes near ten full messages.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from datetime import timedelta
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from activities.chat.telegram import check_text, split_text
from conveyor.errors import BadInput, ExternalServiceError, RateLimited, Unauthorized
from conveyor.outbound import OutboundClient, retry_after

MANYCHAT_API_URL = "https://api.manychat.com"
SEND_CONTENT_PATH = "/fb/sending/sendContent"
PAGE_INFO_PATH = "/fb/page/getInfo"
DYNAMIC_BLOCK_VERSION = "v2"
#: The most messages ManyChat shows of one Dynamic Block.
MAX_MESSAGES = 10
#: The longest text one message may carry, by channel.
TEXT_LIMITS: dict[str, int] = {"telegram": 4096, "whatsapp": 4096, "facebook": 2000, "instagram": 1000}
#: What the synchronous answer says when the reply is not ready in time (the reply follows through the API).
HOLDING_TEXT = "One moment, I'm preparing your answer…"
#: Used when ManyChat rate-limits without ``Retry-After`` (its limits are per second).
DEFAULT_RETRY_AFTER = timedelta(seconds=2)
_MAX_RETRY_AFTER = timedelta(hours=1)
#: Longest subscriber or message id accepted (they end up in workflow ids).
_MAX_ID_LENGTH = 128


class ManyChatRequest(BaseModel):
    """The body of a ManyChat External Request: who wrote, what, and the message's id."""

    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)

    subscriber_id: str
    text: str
    message_id: str

    @field_validator("subscriber_id", "message_id")
    @classmethod
    def _an_id(cls, value: str) -> str:
        """Ids are non-empty, bounded and free of whitespace."""
        value = value.strip()
        if not value or len(value) > _MAX_ID_LENGTH or any(ch.isspace() for ch in value):
            raise ValueError(f"must be 1 to {_MAX_ID_LENGTH} characters without spaces")
        return value


def parse_request(body: bytes) -> ManyChatRequest:
    """The :class:`ManyChatRequest` a body holds, its text checked.

    :class:`BadInput` ``MALFORMED_JSON``, ``INVALID_REQUEST``, ``EMPTY_TEXT`` or ``TEXT_TOO_LONG``.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput("the ManyChat request is not valid JSON", code="MALFORMED_JSON") from exc
    if not isinstance(data, dict):
        raise BadInput("a ManyChat request must be a JSON object", code="INVALID_REQUEST")
    try:
        request = ManyChatRequest.model_validate(data)
    except ValidationError as exc:
        fields = sorted({".".join(str(part) for part in error["loc"]) for error in exc.errors()})
        raise BadInput(
            f"not a ManyChat request: invalid {', '.join(fields)}", code="INVALID_REQUEST", details={"fields": fields}
        ) from None
    return request.model_copy(update={"text": check_text(request.text)})


def check_bearer(header: str | None, expected: str) -> None:
    """Raise :class:`Unauthorized` unless ``header`` is ``Bearer <expected>`` (constant-time comparison).

    The scheme is case-insensitive, as in RFC 6750; an empty ``expected`` refuses everything.
    """
    scheme, _, token = (header or "").strip().partition(" ")
    if not expected or scheme.lower() != "bearer":
        raise Unauthorized("the ManyChat bearer token is missing or wrong", code="MANYCHAT_SECRET_INVALID")
    if not hmac.compare_digest(expected.encode(), token.strip().encode("utf-8", "surrogateescape")):
        raise Unauthorized("the ManyChat bearer token is missing or wrong", code="MANYCHAT_SECRET_INVALID")


def dedupe_key(subscriber_id: str, message_id: str) -> str:
    """The key under which one ManyChat message is processed once, equal for every redelivery of it."""
    return f"manychat:{subscriber_id}:{message_id}"


def _text_limit(channel: str) -> int:
    """The channel's text limit; :class:`BadInput` ``UNKNOWN_CHANNEL`` for a channel ManyChat cannot send to."""
    try:
        return TEXT_LIMITS[channel]
    except KeyError:
        raise BadInput(
            f"ManyChat cannot send to channel {channel[:32]!r}; use one of {', '.join(sorted(TEXT_LIMITS))}",
            code="UNKNOWN_CHANNEL",
        ) from None


def message_texts(texts: list[str], channel: str = "telegram") -> list[str]:
    """The texts of the (at most ten) messages ``texts`` become on ``channel``: split, overflow truncated."""
    limit = _text_limit(channel)
    parts = [part for text in texts for part in split_text(text, limit)]
    if not parts:
        raise BadInput("a ManyChat reply needs some text", code="EMPTY_TEXT")
    if len(parts) <= MAX_MESSAGES:
        return parts
    rest = "\n\n".join(parts[MAX_MESSAGES - 1 :])
    return [*parts[: MAX_MESSAGES - 1], rest[: limit - 1].rstrip() + "…"]


def _content(texts: list[str], channel: str) -> dict[str, Any]:
    """A Dynamic Block's ``content``: one text message per part, typed by channel (none for Messenger)."""
    content: dict[str, Any] = {}
    if channel != "facebook":
        content["type"] = channel
    content["messages"] = [{"type": "text", "text": text} for text in message_texts(texts, channel)]
    return content


def dynamic_block(texts: list[str], channel: str = "telegram") -> dict[str, Any]:
    """The Dynamic Block (v2) that shows ``texts`` on ``channel``: at most ten text messages, in order."""
    return {"version": DYNAMIC_BLOCK_VERSION, "content": _content(texts, channel)}


def holding_block(text: str = HOLDING_TEXT, channel: str = "telegram") -> dict[str, Any]:
    """The Dynamic Block answered when the reply is not ready in time: one short message."""
    return dynamic_block([text], channel)


def _subscriber(subscriber_id: str | int) -> int | str:
    """The subscriber id as ManyChat's API types it (an integer) when it is one, else as given."""
    text = str(subscriber_id).strip()
    if not text or len(text) > _MAX_ID_LENGTH:
        raise BadInput("the ManyChat subscriber id is empty or too long", code="INVALID_SUBSCRIBER_ID")
    return int(text) if text.isascii() and text.isdigit() else text


class ManyChatClient(OutboundClient):
    """Sends content to a subscriber through ManyChat's API with the account's API token."""

    def __init__(
        self,
        token: str,
        *,
        api_url: str = MANYCHAT_API_URL,
        timeout_s: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if not token.strip():
            raise BadInput("the ManyChat API token is empty", code="MANYCHAT_TOKEN_INVALID")
        self._token = token.strip()
        self._api_url = api_url.rstrip("/")
        super().__init__(timeout_s=timeout_s, http=http)

    async def send_content(
        self,
        subscriber_id: str | int,
        texts: list[str],
        channel: str = "telegram",
        *,
        message_tag: str | None = None,
    ) -> None:
        """Send ``texts`` to the subscriber as one Dynamic Block (``sendContent``).

        ``message_tag`` is only needed on Messenger outside its 24-hour window; a late reply is well inside it,
        so none is sent unless asked for.
        """
        body: dict[str, Any] = {"subscriber_id": _subscriber(subscriber_id), "data": dynamic_block(texts, channel)}
        if message_tag is not None:
            body["message_tag"] = message_tag
        _check_answer(await self._request("POST", SEND_CONTENT_PATH, body), self._token)

    async def page_info(self) -> None:
        """The connected page (``getInfo``): a cheap call that proves the token and the API work."""
        _check_answer(await self._request("GET", PAGE_INFO_PATH), self._token)

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._http.request(
                    method, self._api_url + path, json=body, headers=headers, timeout=self._timeout_s
                )
        except (TimeoutError, httpx.TimeoutException):
            raise ExternalServiceError(
                f"ManyChat did not answer within {self._timeout_s:g} s", code=_UNAVAILABLE
            ) from None
        except httpx.HTTPError as exc:
            raise ExternalServiceError(f"ManyChat unreachable: {type(exc).__name__}", code=_UNAVAILABLE) from None


_UNAVAILABLE = "MANYCHAT_UNAVAILABLE"


def _check_answer(response: httpx.Response, token: str) -> None:
    """Return for ``{"status": "success"}``; raise the taxonomy's error for anything else."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        payload = {}
    status = response.status_code
    message = str(payload.get("message") or f"HTTP {status}").replace(token, "***")[:200]
    if status < 300 and payload.get("status") == "success":
        return
    if status < 300 and payload.get("status") == "error":
        raise BadInput(f"ManyChat refused the content: {message}", code="MANYCHAT_REJECTED")
    if status == 429:
        retry_after = _retry_after(response.headers.get("retry-after"))
        raise RateLimited(
            f"ManyChat rate limit reached; retry in {retry_after.total_seconds():g} s",
            code="MANYCHAT_RATE_LIMITED",
            retry_after=retry_after,
        )
    if status in (401, 403):
        raise BadInput(f"ManyChat refused the API token (HTTP {status})", code="MANYCHAT_TOKEN_INVALID")
    if 400 <= status < 500:
        raise BadInput(f"ManyChat refused the content (HTTP {status}): {message}", code="MANYCHAT_REJECTED")
    raise ExternalServiceError(f"ManyChat answered HTTP {status}", code=_UNAVAILABLE)


def _retry_after(raw: str | None) -> timedelta:
    """``Retry-After`` in seconds, else :data:`DEFAULT_RETRY_AFTER`, bounded to an hour."""
    return retry_after(raw, default=DEFAULT_RETRY_AFTER, most=_MAX_RETRY_AFTER)
