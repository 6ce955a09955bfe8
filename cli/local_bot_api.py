"""A local stand-in for the Telegram Bot API, for the demo: it answers ``getMe``, ``sendMessage`` and
``sendChatAction`` for one bot token the way the Bot API does, and records what was sent.

The workers send replies to ``{CONVEYOR_TELEGRAM_API_URL}/bot{token}/sendMessage``; pointing that URL here lets a
conversation run end to end on one machine without Telegram. Answers follow the Bot API's shape
(``{"ok": true, "result": …}``, or ``{"ok": false, "error_code", "description"}``): a wrong token is 401, an
unknown method 404, an empty or over-long text 400. Bodies may be JSON or form-encoded, as the Bot API accepts.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, get_args
from urllib.parse import parse_qsl, urlsplit

from activities.chat.telegram import MAX_TEXT_LENGTH, ChatAction

#: Largest request body read; the Bot API's own limit for a text message is far below it.
MAX_BODY_BYTES = 1_000_000
#: The ``sendChatAction`` actions the Bot API accepts (the client's own list).
CHAT_ACTIONS = frozenset(get_args(ChatAction))


@dataclass(frozen=True)
class SentMessage:
    """A message the bot sent: to which chat, what, in reply to which message, and the id it got."""

    chat_id: str
    text: str
    reply_to: int | None
    message_id: int


class _Server(ThreadingHTTPServer):
    """Serves one bot's Bot API methods and keeps what it was asked to send."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], token: str) -> None:
        super().__init__(address, _Handler)
        self.token = token
        self.lock = threading.Lock()
        self.sent: list[SentMessage] = []
        self.actions: list[tuple[str, str]] = []
        self.next_message_id = 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients hanging up mid-answer; report anything else."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _error(status: int, description: str) -> tuple[int, dict[str, Any]]:
    return status, {"ok": False, "error_code": status, "description": description}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 15

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the demo owns the terminal."""

    def do_GET(self) -> None:
        """Bot API methods answer GET with query parameters too."""
        self._answer(*self._call(dict(parse_qsl(urlsplit(self.path).query))))

    def do_POST(self) -> None:
        """A method call with a JSON or form body."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._answer(*_error(413, "Request Entity Too Large"))
            return
        raw = self.rfile.read(length) if length else b""
        kind = self.headers.get("Content-Type", "").partition(";")[0].strip()
        try:
            if kind == "application/json":
                params = json.loads(raw or b"{}")
            else:
                params = dict(parse_qsl(raw.decode()))
        except (ValueError, UnicodeDecodeError):
            self._answer(*_error(400, "Bad Request: can't parse request body"))
            return
        if not isinstance(params, dict):
            self._answer(*_error(400, "Bad Request: expected an object"))
            return
        self._answer(*self._call(params))

    def _call(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        token, _, method = urlsplit(self.path).path.removeprefix("/bot").partition("/")
        if not urlsplit(self.path).path.startswith("/bot") or not method:
            return _error(404, "Not Found")
        if token != self.server.token:
            return _error(401, "Unauthorized")
        if method == "getMe":
            bot_id = self.server.token.partition(":")[0]
            bot = {"id": int(bot_id) if bot_id.isdigit() else 0, "is_bot": True, "first_name": "Conveyor demo"}
            return 200, {"ok": True, "result": {**bot, "username": "conveyor_demo_bot"}}
        chat_id = params.get("chat_id")
        if isinstance(chat_id, bool) or not isinstance(chat_id, int | str) or str(chat_id).strip() == "":
            return _error(400, "Bad Request: chat_id is empty")
        if method == "sendMessage":
            return self._send_message(str(chat_id), params)
        if method == "sendChatAction":
            if params.get("action") not in CHAT_ACTIONS:
                return _error(400, "Bad Request: wrong parameter action in request")
            with self.server.lock:
                self.server.actions.append((str(chat_id), str(params["action"])))
            return 200, {"ok": True, "result": True}
        return _error(404, "Not Found")

    def _send_message(self, chat_id: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT_LENGTH:
            return _error(400, "Bad Request: message is too long")
        reply = params.get("reply_parameters")
        if isinstance(reply, str):  # a form body carries it as JSON text
            try:
                reply = json.loads(reply)
            except ValueError:
                return _error(400, "Bad Request: can't parse reply parameters JSON object")
        reply_to = reply.get("message_id") if isinstance(reply, dict) else params.get("reply_to_message_id")
        with self.server.lock:
            message_id = self.server.next_message_id
            self.server.next_message_id += 1
            self.server.sent.append(
                SentMessage(chat_id, text, reply_to if isinstance(reply_to, int) else None, message_id)
            )
        chat = {"id": int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id, "type": "private"}
        result = {"message_id": message_id, "date": int(time.time()), "chat": chat, "text": text}
        return 200, {"ok": True, "result": result}

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@dataclass
class LocalBotApi:
    """A running local Bot API for one bot token."""

    url: str
    """``http://HOST:PORT``: the value for ``CONVEYOR_TELEGRAM_API_URL``."""
    token: str
    _server: _Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def sent_to(self, chat_id: int | str) -> list[SentMessage]:
        """The messages sent to ``chat_id`` so far, in order."""
        with self._server.lock:
            return [m for m in self._server.sent if m.chat_id == str(chat_id)]

    def actions_in(self, chat_id: int | str) -> list[str]:
        """The chat actions (``typing``…) shown in ``chat_id`` so far."""
        with self._server.lock:
            return [action for chat, action in self._server.actions if chat == str(chat_id)]

    def stop(self) -> None:
        """Stop serving and free the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


def start_local_bot_api(token: str, host: str = "127.0.0.1", port: int = 0) -> LocalBotApi:
    """Serve the Bot API for ``token`` on ``host:port`` (0 picks a free port) from a daemon thread.

    Raises ``OSError`` when the port is taken.
    """
    server = _Server((host, port), token)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.name = "local-bot-api"
    thread.start()
    bound = int(server.socket.getsockname()[1])
    return LocalBotApi(url=f"http://{host}:{bound}", token=token, _server=server, _thread=thread)


@contextmanager
def local_bot_api(token: str, host: str = "127.0.0.1", port: int = 0) -> Iterator[LocalBotApi]:
    """The local Bot API, served for the duration of the block."""
    api = start_local_bot_api(token, host, port)
    try:
        yield api
    finally:
        api.stop()
