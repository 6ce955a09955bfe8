"""Generated requests from the OpenAPI schema reach the handlers, and none gets a server error.

Schemathesis builds requests for every operation from the schema the API serves (bodies, parameters, multipart
uploads) and sends them to the real API on the test stack. Generation is derandomized, so a run is repeatable,
and bounded per operation, so the test takes a bounded time. A 5xx on any operation fails the test with the
request that caused it; an operation none of whose requests got past request validation (every answer a 422)
means the schema does not describe what the handler accepts, and fails the test too.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error

from activities.attribution.signatures import signed_headers
from activities.chat.telegram import SECRET_HEADER
from api.links import Link, add_links
from api.services.chat import manychat_secret, telegram_secret
from cli.sample_site import SampleSite
from conveyor.codec import codec_token
from tests.helpers.hubspot import SECRET as HUBSPOT_SECRET
from tests.helpers.stack import Stack

#: Requests generated per operation: enough to cover each body's shapes, few enough for the suite's time.
EXAMPLES = 20
#: Webhooks whose generated requests are signed with the stack's secret (their body is their credential).
SIGNED_PATHS = {"/webhooks/hubspot": HUBSPOT_SECRET}
#: Answers that mean the request never reached the handler's own code.
NOT_REACHED = {401, 405, 413, 415, 422, 429}

HeadersFor = Callable[[str], dict[str, str]]


@dataclass
class Outcome:
    """What the requests of one operation got back."""

    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def reached(self) -> bool:
        """Whether at least one request got past validation into the handler."""
        return any(status not in NOT_REACHED for status in self.statuses)


def fuzz(schema: schemathesis.schemas.BaseSchema, base_url: str, headers_for: HeadersFor) -> dict[str, Outcome]:
    """Send ``EXAMPLES`` generated requests to every operation; what each operation got back."""
    outcomes: dict[str, Outcome] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        outcome = outcomes.setdefault(operation.label, Outcome())
        _fuzz_one(operation, outcome, base_url, headers_for(operation.path))
    return outcomes


def _fuzz_one(operation: schemathesis.APIOperation, outcome: Outcome, base_url: str, headers: dict[str, str]) -> None:
    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def send(case: schemathesis.Case) -> None:
        if operation.path in SIGNED_PATHS:  # a webhook: the signature over the generated body is its credential
            body = json.dumps(case.body).encode() if isinstance(case.body, (list, dict)) else b""
            url = f"{base_url}{operation.path}"
            signed = signed_headers(SIGNED_PATHS[operation.path], "POST", url, body, datetime.now(UTC))
            response = case.call(base_url=base_url, headers=signed, timeout=60, data=body)
        else:
            response = case.call(base_url=base_url, headers=headers, timeout=60)
        outcome.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except AssertionError as failure:  # schemathesis' check failures are AssertionErrors
            outcome.failures.append(f"{case.as_curl_command()}\n  -> {response.status_code}: {failure}")

    send()


async def test_generated_requests_reach_every_handler_and_get_no_server_error(stack: Stack) -> None:
    # an operator's key reaches every route, admin-only ones too (the test stack's rate limit is generous)
    _, key = await stack.new_user(credits=1_000_000, admin=True)
    async with stack.http(key) as http:
        raw = (await http.get("/openapi.json")).json()
    # key management gets a user per operation, since rotating revokes the key that asked
    own_keys = {path: (await stack.new_user())[1] for path in raw["paths"] if path.startswith("/api/keys")}
    token = codec_token(stack.settings)
    assert token
    # the chat webhooks' secrets are their credentials (a local install makes one for itself)
    telegram, manychat = telegram_secret(stack.settings), manychat_secret(stack.settings)
    assert telegram and manychat

    def headers_for(path: str) -> dict[str, str]:
        if path.startswith("/codec/"):
            return {"Authorization": f"Bearer {token}"}
        if path == "/webhooks/telegram":
            return {SECRET_HEADER: telegram}
        if path == "/webhooks/manychat":
            return {"Authorization": f"Bearer {manychat}"}
        return {"X-API-Key": own_keys.get(path, key)}

    schema = schemathesis.openapi.from_dict(raw)

    outcomes = await asyncio.to_thread(fuzz, schema, stack.api_url, headers_for)

    assert len(outcomes) >= 45, sorted(outcomes)
    server_errors = [failure for outcome in outcomes.values() for failure in outcome.failures]
    assert not server_errors, "\n".join(server_errors[:10])
    unreached = {label: dict(o.statuses) for label, o in outcomes.items() if not o.reached}
    assert not unreached, f"operations whose generated requests never reached the handler: {unreached}"


async def test_the_schemas_links_lead_from_a_created_thing_to_its_reads(stack: Stack, sample_site: SampleSite) -> None:
    """Every link from a create answer resolves: the read it names answers 200 for the id the answer carried."""
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        spec = (await http.get("/openapi.json")).json()
        created = {
            "POST /api/personas": await http.post("/api/personas", json={"id": "linked", "name": "Linked"}),
            "POST /api/crawls": await http.post("/api/crawls", json={"url": sample_site.url + "/", "max_pages": 2}),
            "POST /api/chat/messages": await http.post("/api/chat/messages", json={"chat_id": "linked", "text": "Hi"}),
        }
        by_id = {op["operationId"]: f"{m.upper()} {p}" for p, ops in spec["paths"].items() for m, op in ops.items()}
        followed = []
        for source, answer in created.items():
            assert answer.status_code in (200, 201, 202), answer.text
            method, _, path = source.partition(" ")
            links = spec["paths"][path][method.lower()]["responses"][str(answer.status_code)]["links"]
            for link in links.values():
                target = by_id[link["operationId"]]
                if not target.startswith("GET "):
                    continue
                url = target.removeprefix("GET ")
                for param, expression in link["parameters"].items():
                    field = expression.removeprefix("$response.body#/")
                    url = url.replace("{" + param + "}", str(answer.json()[field]))
                read = await http.get(url)
                assert read.status_code == 200, (source, target, read.text)
                followed.append(target)
    assert "GET /api/personas/{persona_id}" in followed and "GET /api/crawls/{session_id}/bugs" in followed
    assert "GET /api/chat/conversations/{workflow_id}" in followed


def test_a_link_to_an_operation_the_api_lacks_fails_the_schema_build() -> None:
    spec = {"paths": {"/a": {"post": {"operationId": "make_a", "responses": {"201": {}}}}}}
    add_links(spec, [Link("POST /a", "201", "POST /a", {"x": "$response.body#/id"})])
    assert spec["paths"]["/a"]["post"]["responses"]["201"]["links"]["PostA"]["operationId"] == "make_a"
    with pytest.raises(LookupError, match="GET /a/{id}"):
        add_links(spec, [Link("POST /a", "201", "GET /a/{id}", {"id": "$response.body#/id"})])
