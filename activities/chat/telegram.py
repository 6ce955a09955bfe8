"""Telegram's wire formats and Bot API client: webhook updates in, ``sendMessage``/``sendChatAction`` out.

Incoming, Telegram POSTs an `Update <https://core.telegram.org/bots/api#update>`_ to the webhook with the
``secret_token`` given to ``setWebhook`` in ``X-Telegram-Bot-Api-Secret-Token`` (:func:`check_secret`). It repeats
any update not answered 2xx, so updates the bot has nothing to say to (edits, joins, stickers, channel posts,
button presses) are :class:`Ignored`, not refused; only a text message in a private chat or a group is
:class:`Incoming` (:func:`classify`).

Outgoing, :class:`TelegramClient` calls ``{api_url}/bot{token}/sendMessage``, splitting texts longer than
Telegram's 4,096 characters (:func:`split_text`), and maps the Bot API's answers
(``{"ok": false, "error_code": …, "description": …, "parameters": {"retry_after": …}}``) onto the error taxonomy:
429 → :class:`RateLimited` after ``parameters.retry_after``; 400 "chat not found" → permanent ``CHAT_NOT_FOUND``;
other 400s → permanent ``TELEGRAM_BAD_REQUEST`` (``CHAT_MIGRATED`` when the group became a supergroup);
401/404 → permanent ``TELEGRAM_TOKEN_INVALID``; 403 → permanent ``BOT_BLOCKED``; 5xx, timeouts and network
failures → retryable ``TELEGRAM_UNAVAILABLE``. The bot token is part of every URL, so no error message, detail or
cause ever carries a URL or an httpx exception's text.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from datetime import timedelta
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conveyor.errors import BadInput, ExternalServiceError, RateLimited, Unauthorized
from conveyor.outbound import OutboundClient, retry_after

TELEGRAM_API_URL = "https://api.telegram.org"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: The longest text one message may carry (Bot API, ``sendMessage``: "1-4096 characters").
MAX_TEXT_LENGTH = 4096
#: Chats the bot converses in; ``channel`` is known but only ever ignored.
CONVERSATION_CHAT_TYPES: frozenset[str] = frozenset({"private", "group", "supergroup"})
KNOWN_CHAT_TYPES: frozenset[str] = CONVERSATION_CHAT_TYPES | {"channel"}
#: The ``sendChatAction`` actions the Bot API accepts.
ChatAction = Literal[
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
]
#: Used when a 429 carries no ``parameters.retry_after`` (Telegram always sends one; a proxy might not).
DEFAULT_RETRY_AFTER = timedelta(seconds=5)
#: Never wait longer than a day, whatever Telegram says (flood waits can be hours).
_MAX_RETRY_AFTER = timedelta(days=1)


class User(BaseModel):
    """The sender of a message (Bot API ``User``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    is_bot: bool = False
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


class Chat(BaseModel):
    """The chat a message belongs to (Bot API ``Chat``); ``type`` is kept as sent so unknown types can be told."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    type: str
    title: str | None = None
    username: str | None = None


class Message(BaseModel):
    """A message (Bot API ``Message``): the fields the chat pipeline reads, the rest ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    message_id: int
    date: int
    chat: Chat
    from_user: User | None = Field(default=None, alias="from")
    text: str | None = None
    reply_to_message: Message | None = None
    new_chat_members: list[User] | None = None
    left_chat_member: User | None = None
    sticker: dict[str, Any] | None = None

    @property
    def reply_to(self) -> int | None:
        """The id of the message this one replies to, if any."""
        return self.reply_to_message.message_id if self.reply_to_message is not None else None


class Update(BaseModel):
    """An incoming update (Bot API ``Update``): exactly one of its optional fields is set."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    update_id: int
    message: Message | None = None
    edited_message: Message | None = None
    channel_post: Message | None = None
    edited_channel_post: Message | None = None
    callback_query: dict[str, Any] | None = None
    my_chat_member: dict[str, Any] | None = None
    chat_member: dict[str, Any] | None = None


class Incoming(BaseModel):
    """A text message the conversation answers: where it came from, who sent it and its checked text."""

    model_config = ConfigDict(frozen=True)

    update_id: int
    chat_id: int
    message_id: int
    chat_type: str
    text: str
    user_id: int | None = None
    user_name: str | None = None
    language_code: str | None = None


class Ignored(BaseModel):
    """An update accepted and dropped (Telegram repeats anything not answered 2xx), with why."""

    model_config = ConfigDict(frozen=True)

    update_id: int
    reason: str


def parse_update(body: bytes) -> Update:
    """The :class:`Update` a webhook body holds; :class:`BadInput` ``MALFORMED_JSON`` or ``INVALID_UPDATE``."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput("the Telegram update is not valid JSON", code="MALFORMED_JSON") from exc
    if not isinstance(data, dict):
        raise BadInput("a Telegram update must be a JSON object", code="INVALID_UPDATE")
    try:
        return Update.model_validate(data)
    except ValidationError as exc:
        fields = sorted({".".join(str(part) for part in error["loc"]) for error in exc.errors()})
        raise BadInput(
            f"not a Telegram update: invalid {', '.join(fields[:5])}", code="INVALID_UPDATE", details={"fields": fields}
        ) from None


def _user_name(user: User | None) -> str | None:
    """How to call the sender: ``@username``, else first and last name, else nothing."""
    if user is None:
        return None
    if user.username:
        return f"@{user.username}"
    name = " ".join(part for part in (user.first_name, user.last_name) if part).strip()
    return name or None


def classify(update: Update) -> Incoming | Ignored:
    """Whether ``update`` is a text message to answer or something to accept and ignore.

    Raises :class:`BadInput` ``UNKNOWN_CHAT_TYPE`` for a message in a chat type the Bot API does not define, and
    ``EMPTY_TEXT``/``TEXT_TOO_LONG`` (:func:`check_text`) for a text no Telegram client could have sent.
    """
    ignored = _ignored_kind(update)
    if ignored is not None:
        return Ignored(update_id=update.update_id, reason=ignored)
    message = update.message
    assert message is not None  # _ignored_kind ignores every update without one
    if message.chat.type not in KNOWN_CHAT_TYPES:
        raise BadInput(
            f"update {update.update_id} is from an unknown chat type {message.chat.type[:32]!r}",
            code="UNKNOWN_CHAT_TYPE",
            details={"update_id": update.update_id},
        )
    if message.chat.type not in CONVERSATION_CHAT_TYPES:
        return Ignored(update_id=update.update_id, reason=f"message in a {message.chat.type}")
    if message.new_chat_members or message.left_chat_member is not None:
        return Ignored(update_id=update.update_id, reason="chat members changed")
    if message.text is None:
        return Ignored(update_id=update.update_id, reason="not a text message")
    if message.from_user is not None and message.from_user.is_bot:
        return Ignored(update_id=update.update_id, reason="sent by a bot")
    sender = message.from_user
    return Incoming(
        update_id=update.update_id,
        chat_id=message.chat.id,
        message_id=message.message_id,
        chat_type=message.chat.type,
        text=check_text(message.text),
        user_id=sender.id if sender is not None else None,
        user_name=_user_name(sender),
        language_code=sender.language_code if sender is not None else None,
    )


def _ignored_kind(update: Update) -> str | None:
    """Why an update that is not a new message is ignored, or ``None`` for a new message."""
    if update.message is not None:
        return None
    if update.edited_message is not None:
        return "edited message"
    if update.channel_post is not None or update.edited_channel_post is not None:
        return "channel post"
    if update.callback_query is not None:
        return "callback query"
    if update.my_chat_member is not None or update.chat_member is not None:
        return "chat member update"
    return "unsupported update"


def check_secret(given: str | None, expected: str) -> None:
    """Raise :class:`Unauthorized` unless ``given`` is the webhook's secret token (constant-time comparison).

    An empty ``expected`` refuses everything: a webhook without a secret is misconfigured, not open.
    """
    if not expected or given is None:
        raise Unauthorized("the Telegram webhook secret token is missing or wrong", code="TELEGRAM_SECRET_INVALID")
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape")):
        raise Unauthorized("the Telegram webhook secret token is missing or wrong", code="TELEGRAM_SECRET_INVALID")


def check_text(text: str) -> str:
    """``text`` without surrounding whitespace; :class:`BadInput` ``EMPTY_TEXT`` or ``TEXT_TOO_LONG`` (> 4,096)."""
    if len(text) > MAX_TEXT_LENGTH:
        raise BadInput(
            f"the message has {len(text)} characters; Telegram allows {MAX_TEXT_LENGTH}",
            code="TEXT_TOO_LONG",
            details={"length": len(text), "limit": MAX_TEXT_LENGTH},
        )
    stripped = text.strip()
    if not stripped:
        raise BadInput("the message has no text", code="EMPTY_TEXT")
    return stripped


def dedupe_key(chat_id: int, message_id: int) -> str:
    """The key under which one Telegram message is processed once, equal for every redelivery of it.

    ``message_id`` is unique within a chat; ``update_id`` is deliberately left out: it names a delivery, and an
    edit of the same message arrives under a new one.
    """
    return f"telegram:{chat_id}:{message_id}"


# Split points, best first. Each pattern matches the whitespace dropped at the split; newline-based ones stop at
# the newline so the next part keeps its indentation.
_PARAGRAPH = re.compile(r"[^\S\n]*\n(?:[^\S\n]*\n)+")
_LINE = re.compile(r"[^\S\n]*\n")
_SENTENCE = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'»”)\]]))[^\S\n]+")
_WORD = re.compile(r"\s+")
_BOUNDARIES = (_PARAGRAPH, _LINE, _SENTENCE, _WORD)


def _split_point(text: str, limit: int) -> tuple[int, int]:
    """Where to cut ``text`` (longer than ``limit``): the dropped separator's ``(start, end)``.

    A boundary in the second half of the window wins over a better kind of boundary earlier on, so parts are not
    needlessly short; without any boundary the text is cut hard at ``limit``.
    """
    window = text[: limit + 1]
    for minimum in (max(limit // 2, 1), 1):
        for pattern in _BOUNDARIES:
            starts = [m.start() for m in pattern.finditer(window) if minimum <= m.start() <= limit]
            if starts:
                found = pattern.match(text, starts[-1])
                assert found is not None  # it matched there in the window
                return found.start(), found.end()
    return limit, limit


def split_text(text: str, limit: int = MAX_TEXT_LENGTH) -> list[str]:
    """``text`` as parts of at most ``limit`` characters, cut at paragraph, line, sentence or word boundaries.

    Nothing is lost or reordered except the whitespace cut on (and a whitespace-only tail); a word longer than
    ``limit`` is cut hard. Whitespace-only text gives no parts.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        start, end = _split_point(rest, limit)
        if rest[:start].strip():  # blank only when a hard cut falls in a long run of leading whitespace
            parts.append(rest[:start])
        rest = rest[end:]
    if rest.strip():
        parts.append(rest)
    return parts


class TelegramClient(OutboundClient):
    """Sends messages and chat actions through the Telegram Bot API (or a self-hosted Bot API server)."""

    def __init__(
        self,
        token: str,
        *,
        api_url: str = TELEGRAM_API_URL,
        timeout_s: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if not token.strip() or "/" in token:
            raise BadInput("the Telegram bot token is empty or malformed", code="TELEGRAM_TOKEN_INVALID")
        self._token = token.strip()
        self._api_url = api_url.rstrip("/")
        super().__init__(timeout_s=timeout_s, http=http)

    async def send_message(self, chat_id: int | str, text: str, reply_to: int | None = None) -> list[int]:
        """Send ``text`` (split when over 4,096 characters) in order; the ids of the messages sent.

        Only the first part replies to ``reply_to``; it is still sent if that message is gone. A failure after
        some parts were sent carries their ids in ``details["sent_message_ids"]``.
        """
        parts = split_text(text)
        if not parts:
            raise BadInput("a Telegram message needs some text", code="EMPTY_TEXT")
        sent: list[int] = []
        for index, part in enumerate(parts):
            body: dict[str, Any] = {"chat_id": chat_id, "text": part}
            if reply_to is not None and index == 0:
                body["reply_parameters"] = {"message_id": reply_to, "allow_sending_without_reply": True}
            try:
                result = await self._call("sendMessage", body)
            except (BadInput, RateLimited, ExternalServiceError) as exc:
                if sent:
                    exc.details = {**exc.details, "sent_message_ids": list(sent)}
                raise
            message_id = result.get("message_id") if isinstance(result, dict) else None
            if not isinstance(message_id, int):
                raise ExternalServiceError("Telegram answered sendMessage without a message id", code=_UNAVAILABLE)
            sent.append(message_id)
        return sent

    async def get_me(self) -> dict[str, Any]:
        """The bot itself (``getMe``): a cheap call that proves the token and the Bot API work."""
        found = await self._call("getMe", {})
        if not isinstance(found, dict):
            raise ExternalServiceError("Telegram answered getMe without the bot", code=_UNAVAILABLE)
        return found

    async def send_chat_action(self, chat_id: int | str, action: ChatAction = "typing") -> None:
        """Show ``action`` (``typing``…) in the chat until the next message or for about five seconds."""
        await self._call("sendChatAction", {"chat_id": chat_id, "action": action})

    async def _call(self, method: str, body: dict[str, Any]) -> Any:
        """POST ``body`` to a Bot API method and return its ``result``, or raise the taxonomy's error."""
        url = f"{self._api_url}/bot{self._token}/{method}"
        try:
            # httpx's timeout bounds each phase; this bounds the whole exchange (a server dripping bytes).
            async with asyncio.timeout(self._timeout_s):
                response = await self._http.post(url, json=body, timeout=self._timeout_s)
        except (TimeoutError, httpx.TimeoutException):
            raise ExternalServiceError(
                f"Telegram did not answer {method} within {self._timeout_s:g} s", code=_UNAVAILABLE
            ) from None
        except httpx.HTTPError as exc:
            # httpx's message names the URL, and so the token: only the exception's type leaves.
            raise ExternalServiceError(f"Telegram unreachable: {type(exc).__name__}", code=_UNAVAILABLE) from None
        return _result(response, method, self._token)


_UNAVAILABLE = "TELEGRAM_UNAVAILABLE"


def _result(response: httpx.Response, method: str, token: str) -> Any:
    """The ``result`` of a Bot API answer, or the taxonomy's error for a failed one."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        payload = {}
    status = response.status_code
    if status < 300 and payload.get("ok") is True:
        return payload.get("result")
    if status < 300:  # 2xx with ok=false: Telegram's error_code says what failed
        code = payload.get("error_code")
        status = code if isinstance(code, int) and code >= 400 else 502
    description = str(payload.get("description") or f"HTTP {status}").replace(token, "***")[:200]
    raw_parameters = payload.get("parameters")
    parameters: dict[str, Any] = raw_parameters if isinstance(raw_parameters, dict) else {}
    if status == 429:
        retry_after = _retry_after(parameters.get("retry_after"))
        raise RateLimited(
            f"Telegram rate limit reached on {method}; retry in {retry_after.total_seconds():g} s",
            code="TELEGRAM_RATE_LIMITED",
            retry_after=retry_after,
        )
    if status == 400 and "chat not found" in description.lower():
        raise BadInput(f"Telegram {method}: {description}", code="CHAT_NOT_FOUND")
    if status == 400 and isinstance(parameters.get("migrate_to_chat_id"), int):
        raise BadInput(
            f"Telegram {method}: the group became a supergroup",
            code="CHAT_MIGRATED",
            details={"migrate_to_chat_id": parameters["migrate_to_chat_id"]},
        )
    if status in (401, 404):
        raise BadInput(
            f"Telegram refused the bot token (HTTP {status}): it is invalid or revoked", code="TELEGRAM_TOKEN_INVALID"
        )
    if status == 403:
        raise BadInput(f"Telegram {method}: {description}", code="BOT_BLOCKED")
    if status >= 500:
        raise ExternalServiceError(f"Telegram answered {method} with HTTP {status}", code=_UNAVAILABLE)
    if 400 <= status < 500:
        raise BadInput(f"Telegram {method}: {description}", code="TELEGRAM_BAD_REQUEST")
    raise ExternalServiceError(f"Telegram answered {method} with HTTP {status}", code=_UNAVAILABLE)


def _retry_after(raw: Any) -> timedelta:
    """How long Telegram asks us to wait (``parameters.retry_after`` seconds), bounded to a day."""
    return retry_after(raw, default=DEFAULT_RETRY_AFTER, most=_MAX_RETRY_AFTER)
