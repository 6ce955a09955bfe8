"""The Linear client against a fake of Linear's GraphQL API: request shape, idempotent filing, error mapping."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest

from activities.crawl.linear import LinearClient, LinearIssue
from conveyor.errors import BadInput, ExternalServiceError, RateLimited
from tests.helpers import free_port
from tests.helpers.fakes import FakeHttpServer, FakeLinear, Recorded, json_response


@pytest.fixture
def fake() -> Iterator[FakeLinear]:
    """A running fake Linear."""
    with FakeLinear() as server:
        yield server


@pytest.fixture
async def client(fake: FakeLinear) -> AsyncIterator[LinearClient]:
    """A client of the fake with the right key and team."""
    async with LinearClient(fake.api_key, fake.team_id, api_url=fake.url, timeout_s=5) as linear:
        yield linear


async def _create(client: LinearClient, issue_id: str | None = None, **overrides: object) -> LinearIssue:
    fields: dict[str, object] = {
        "issue_id": issue_id or str(uuid.uuid4()),
        "title": "Broken link to /pricing on the home page",
        "description": "The link answers **404**.",
        "priority": 2,
    }
    fields.update(overrides)
    return await client.create_issue(**fields)  # type: ignore[arg-type]


async def test_create_issue_sends_the_linear_request_shape(fake: FakeLinear, client: LinearClient) -> None:
    issue_id = str(uuid.uuid4())

    issue = await _create(client, issue_id, label_ids=["label-1"])

    assert issue == LinearIssue(
        id=issue_id,
        identifier="QA-1",
        url="https://linear.app/acme/issue/QA-1/broken-link-to-pricing-on-the-home-page",
    )
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/graphql")
    # Personal API keys go as they are: "Bearer" is for OAuth tokens.
    assert request.headers["authorization"] == fake.api_key
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert "issueCreate(input: $input)" in body["query"]
    assert "$input: IssueCreateInput!" in body["query"]
    for field in ("success", "identifier", "url"):
        assert field in body["query"]
    assert body["variables"] == {
        "input": {
            "id": issue_id,
            "teamId": fake.team_id,
            "title": "Broken link to /pricing on the home page",
            "description": "The link answers **404**.",
            "priority": 2,
            "labelIds": ["label-1"],
        }
    }
    assert fake.issues[issue_id]["priority"] == 2


async def test_identifiers_count_up(client: LinearClient) -> None:
    first = await _create(client)
    second = await _create(client)

    assert (first.identifier, second.identifier) == ("QA-1", "QA-2")
    assert first.id != second.id


async def test_labels_are_left_out_when_none_are_given(fake: FakeLinear, client: LinearClient) -> None:
    await _create(client)

    assert "labelIds" not in fake.requests[0].json()["variables"]["input"]


async def test_creating_the_same_id_twice_returns_the_first_issue(fake: FakeLinear, client: LinearClient) -> None:
    issue_id = str(uuid.uuid4())

    first = await _create(client, issue_id)
    again = await _create(client, issue_id, title="A retry with another title")

    assert again == first
    assert len(fake.issues) == 1
    # create, duplicate create, then the look-up that found the first issue
    assert len(fake.requests) == 3
    assert fake.requests[2].json()["variables"] == {"id": issue_id}


async def test_an_answer_lost_after_creating_is_recovered_by_the_retry(fake: FakeLinear, client: LinearClient) -> None:
    issue_id = str(uuid.uuid4())
    fake.lose_next_answers(1)

    with pytest.raises(ExternalServiceError) as lost:
        await _create(client, issue_id)
    retried = await _create(client, issue_id)

    assert lost.value.retryable
    assert retried.identifier == "QA-1"
    assert len(fake.issues) == 1


async def test_get_issue_finds_known_issues_and_returns_none_for_unknown(client: LinearClient) -> None:
    created = await _create(client)

    assert await client.get_issue(created.id) == created
    assert await client.get_issue(str(uuid.uuid4())) is None


async def test_a_wrong_api_key_is_a_permanent_auth_failure(fake: FakeLinear) -> None:
    async with LinearClient("lin_api_wrong_secret", fake.team_id, api_url=fake.url) as linear:
        with pytest.raises(BadInput) as failed:
            await _create(linear)

    assert failed.value.code == "LINEAR_AUTH_FAILED"
    assert not failed.value.retryable
    assert "lin_api_wrong_secret" not in str(failed.value)
    assert fake.issues == {}


async def test_a_bearer_prefix_is_refused_like_linear_does(fake: FakeLinear) -> None:
    async with LinearClient(f"Bearer {fake.api_key}", fake.team_id, api_url=fake.url) as linear:
        with pytest.raises(BadInput) as failed:
            await _create(linear)

    assert failed.value.code == "LINEAR_AUTH_FAILED"


async def test_a_graphql_authentication_error_is_an_auth_failure() -> None:
    body = {"errors": [{"message": "Authentication required", "extensions": {"code": "AUTHENTICATION_ERROR"}}]}
    with FakeHttpServer(lambda _: json_response(400, body)) as server:
        async with LinearClient("lin_api_key", "team", api_url=f"{server.url}/graphql") as linear:
            with pytest.raises(BadInput) as failed:
                await _create(linear)

    assert failed.value.code == "LINEAR_AUTH_FAILED"


async def test_http_429_is_rate_limited_with_retry_after(fake: FakeLinear, client: LinearClient) -> None:
    fake.fail_next(1, status=429, retry_after=2)

    with pytest.raises(RateLimited) as limited:
        await _create(client)

    assert limited.value.code == "LINEAR_RATE_LIMITED"
    assert limited.value.retry_after == timedelta(seconds=2)
    assert limited.value.retryable
    assert fake.issues == {}
    assert (await _create(client)).identifier == "QA-1"


async def test_a_graphql_ratelimited_error_waits_for_the_reset_header() -> None:
    reset_ms = int((time.time() + 30) * 1000)

    def answer(_: Recorded) -> tuple[int, dict[str, str], bytes]:
        errors = [{"message": "Rate limit exceeded", "extensions": {"type": "ratelimited", "code": "RATELIMITED"}}]
        return json_response(400, {"errors": errors}, {"X-RateLimit-Requests-Reset": str(reset_ms)})

    with FakeHttpServer(answer) as server:
        async with LinearClient("lin_api_key", "team", api_url=f"{server.url}/graphql") as linear:
            with pytest.raises(RateLimited) as limited:
                await _create(linear)

    assert limited.value.retry_after is not None
    assert timedelta(seconds=25) < limited.value.retry_after <= timedelta(seconds=30)


async def test_a_rate_limit_without_headers_waits_a_minute() -> None:
    with FakeHttpServer(lambda _: json_response(429, {})) as server:
        async with LinearClient("lin_api_key", "team", api_url=f"{server.url}/graphql") as linear:
            with pytest.raises(RateLimited) as limited:
                await _create(linear)

    assert limited.value.retry_after == timedelta(seconds=60)


async def test_http_500_is_a_retryable_external_failure(fake: FakeLinear, client: LinearClient) -> None:
    fake.fail_next(2, status=500)

    for _ in range(2):
        with pytest.raises(ExternalServiceError) as failed:
            await _create(client)
        assert failed.value.code == "LINEAR_UNAVAILABLE"
        assert failed.value.retryable

    assert (await _create(client)).identifier == "QA-1"


async def test_an_unreachable_linear_is_a_retryable_external_failure() -> None:
    async with LinearClient("lin_api_key", "team", api_url=f"http://127.0.0.1:{free_port()}/graphql") as linear:
        with pytest.raises(ExternalServiceError) as failed:
            await _create(linear)

    assert failed.value.code == "LINEAR_UNAVAILABLE"
    assert "lin_api_key" not in str(failed.value)


async def test_a_slow_linear_times_out_as_a_retryable_external_failure() -> None:
    def slow(_: Recorded) -> tuple[int, dict[str, str], bytes]:
        time.sleep(1.0)
        return json_response(200, {"data": {}})

    with FakeHttpServer(slow) as server:
        async with LinearClient("lin_api_key", "team", api_url=f"{server.url}/graphql", timeout_s=0.2) as linear:
            with pytest.raises(ExternalServiceError) as failed:
                await _create(linear)

    # the client's own time limit ended the call (the server would have answered, after a second)
    assert failed.value.code == "LINEAR_UNAVAILABLE"
    assert "did not answer within 0.2 s" in failed.value.message, failed.value.message
    assert failed.value.retryable


async def test_a_wrong_team_is_rejected_permanently(fake: FakeLinear) -> None:
    async with LinearClient(fake.api_key, str(uuid.uuid4()), api_url=fake.url) as linear:
        with pytest.raises(BadInput) as rejected:
            await _create(linear)

    assert rejected.value.code == "LINEAR_REJECTED"
    assert not rejected.value.retryable
    assert "Team" in rejected.value.message
    assert fake.issues == {}


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [({"issue_id": "not-a-uuid"}, "UUID"), ({"title": "  "}, "title"), ({"priority": 5}, "priority")],
)
async def test_invalid_issues_are_refused_before_any_request(
    fake: FakeLinear, client: LinearClient, overrides: dict[str, Any], problem: str
) -> None:
    with pytest.raises(BadInput) as refused:
        await _create(client, **overrides)

    assert refused.value.code == "LINEAR_INVALID_ISSUE"
    assert problem in refused.value.message
    assert fake.requests == []
