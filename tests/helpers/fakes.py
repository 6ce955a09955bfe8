"""Fake HTTP services for tests: a generic recording server, a stateful Linear GraphQL API, an OpenAI endpoint,
HubSpot's CRM v3 deals API."""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

Response = tuple[int, dict[str, str], bytes]
Handler = Callable[["Recorded"], Response]


@dataclass
class Recorded:
    """One request the fake server received (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """A handler answer carrying ``payload`` as JSON."""
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()


class _QuietServer(ThreadingHTTPServer):
    """A threaded server that says nothing when a client hangs up before its answer (a client timeout test)."""

    daemon_threads = True

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FakeHttpServer:
    """A threaded HTTP server on 127.0.0.1 that records every request and answers through ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._thread: threading.Thread | None = None
        # Port 0: the kernel picks a free port, so parallel tests never collide.
        self._server = _QuietServer(("127.0.0.1", 0), self._request_handler_class())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[Recorded]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def start(self) -> FakeHttpServer:
        """Serve in a daemon thread."""
        if self._thread is None:
            # A short poll interval keeps stop() (which waits for the next poll) from costing half a second per test.
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-http", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeHttpServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _record(self, recorded: Recorded) -> Response:
        with self._lock:
            self._requests.append(recorded)
        try:
            return self._handler(recorded)
        except Exception as exc:  # a broken test handler must show up as an answer, not a hung client
            return 500, {"Content-Type": "text/plain"}, f"fake handler failed: {exc!r}".encode()

    def _request_handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, out_headers, out_body = fake._record(Recorded(self.command, self.path, headers, body))
                self.send_response(status)
                for name, value in out_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(out_body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out_body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output quiet."""

        return _Handler


class FakeService:
    """A fake of an outside service served by a :class:`FakeHttpServer` (``self.server``): start, stop, ``with``."""

    server: FakeHttpServer

    def start(self) -> Self:
        """Serve in a daemon thread."""
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _error(message: str, type_: str, **extensions: Any) -> dict[str, Any]:
    """A Linear-style GraphQL error."""
    return {"message": message, "extensions": {"type": type_, **extensions}}


class FakeLinear(FakeService):
    """A stateful fake of Linear's GraphQL endpoint that checks requests like the real API does."""

    def __init__(
        self,
        *,
        api_key: str = "lin_api_fake_key_0123456789",
        team_id: str = "4b6f0e2a-7d1c-4a8e-9d2f-1c3b5a7e9f00",
        team_key: str = "QA",
        workspace: str = "acme",
    ) -> None:
        self.api_key = api_key
        self.team_id = team_id
        self.team_key = team_key
        self.workspace = workspace
        self._lock = threading.Lock()
        self._issues: dict[str, dict[str, Any]] = {}
        self._counter = 0
        self._failures: list[Response] = []
        self._lost_answers = 0
        self.server = FakeHttpServer(self._handle)

    @property
    def url(self) -> str:
        """The GraphQL endpoint to give the client as ``api_url``."""
        return f"{self.server.url}/graphql"

    @property
    def requests(self) -> list[Recorded]:
        """Every request received so far."""
        return self.server.requests

    @property
    def issues(self) -> dict[str, dict[str, Any]]:
        """A snapshot of the stored issues by id."""
        with self._lock:
            return {key: dict(value) for key, value in self._issues.items()}

    def fail_next(self, count: int = 1, *, status: int = 500, retry_after: int = 2) -> None:
        """Answer the next ``count`` requests with ``status`` (429s carry ``Retry-After``) without handling them."""
        if status == 429:
            answer = json_response(
                429,
                {"errors": [_error("Rate limit exceeded", "ratelimited", code="RATELIMITED", userError=True)]},
                {"Retry-After": str(retry_after)},
            )
        else:
            answer = json_response(status, {"errors": [_error("Internal server error", "internal error")]})
        with self._lock:
            self._failures.extend([answer] * count)

    def lose_next_answers(self, count: int = 1) -> None:
        """Handle the next ``count`` requests but answer 502, as if the response were lost on the way."""
        with self._lock:
            self._lost_answers += count

    def _handle(self, request: Recorded) -> Response:
        if request.path != "/graphql":
            return json_response(404, {"errors": [_error("Not found", "other")]})
        if request.method != "POST":
            return json_response(405, {"errors": [_error("Only POST is supported", "invalid input")]})
        with self._lock:
            if self._failures:
                return self._failures.pop(0)
        if request.headers.get("authorization") != self.api_key:
            return json_response(
                401,
                {
                    "errors": [
                        _error(
                            "Authentication required, not authenticated",
                            "authentication error",
                            code="AUTHENTICATION_ERROR",
                            userError=True,
                            userPresentableMessage="You need to authenticate to access this operation.",
                        )
                    ]
                },
            )
        if not request.headers.get("content-type", "").startswith("application/json"):
            return _invalid("Content-Type must be application/json")
        try:
            body = request.json()
        except ValueError:
            return _invalid("Body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _invalid("Body must be an object with a query string")
        query: str = body["query"]
        variables = body.get("variables") or {}
        if not isinstance(variables, dict):
            return _invalid("variables must be an object")
        if "issueCreate" in query:
            answer = self._create(query, variables)
        elif re.search(r"\bissue\s*\(", query):
            answer = self._get(variables)
        else:
            return _invalid("Unsupported operation")
        with self._lock:
            if self._lost_answers:
                self._lost_answers -= 1
                return json_response(502, {"error": "bad gateway"})
        return answer

    def _create(self, query: str, variables: dict[str, Any]) -> Response:
        if "IssueCreateInput!" not in query:
            return _invalid("issueCreate needs $input: IssueCreateInput!")
        data = variables.get("input")
        if not isinstance(data, dict):
            return _invalid("variables.input must be an object")
        unknown = set(data) - {"id", "teamId", "title", "description", "priority", "labelIds"}
        if unknown:
            return _invalid(f"Unknown input fields: {sorted(unknown)}")
        issue_id = data.get("id")
        if not isinstance(issue_id, str) or not _is_uuid(issue_id):
            return _invalid("id must be a UUID")
        if data.get("teamId") != self.team_id:
            return _invalid("Entity not found: Team")
        title = data.get("title")
        if not isinstance(title, str) or not title.strip():
            return _invalid("title must not be empty")
        if not isinstance(data.get("description"), str):
            return _invalid("description must be a string")
        priority = data.get("priority")
        if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 4:
            return _invalid("priority must be an integer from 0 to 4")
        labels = data.get("labelIds", [])
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            return _invalid("labelIds must be a list of strings")
        with self._lock:
            if issue_id in self._issues:
                # Linear answers a duplicate client-supplied id with HTTP 200 and a GraphQL error.
                return json_response(
                    200, {"data": None, "errors": [_error("Entity already exists", "invalid input", userError=True)]}
                )
            self._counter += 1
            identifier = f"{self.team_key}-{self._counter}"
            slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "issue"
            issue = {
                "id": issue_id,
                "identifier": identifier,
                "url": f"https://linear.app/{self.workspace}/issue/{identifier}/{slug}",
                "teamId": self.team_id,
                "title": title,
                "description": data["description"],
                "priority": priority,
                "labelIds": list(labels),
                "createdAt": time.time(),
            }
            self._issues[issue_id] = issue
        return json_response(200, {"data": {"issueCreate": {"success": True, "issue": _public(issue)}}})

    def _get(self, variables: dict[str, Any]) -> Response:
        key = variables.get("id")
        if not isinstance(key, str):
            return _invalid("id must be a string")
        with self._lock:
            # Linear finds an issue by its UUID or by its identifier.
            found = self._issues.get(key) or next(
                (issue for issue in self._issues.values() if issue["identifier"] == key), None
            )
        if found is None:
            return json_response(
                200, {"data": None, "errors": [_error("Entity not found", "invalid input", userError=True)]}
            )
        return json_response(200, {"data": {"issue": _public(found)}})


def _public(issue: dict[str, Any]) -> dict[str, Any]:
    """The ``{ id identifier url }`` selection of a stored issue."""
    return {"id": issue["id"], "identifier": issue["identifier"], "url": issue["url"]}


def _invalid(message: str) -> Response:
    """Linear's answer to a request it rejects as invalid input."""
    return json_response(400, {"errors": [_error(message, "invalid input", userError=True)]})


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@dataclass
class FakeOpenAI(FakeService):
    """A fake OpenAI-compatible chat completions endpoint that answers scripted content and records requests.

    ``content`` is the assistant message: a string as is, anything else JSON-encoded, or a callable of the
    request's JSON body returning either. ``message``, when set, replaces it with the whole assistant message (a dict
    such as ``{"role": "assistant", "content": None, "tool_calls": [...]}``, or a callable of the request's JSON body
    returning one). ``status``/``raw_body`` script failures, sent with ``headers`` (``Retry-After``); ``delay_s`` a
    slow answer.
    """

    content: Any = field(default_factory=lambda: {"bugs": []})
    api_key: str = "sk-fake-0123456789"
    status: int = 200
    raw_body: bytes | None = None
    delay_s: float = 0.0
    message: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    server: FakeHttpServer = field(init=False)

    def __post_init__(self) -> None:
        self.server = FakeHttpServer(self._handle)

    @property
    def base_url(self) -> str:
        """The ``base_url`` to configure (``…/v1``)."""
        return f"{self.server.url}/v1"

    @property
    def requests(self) -> list[Recorded]:
        """Every request received so far."""
        return self.server.requests

    def _handle(self, request: Recorded) -> Response:
        if self.delay_s:
            time.sleep(self.delay_s)
        if request.method != "POST" or request.path != "/v1/chat/completions":
            return json_response(404, {"error": {"message": "Unknown endpoint", "type": "invalid_request_error"}})
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return json_response(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_api_key"}})
        if self.raw_body is not None:
            return self.status, {"Content-Type": "application/json", **self.headers}, self.raw_body
        if self.status != 200:
            error = {"error": {"message": "Scripted failure", "type": "server_error"}}
            return json_response(self.status, error, self.headers)
        body = request.json()
        if self.message is not None:
            message = self.message(body) if callable(self.message) else self.message
        else:
            content = self.content(body) if callable(self.content) else self.content
            message = {"role": "assistant", "content": content if isinstance(content, str) else json.dumps(content)}
        finish_reason = "tool_calls" if isinstance(message, dict) and message.get("tool_calls") else "stop"
        return json_response(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            },
        )


def _hubspot_error(status: int, category: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """HubSpot's error body: ``status``, ``message``, ``correlationId``, ``category``."""
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    return json_response(status, body, headers)


class FakeHubSpot(FakeService):
    """A fake of HubSpot's CRM v3 ``GET /crm/v3/objects/deals/{id}`` that checks requests like the real API does.

    Deals are stored with :meth:`add_deal`; an answer holds only the requested properties (plus HubSpot's
    defaults) and contact associations only when ``associations=contacts`` was asked for and there are some.
    """

    def __init__(self, *, access_token: str = "pat-na1-fake-0123-4567-89ab") -> None:
        self.access_token = access_token
        self._lock = threading.Lock()
        self._deals: dict[str, tuple[dict[str, str | None], list[str]]] = {}
        self._failures: list[Response] = []
        self.server = FakeHttpServer(self._handle)

    @property
    def url(self) -> str:
        """The base URL to configure (``https://api.hubapi.com`` in production)."""
        return self.server.url

    @property
    def requests(self) -> list[Recorded]:
        """Every request received so far."""
        return self.server.requests

    def add_deal(self, deal_id: str, properties: dict[str, str | None], contact_ids: list[str] | None = None) -> None:
        """Store a deal with its properties (as HubSpot's strings) and associated contacts."""
        with self._lock:
            self._deals[deal_id] = (dict(properties), list(contact_ids or []))

    def fail_next(self, status: int, *, retry_after: int | None = None) -> None:
        """Answer the next request with ``status`` (a 429 carries ``Retry-After`` when given)."""
        if status == 429:
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            body = {
                "status": "error",
                "message": "You have reached your secondly limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()),
                "policyName": "SECONDLY",
            }
            answer = json_response(429, body, headers)
        else:
            answer = _hubspot_error(status, "INTERNAL_ERROR", "internal error")
        with self._lock:
            self._failures.append(answer)

    def _handle(self, request: Recorded) -> Response:
        parts = urlsplit(request.path)
        match = re.fullmatch(r"/crm/v3/objects/deals/([0-9]+)", parts.path)
        if request.method != "GET" or match is None:
            return _hubspot_error(404, "OBJECT_NOT_FOUND", "resource not found")
        with self._lock:
            if self._failures:
                return self._failures.pop(0)
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return _hubspot_error(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication.",
            )
        query = parse_qs(parts.query)
        # HubSpot takes a comma-separated list (or the parameter repeated).
        wanted = [name for value in query.get("properties", []) for name in value.split(",") if name]
        associations = [name for value in query.get("associations", []) for name in value.split(",") if name]
        with self._lock:
            stored = self._deals.get(match.group(1))
        if stored is None:
            return _hubspot_error(404, "OBJECT_NOT_FOUND", "resource not found")
        properties, contacts = stored
        defaults = {"createdate": "2025-03-01T10:00:00Z", "hs_object_id": match.group(1)}
        answer: dict[str, Any] = {
            "id": match.group(1),
            "properties": {**defaults, **{name: properties.get(name) for name in wanted}},
            "createdAt": "2025-03-01T10:00:00Z",
            "updatedAt": "2025-03-02T10:00:00Z",
            "archived": False,
        }
        if "contacts" in associations and contacts:
            results = [{"id": contact, "type": "deal_to_contact"} for contact in contacts]
            answer["associations"] = {"contacts": {"results": results}}
        return json_response(200, answer)


def _telegram_error(status: int, description: str, parameters: dict[str, Any] | None = None) -> Response:
    """The Bot API's error answer: ``{"ok": false, "error_code", "description", "parameters"?}``."""
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return json_response(status, body)


@dataclass(frozen=True)
class SentTelegramMessage:
    """One message the fake Bot API accepted."""

    chat_id: int | str
    text: str
    reply_to: int | None
    message_id: int


#: The ``sendChatAction`` actions the Bot API accepts.
_TELEGRAM_ACTIONS = frozenset(
    {
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
    }
)


class FakeTelegram(FakeService):
    """A fake of the Telegram Bot API's ``sendMessage`` and ``sendChatAction`` that checks requests like the real one.

    Serves ``/bot<token>/<method>``: a wrong token answers 401, a text that is empty or over 4,096 characters 400,
    a forgotten chat 400 "chat not found", a blocked one 403. Scripted failures (:meth:`rate_limit_next`,
    :meth:`fail_next`) answer the next well-addressed requests before they are handled.
    """

    def __init__(self, *, token: str = "123456789:AAHfakeTelegramBotToken_0123456789") -> None:
        self.token = token
        self._lock = threading.Lock()
        self._sent: list[SentTelegramMessage] = []
        self._actions: list[tuple[int | str, str]] = []
        self._failures: list[Response] = []
        self._missing_chats: set[int | str] = set()
        self._blocked_chats: set[int | str] = set()
        self._next_message_id = 1000
        self.server = FakeHttpServer(self._handle)

    @property
    def url(self) -> str:
        """The Bot API base URL to configure (``https://api.telegram.org`` in production)."""
        return self.server.url

    @property
    def requests(self) -> list[Recorded]:
        """Every request received so far."""
        return self.server.requests

    @property
    def sent(self) -> list[SentTelegramMessage]:
        """The messages accepted so far, in order."""
        with self._lock:
            return list(self._sent)

    @property
    def actions(self) -> list[tuple[int | str, str]]:
        """The chat actions accepted so far, as ``(chat_id, action)``."""
        with self._lock:
            return list(self._actions)

    def rate_limit_next(self, retry_after: int = 3, count: int = 1) -> None:
        """Answer the next ``count`` calls 429 with ``parameters.retry_after``."""
        answer = _telegram_error(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})
        with self._lock:
            self._failures.extend([answer] * count)

    def fail_next(self, status: int = 500, count: int = 1, description: str = "Internal Server Error") -> None:
        """Answer the next ``count`` calls with ``status`` and ``description``."""
        with self._lock:
            self._failures.extend([_telegram_error(status, description)] * count)

    def forget_chat(self, chat_id: int | str) -> None:
        """Answer sends to ``chat_id`` 400 "chat not found" from now on."""
        with self._lock:
            self._missing_chats.add(chat_id)

    def block_chat(self, chat_id: int | str) -> None:
        """Answer sends to ``chat_id`` 403 "bot was blocked by the user" from now on."""
        with self._lock:
            self._blocked_chats.add(chat_id)

    def _handle(self, request: Recorded) -> Response:
        match = re.fullmatch(r"/bot([^/]+)/(\w+)", urlsplit(request.path).path)
        if match is None or request.method != "POST":
            return _telegram_error(404, "Not Found")
        if match.group(1) != self.token:
            return _telegram_error(401, "Unauthorized")
        with self._lock:
            if self._failures:
                return self._failures.pop(0)
        if match.group(2) == "getMe":
            bot = {
                "id": int(self.token.partition(":")[0]),
                "is_bot": True,
                "first_name": "Fake",
                "username": "fake_bot",
            }
            return json_response(200, {"ok": True, "result": bot})
        if not request.headers.get("content-type", "").startswith("application/json"):
            return _telegram_error(400, "Bad Request: expected a JSON body")
        try:
            body = request.json()
        except ValueError:
            return _telegram_error(400, "Bad Request: can't parse JSON")
        if not isinstance(body, dict):
            return _telegram_error(400, "Bad Request: expected a JSON object")
        chat_id = body.get("chat_id")
        if isinstance(chat_id, bool) or not isinstance(chat_id, int | str) or chat_id == "":
            return _telegram_error(400, "Bad Request: chat_id is empty")
        with self._lock:
            if chat_id in self._missing_chats:
                return _telegram_error(400, "Bad Request: chat not found")
            if chat_id in self._blocked_chats:
                return _telegram_error(403, "Forbidden: bot was blocked by the user")
        if match.group(2) == "sendMessage":
            return self._send_message(chat_id, body)
        if match.group(2) == "sendChatAction":
            if body.get("action") not in _TELEGRAM_ACTIONS:
                return _telegram_error(400, "Bad Request: wrong parameter action in request")
            with self._lock:
                self._actions.append((chat_id, body["action"]))
            return json_response(200, {"ok": True, "result": True})
        return _telegram_error(404, "Not Found")

    def _send_message(self, chat_id: int | str, body: dict[str, Any]) -> Response:
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return _telegram_error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return _telegram_error(400, "Bad Request: message is too long")
        reply_to: int | None = None
        if "reply_parameters" in body:
            parameters = body["reply_parameters"]
            if not isinstance(parameters, dict) or not isinstance(parameters.get("message_id"), int):
                return _telegram_error(400, "Bad Request: can't parse reply parameters JSON object")
            reply_to = parameters["message_id"]
        with self._lock:
            self._next_message_id += 1
            sent = SentTelegramMessage(chat_id, text, reply_to, self._next_message_id)
            self._sent.append(sent)
        result = {
            "message_id": sent.message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "text": text,
        }
        return json_response(200, {"ok": True, "result": result})


@dataclass(frozen=True)
class SentManyChatContent:
    """One ``sendContent`` call the fake ManyChat accepted."""

    subscriber_id: int | str
    channel: str | None
    texts: list[str]
    message_tag: str | None


class FakeManyChat(FakeService):
    """A fake of ManyChat's ``POST /fb/sending/sendContent`` that checks requests like the real API does.

    A wrong bearer token answers 401; a block that is not v2, has no messages or more than ten, or a message that
    is not a non-empty text, 400; a forgotten subscriber 400. :meth:`fail_next` scripts failures.
    """

    def __init__(self, *, api_token: str = "1234567:fakeManyChatApiToken0123456789abcdef") -> None:
        self.api_token = api_token
        self._lock = threading.Lock()
        self._sent: list[SentManyChatContent] = []
        self._failures: list[Response] = []
        self._missing_subscribers: set[str] = set()
        self.server = FakeHttpServer(self._handle)

    @property
    def url(self) -> str:
        """The API base URL to configure (``https://api.manychat.com`` in production)."""
        return self.server.url

    @property
    def requests(self) -> list[Recorded]:
        """Every request received so far."""
        return self.server.requests

    @property
    def sent(self) -> list[SentManyChatContent]:
        """The content accepted so far, in order."""
        with self._lock:
            return list(self._sent)

    def fail_next(self, status: int = 500, count: int = 1, *, retry_after: int | None = None) -> None:
        """Answer the next ``count`` calls with ``status`` (a 429 carries ``Retry-After`` when given)."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        message = "Too many requests" if status == 429 else "Internal server error"
        answer = json_response(status, {"status": "error", "message": message}, headers)
        with self._lock:
            self._failures.extend([answer] * count)

    def forget_subscriber(self, subscriber_id: int | str) -> None:
        """Answer content for ``subscriber_id`` 400 "Subscriber does not exist" from now on."""
        with self._lock:
            self._missing_subscribers.add(str(subscriber_id))

    def _handle(self, request: Recorded) -> Response:
        path = urlsplit(request.path).path
        if (request.method, path) not in (("POST", "/fb/sending/sendContent"), ("GET", "/fb/page/getInfo")):
            return json_response(404, {"status": "error", "message": "Not found"})
        if request.headers.get("authorization") != f"Bearer {self.api_token}":
            return json_response(401, {"status": "error", "message": "Wrong format token"})
        if path == "/fb/page/getInfo":
            return json_response(200, {"status": "success", "data": {"id": 1234567, "name": "Fake shop"}})
        with self._lock:
            if self._failures:
                return self._failures.pop(0)
        try:
            body = request.json()
        except ValueError:
            return _manychat_invalid("Body is not JSON")
        if not isinstance(body, dict):
            return _manychat_invalid("Body must be an object")
        subscriber = body.get("subscriber_id")
        if isinstance(subscriber, bool) or not isinstance(subscriber, int | str) or not str(subscriber).isdigit():
            return _manychat_invalid("subscriber_id must be an integer")
        data = body.get("data")
        if not isinstance(data, dict) or data.get("version") != "v2" or not isinstance(data.get("content"), dict):
            return _manychat_invalid("data must be a v2 dynamic block")
        content = data["content"]
        channel = content.get("type")
        if channel not in (None, "telegram", "instagram", "whatsapp"):
            return _manychat_invalid(f"Unknown content type {channel!r}")
        messages = content.get("messages")
        if not isinstance(messages, list) or not 1 <= len(messages) <= 10:
            return _manychat_invalid("content.messages must hold 1 to 10 messages")
        texts: list[str] = []
        for message in messages:
            if not isinstance(message, dict) or message.get("type") != "text":
                return _manychat_invalid("only text messages are supported by this fake")
            text = message.get("text")
            if not isinstance(text, str) or not text.strip():
                return _manychat_invalid("message text must not be empty")
            texts.append(text)
        tag = body.get("message_tag")
        if tag is not None and not isinstance(tag, str):
            return _manychat_invalid("message_tag must be a string")
        with self._lock:
            if str(subscriber) in self._missing_subscribers:
                return _manychat_invalid("Subscriber does not exist")
            self._sent.append(SentManyChatContent(subscriber, channel, texts, tag))
        return json_response(200, {"status": "success"})


def _manychat_invalid(message: str) -> Response:
    """ManyChat's answer to a request it rejects."""
    return json_response(400, {"status": "error", "message": message, "details": {"messages": [message]}})


def _crm_error(status: int, message: str, **extra: Any) -> Response:
    """The fake CRM's error answer: ``{"error", "message", …}``."""
    return json_response(status, {"error": message, "message": message, **extra})


def _crm_order_problem(body: Any) -> str | None:
    """What is wrong with an order body, or ``None`` when it is well formed (and its total adds up)."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    conversation = body.get("conversation_id")
    if not isinstance(conversation, str) or not conversation:
        return "conversation_id must be a non-empty string"
    number = body.get("order_number")
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        return "order_number must be a positive integer"
    items = body.get("items")
    if not isinstance(items, list) or not items:
        return "items must be a non-empty list"
    line_total = 0
    for item in items:
        if not isinstance(item, dict):
            return "each item must be an object"
        if not isinstance(item.get("sku"), str) or not item["sku"] or not isinstance(item.get("size"), str):
            return "each item needs a sku and a size"
        quantity, price = item.get("quantity"), item.get("price")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            return "item quantity must be a positive integer"
        if isinstance(price, bool) or not isinstance(price, int) or price < 1:
            return "item price must be a positive integer"
        line_total += quantity * price
    customer = body.get("customer")
    if not isinstance(customer, dict) or not all(isinstance(customer.get(k), str) for k in ("name", "phone")):
        return "customer must carry a name and a phone"
    if not isinstance(body.get("city"), str) or not body["city"]:
        return "city is required"
    if body.get("currency") != "UAH":
        return "currency must be UAH"
    if body.get("total") != line_total:
        return "total does not match the items"
    return None


class FakeCrm(FakeService):
    """A fake of an outside CRM's ``POST /orders`` that honours ``Idempotency-Key`` and rejects duplicates.

    A wrong or missing bearer key (when one is set) answers 401; a missing ``Idempotency-Key`` 400; a malformed
    order 422. Orders are stored by key: a repeat of a known key answers ``duplicate_status`` (409 by default, or
    200) with the existing order, and the key reused with a different body answers 422. :meth:`fail_next` scripts
    failures before handling; :meth:`lose_next_answers` stores the order and then answers 500 (a lost response).
    """

    def __init__(self, *, api_key: str | None = "crm_live_fake_0123456789abcdef", duplicate_status: int = 409) -> None:
        if duplicate_status not in (200, 409):
            raise ValueError("duplicate_status must be 200 or 409")
        self.api_key = api_key
        self.duplicate_status = duplicate_status
        self._lock = threading.Lock()
        self._orders: dict[str, dict[str, Any]] = {}
        self._bodies: dict[str, dict[str, Any]] = {}
        self._failures: list[Response] = []
        self._lost_answers = 0
        self.server = FakeHttpServer(self._handle)

    @property
    def url(self) -> str:
        """The CRM base URL to configure (``CONVEYOR_CRM_URL``)."""
        return self.server.url

    @property
    def requests(self) -> list[Recorded]:
        """Every request received so far."""
        return self.server.requests

    @property
    def orders(self) -> dict[str, dict[str, Any]]:
        """A snapshot of the stored orders by idempotency key, in creation order."""
        with self._lock:
            return {key: dict(order) for key, order in self._orders.items()}

    def fail_next(self, count: int = 1, *, status: int = 500, retry_after: int | None = None) -> None:
        """Answer the next ``count`` well-addressed requests with ``status`` without storing anything."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        message = "too many requests" if status == 429 else "internal server error"
        answer = json_response(status, {"error": message, "message": message}, headers)
        with self._lock:
            self._failures.extend([answer] * count)

    def lose_next_answers(self, count: int = 1) -> None:
        """Handle the next ``count`` orders (storing them) but answer 500, as if the response were lost."""
        with self._lock:
            self._lost_answers += count

    def _handle(self, request: Recorded) -> Response:
        if request.method != "POST" or urlsplit(request.path).path != "/orders":
            return _crm_error(404, "not found")
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _crm_error(401, "invalid or missing API key")
        with self._lock:
            if self._failures:
                return self._failures.pop(0)
        key = request.headers.get("idempotency-key", "").strip()
        if not key:
            return _crm_error(400, "the Idempotency-Key header is required")
        if not request.headers.get("content-type", "").startswith("application/json"):
            return _crm_error(415, "Content-Type must be application/json")
        try:
            body = request.json()
        except ValueError:
            return _crm_error(400, "the body is not JSON")
        problem = _crm_order_problem(body)
        if problem is not None:
            return _crm_error(422, problem)
        with self._lock:
            existing = self._orders.get(key)
            if existing is not None:
                if self._bodies[key] != body:
                    return _crm_error(422, "this Idempotency-Key was used with a different order")
                if self.duplicate_status == 200:
                    return json_response(200, existing)
                return _crm_error(409, "an order with this Idempotency-Key already exists", order=existing)
            order = {"id": f"ord_{len(self._orders) + 1:06d}", "status": "new", "idempotency_key": key, **body}
            self._orders[key] = order
            self._bodies[key] = body
            if self._lost_answers:
                self._lost_answers -= 1
                return _crm_error(500, "internal server error")
        return json_response(201, order)
