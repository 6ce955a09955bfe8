"""Generated requests from the OpenAPI schema reach the handlers, and none gets a server error.

Schemathesis builds requests for every operation from the schema the API serves (bodies, parameters, multipart
uploads) and sends them to the real API on the test stack. Generation is derandomized, so a run is repeatable,
and bounded per operation, so the test takes a bounded time. A 5xx on any operation fails the test with the
request that caused it; an operation none of whose requests got past request validation (every answer a 422)
means the schema does not describe what the handler accepts, and fails the test too.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error

from conveyor.codec import codec_token
from tests.helpers.stack import Stack

#: Requests generated per operation: enough to cover each body's shapes, few enough for the suite's time.
EXAMPLES = 20
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

    def headers_for(path: str) -> dict[str, str]:
        if path.startswith("/codec/"):
            return {"Authorization": f"Bearer {token}"}
        return {"X-API-Key": own_keys.get(path, key)}

    schema = schemathesis.openapi.from_dict(raw)

    outcomes = await asyncio.to_thread(fuzz, schema, stack.api_url, headers_for)

    assert len(outcomes) >= 45, sorted(outcomes)
    server_errors = [failure for outcome in outcomes.values() for failure in outcome.failures]
    assert not server_errors, "\n".join(server_errors[:10])
    unreached = {label: dict(o.statuses) for label, o in outcomes.items() if not o.reached}
    assert not unreached, f"operations whose generated requests never reached the handler: {unreached}"
