"""ManyChat: External Request bodies, the bearer check, Dynamic Block shapes and the sendContent client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest

from activities.chat.manychat import (
    HOLDING_TEXT,
    MAX_MESSAGES,
    ManyChatClient,
    ManyChatRequest,
    check_bearer,
    dedupe_key,
    dynamic_block,
    holding_block,
    message_texts,
    parse_request,
)
from conveyor.errors import BadInput, ExternalServiceError, RateLimited, Unauthorized
from tests.helpers import free_port
from tests.helpers.fakes import FakeManyChat, SentManyChatContent


def _body(**fields: Any) -> bytes:
    return json.dumps(
        {"subscriber_id": "1416405486", "text": "Скільки коштує сукня?", "message_id": "m-1", **fields}
    ).encode()


# --- External Requests ---------------------------------------------------------------------------------------------


def test_a_request_is_parsed_with_numeric_ids_as_text_and_the_text_stripped() -> None:
    request = parse_request(_body(subscriber_id=1416405486, message_id=77, text="  hi  ", extra="ignored"))

    assert request == ManyChatRequest(subscriber_id="1416405486", text="hi", message_id="77")


@pytest.mark.parametrize("body", [b"", b"{", b"\xff", b"[1]", b'"text"'])
def test_a_body_that_is_not_a_json_object_is_refused(body: bytes) -> None:
    with pytest.raises(BadInput) as refused:
        parse_request(body)

    assert refused.value.code == ("INVALID_REQUEST" if body in (b"[1]", b'"text"') else "MALFORMED_JSON")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"subscriber_id": None}, "subscriber_id"),
        ({"subscriber_id": "  "}, "subscriber_id"),
        ({"message_id": "a b"}, "message_id"),
        ({"message_id": "x" * 129}, "message_id"),
        ({"text": ["hi"]}, "text"),
    ],
)
def test_a_request_missing_or_with_bad_fields_is_invalid_and_names_them(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(BadInput) as refused:
        parse_request(_body(**fields))

    assert refused.value.code == "INVALID_REQUEST"
    assert refused.value.details["fields"] == [field]


@pytest.mark.parametrize(("text", "code"), [("", "EMPTY_TEXT"), ("\n ", "EMPTY_TEXT"), ("я" * 4097, "TEXT_TOO_LONG")])
def test_an_empty_or_overlong_text_is_bad_input(text: str, code: str) -> None:
    with pytest.raises(BadInput) as refused:
        parse_request(_body(text=text))

    assert refused.value.code == code


def test_the_dedupe_key_names_subscriber_and_message() -> None:
    request = parse_request(_body())

    assert dedupe_key(request.subscriber_id, request.message_id) == "manychat:1416405486:m-1"
    assert dedupe_key("1", "2") != dedupe_key("1", "3")


# --- bearer check ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["Bearer mc-secret", "bearer mc-secret", "  Bearer   mc-secret "])
def test_the_right_bearer_token_passes(header: str) -> None:
    check_bearer(header, "mc-secret")


@pytest.mark.parametrize(
    "header", [None, "", "mc-secret", "Basic mc-secret", "Bearer mc-secret2", "Bearer ", "Bearer мц"]
)
def test_a_missing_or_wrong_bearer_token_is_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized) as refused:
        check_bearer(header, "mc-secret")

    assert refused.value.http_status == 401
    assert refused.value.code == "MANYCHAT_SECRET_INVALID"


def test_an_unconfigured_secret_refuses_every_request() -> None:
    with pytest.raises(Unauthorized):
        check_bearer("Bearer ", "")


# --- Dynamic Blocks ------------------------------------------------------------------------------------------------


def test_a_dynamic_block_holds_one_text_message_per_text_typed_by_channel() -> None:
    assert dynamic_block(["Так, є розмір M.", "Ціна 1 200 грн."]) == {
        "version": "v2",
        "content": {
            "type": "telegram",
            "messages": [{"type": "text", "text": "Так, є розмір M."}, {"type": "text", "text": "Ціна 1 200 грн."}],
        },
    }
    assert dynamic_block(["hi"], "instagram")["content"]["type"] == "instagram"


def test_a_messenger_block_carries_no_content_type() -> None:
    assert dynamic_block(["hi"], "facebook") == {
        "version": "v2",
        "content": {"messages": [{"type": "text", "text": "hi"}]},
    }


def test_a_long_text_is_split_to_the_channels_limit() -> None:
    text = " ".join(["слово"] * 400)  # 2,399 characters

    telegram = dynamic_block([text], "telegram")["content"]["messages"]
    instagram = dynamic_block([text], "instagram")["content"]["messages"]

    assert len(telegram) == 1
    assert len(instagram) == 3
    assert all(len(message["text"]) <= 1000 for message in instagram)
    assert " ".join(message["text"] for message in instagram) == text


def test_more_than_ten_parts_keep_nine_and_truncate_the_rest_into_the_tenth() -> None:
    texts = [f"part {i:02d} " + "x" * 990 for i in range(14)]

    parts = message_texts(texts, "instagram")

    assert len(parts) == MAX_MESSAGES
    assert parts[:9] == texts[:9]
    assert parts[9].startswith(texts[9][:100])
    assert parts[9].endswith("…")
    assert len(parts[9]) <= 1000
    assert len(dynamic_block(texts, "instagram")["content"]["messages"]) == MAX_MESSAGES


def test_exactly_ten_parts_are_kept_whole() -> None:
    texts = [f"message {i}" for i in range(10)]

    assert message_texts(texts) == texts


def test_blank_texts_are_dropped_and_a_block_without_text_is_refused() -> None:
    assert message_texts(["hi", "  ", ""]) == ["hi"]
    with pytest.raises(BadInput) as refused:
        dynamic_block([" "])
    assert refused.value.code == "EMPTY_TEXT"


def test_an_unknown_channel_is_refused() -> None:
    with pytest.raises(BadInput) as refused:
        dynamic_block(["hi"], "viber")

    assert refused.value.code == "UNKNOWN_CHANNEL"


def test_the_holding_block_is_one_short_message() -> None:
    block = holding_block()

    assert block["version"] == "v2"
    assert block["content"]["messages"] == [{"type": "text", "text": HOLDING_TEXT}]
    assert holding_block("Хвилинку…", "whatsapp")["content"] == {
        "type": "whatsapp",
        "messages": [{"type": "text", "text": "Хвилинку…"}],
    }


# --- the sending API client ----------------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeManyChat]:
    """A running fake ManyChat API."""
    with FakeManyChat() as server:
        yield server


@pytest.fixture
async def client(fake: FakeManyChat) -> AsyncIterator[ManyChatClient]:
    """A client of the fake with the right token."""
    async with ManyChatClient(fake.api_token, api_url=fake.url, timeout_s=5) as manychat:
        yield manychat


async def test_send_content_posts_a_v2_block_for_the_subscriber(fake: FakeManyChat, client: ManyChatClient) -> None:
    await client.send_content("1416405486", ["Ваше замовлення прийнято.", "Дякуємо!"])

    assert fake.sent == [SentManyChatContent(1416405486, "telegram", ["Ваше замовлення прийнято.", "Дякуємо!"], None)]
    [request] = fake.requests
    assert request.path == "/fb/sending/sendContent"
    assert request.headers["authorization"] == f"Bearer {fake.api_token}"
    body = request.json()
    assert body["subscriber_id"] == 1416405486
    assert body["data"] == dynamic_block(["Ваше замовлення прийнято.", "Дякуємо!"])
    assert "message_tag" not in body


async def test_a_message_tag_is_sent_when_asked_for(fake: FakeManyChat, client: ManyChatClient) -> None:
    await client.send_content(42, ["Your order shipped"], "facebook", message_tag="ACCOUNT_UPDATE")

    assert fake.sent == [SentManyChatContent(42, None, ["Your order shipped"], "ACCOUNT_UPDATE")]


async def test_a_long_reply_is_sent_as_at_most_ten_messages(fake: FakeManyChat, client: ManyChatClient) -> None:
    await client.send_content(7, ["word " * 3000], "instagram")

    [sent] = fake.sent
    assert len(sent.texts) == MAX_MESSAGES
    assert all(len(text) <= 1000 for text in sent.texts)


async def test_a_429_is_rate_limited_with_retry_after_then_the_send_succeeds(
    fake: FakeManyChat, client: ManyChatClient
) -> None:
    fake.fail_next(429, retry_after=4)

    with pytest.raises(RateLimited) as limited:
        await client.send_content(7, ["hi"])

    assert limited.value.code == "MANYCHAT_RATE_LIMITED"
    assert limited.value.retry_after == timedelta(seconds=4)
    await client.send_content(7, ["hi"])
    assert len(fake.sent) == 1


async def test_a_429_without_retry_after_waits_two_seconds(fake: FakeManyChat, client: ManyChatClient) -> None:
    fake.fail_next(429)

    with pytest.raises(RateLimited) as limited:
        await client.send_content(7, ["hi"])

    assert limited.value.retry_after == timedelta(seconds=2)


async def test_an_unknown_subscriber_is_rejected_permanently_with_manychats_message(
    fake: FakeManyChat, client: ManyChatClient
) -> None:
    fake.forget_subscriber(404)

    with pytest.raises(BadInput) as refused:
        await client.send_content(404, ["hi"])

    assert refused.value.code == "MANYCHAT_REJECTED"
    assert not refused.value.retryable
    assert "Subscriber does not exist" in refused.value.message


async def test_a_wrong_api_token_is_permanent_and_not_echoed(fake: FakeManyChat) -> None:
    token = "999:wrongManyChatTokenSecret"
    async with ManyChatClient(token, api_url=fake.url) as manychat:
        with pytest.raises(BadInput) as refused:
            await manychat.send_content(7, ["hi"])

    assert refused.value.code == "MANYCHAT_TOKEN_INVALID"
    assert token not in json.dumps(refused.value.to_dict())
    assert fake.sent == []


async def test_server_errors_are_retryable(fake: FakeManyChat, client: ManyChatClient) -> None:
    fake.fail_next(503, count=2)

    for _ in range(2):
        with pytest.raises(ExternalServiceError) as failed:
            await client.send_content(7, ["hi"])
        assert failed.value.code == "MANYCHAT_UNAVAILABLE"
        assert failed.value.retryable

    await client.send_content(7, ["hi"])
    assert len(fake.sent) == 1


async def test_an_unreachable_manychat_is_retryable() -> None:
    async with ManyChatClient("tok", api_url=f"http://127.0.0.1:{free_port()}") as manychat:
        with pytest.raises(ExternalServiceError) as failed:
            await manychat.send_content(7, ["hi"])

    assert failed.value.code == "MANYCHAT_UNAVAILABLE"


async def test_content_is_checked_before_any_request(fake: FakeManyChat, client: ManyChatClient) -> None:
    with pytest.raises(BadInput):
        await client.send_content(7, ["  "])
    with pytest.raises(BadInput) as refused:
        await client.send_content("", ["hi"])

    assert refused.value.code == "INVALID_SUBSCRIBER_ID"
    assert fake.requests == []


def test_an_empty_api_token_is_refused_up_front() -> None:
    with pytest.raises(BadInput) as refused:
        ManyChatClient(" ")

    assert refused.value.code == "MANYCHAT_TOKEN_INVALID"
