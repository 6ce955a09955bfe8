"""Telegram: webhook updates parsed and classified, the secret and text checks, splitting, the Bot API client."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from activities.chat.telegram import (
    MAX_TEXT_LENGTH,
    Ignored,
    Incoming,
    TelegramClient,
    check_secret,
    check_text,
    classify,
    dedupe_key,
    parse_update,
    split_text,
)
from conveyor.errors import BadInput, ExternalServiceError, RateLimited, Unauthorized
from tests.helpers import free_port
from tests.helpers.fakes import FakeHttpServer, FakeTelegram, json_response

CHAT = {"id": 380412233, "first_name": "Olena", "username": "olena_k", "type": "private"}
OLENA = {"id": 380412233, "is_bot": False, "first_name": "Olena", "username": "olena_k", "language_code": "uk"}


def _update(update_id: int = 871234001, **fields: Any) -> bytes:
    return json.dumps({"update_id": update_id, **fields}).encode()


def _message(message_id: int = 52, **fields: Any) -> dict[str, Any]:
    return {"message_id": message_id, "from": OLENA, "chat": CHAT, "date": 1741600000, **fields}


def _classify(body: bytes) -> Incoming | Ignored:
    return classify(parse_update(body))


# --- updates -----------------------------------------------------------------------------------------------------


def test_a_private_text_message_is_incoming_with_chat_message_and_sender() -> None:
    body = _update(message=_message(text="  Чи є сукня в розмірі M?  "))

    incoming = _classify(body)

    assert incoming == Incoming(
        update_id=871234001,
        chat_id=380412233,
        message_id=52,
        chat_type="private",
        text="Чи є сукня в розмірі M?",
        user_id=380412233,
        user_name="@olena_k",
        language_code="uk",
    )


def test_a_group_message_replying_to_the_bot_is_incoming_and_names_the_sender_without_username() -> None:
    group = {"id": -1001234567890, "title": "MIRT shop", "type": "supergroup"}
    sender = {"id": 77, "is_bot": False, "first_name": "Taras", "last_name": "Shevchuk"}
    bot_message = {"message_id": 40, "date": 1741599990, "chat": group, "text": "Hi!"}
    body = _update(message={**_message(60, chat=group, text="price?", reply_to_message=bot_message), "from": sender})

    incoming = _classify(body)

    assert isinstance(incoming, Incoming)
    assert (incoming.chat_id, incoming.chat_type, incoming.user_name) == (
        -1001234567890,
        "supergroup",
        "Taras Shevchuk",
    )
    message = parse_update(body).message
    assert message is not None and message.reply_to == 40


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"edited_message": _message(text="fixed typo", edit_date=1741600100)}, "edited message"),
        (
            {
                "message": _message(
                    chat={"id": -100200, "title": "MIRT shop", "type": "group"},
                    new_chat_members=[{"id": 9, "is_bot": False, "first_name": "Ivan"}],
                )
            },
            "chat members changed",
        ),
        (
            {"message": _message(sticker={"file_id": "CAACAgIAAxkBAAE", "width": 512, "height": 512, "emoji": "👍"})},
            "not a text message",
        ),
        (
            {
                "channel_post": {
                    "message_id": 3,
                    "date": 1741600000,
                    "chat": {"id": -100300, "title": "MIRT news", "type": "channel"},
                    "text": "New collection!",
                }
            },
            "channel post",
        ),
        (
            {
                "callback_query": {
                    "id": "4382bfdwdsb323b2d9",
                    "from": OLENA,
                    "message": _message(text="Choose a size"),
                    "chat_instance": "-8129385",
                    "data": "size:M",
                }
            },
            "callback query",
        ),
        ({"my_chat_member": {"chat": CHAT, "from": OLENA, "date": 1741600000}}, "chat member update"),
        ({"poll": {"id": "1", "question": "?", "options": []}}, "unsupported update"),
        ({"message": {**_message(text="hello from a bot"), "from": {**OLENA, "is_bot": True}}}, "sent by a bot"),
    ],
)
def test_updates_that_are_not_new_text_messages_are_ignored_with_a_reason(fields: dict[str, Any], reason: str) -> None:
    assert _classify(_update(**fields)) == Ignored(update_id=871234001, reason=reason)


def test_a_message_from_an_unknown_chat_type_is_bad_input() -> None:
    body = _update(message=_message(text="hi", chat={"id": 5, "type": "forum_topic_thread"}))

    with pytest.raises(BadInput) as refused:
        _classify(body)

    assert refused.value.code == "UNKNOWN_CHAT_TYPE"
    assert not refused.value.retryable


@pytest.mark.parametrize(
    ("text", "code"), [("", "EMPTY_TEXT"), (" \n\t ", "EMPTY_TEXT"), ("x" * 4097, "TEXT_TOO_LONG")]
)
def test_a_message_with_empty_or_overlong_text_is_bad_input(text: str, code: str) -> None:
    with pytest.raises(BadInput) as refused:
        _classify(_update(message=_message(text=text)))

    assert refused.value.code == code


@pytest.mark.parametrize(
    "body",
    [b"", b"{not json", b"\xff\xfe", b'"update"', b"[]", b"null"],
    ids=["empty", "broken", "binary", "str", "list", "null"],
)
def test_a_body_that_is_not_json_or_not_an_object_is_refused(body: bytes) -> None:
    with pytest.raises(BadInput) as refused:
        parse_update(body)

    assert refused.value.code == ("INVALID_UPDATE" if body in (b'"update"', b"[]", b"null") else "MALFORMED_JSON")


@pytest.mark.parametrize(
    "fields",
    [{}, {"update_id": "abc"}, {"update_id": 1, "message": {"message_id": 1, "date": 0}}],
    ids=["no-update-id", "text-update-id", "message-without-chat"],
)
def test_json_that_is_not_an_update_is_invalid_and_names_the_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(BadInput) as refused:
        parse_update(json.dumps(fields).encode())

    assert refused.value.code == "INVALID_UPDATE"
    assert refused.value.details["fields"]


def test_the_dedupe_key_is_the_same_for_a_redelivery_and_an_edit_but_differs_by_message_and_chat() -> None:
    first = _classify(_update(871234001, message=_message(52, text="hi")))
    again = _classify(_update(871234001, message=_message(52, text="hi")))
    assert isinstance(first, Incoming) and isinstance(again, Incoming)

    assert dedupe_key(first.chat_id, first.message_id) == dedupe_key(again.chat_id, again.message_id)
    assert dedupe_key(1, 52) == "telegram:1:52"
    assert len({dedupe_key(1, 52), dedupe_key(1, 53), dedupe_key(2, 52)}) == 3


# --- secret and text checks -------------------------------------------------------------------------------------


def test_the_right_secret_token_passes() -> None:
    check_secret("s3cr3t_Token-1", "s3cr3t_Token-1")


@pytest.mark.parametrize("given_token", [None, "", "s3cr3t_Token-2", "s3cr3t_Token-1 ", "ß3cr3t"])
def test_a_missing_or_wrong_secret_token_is_unauthorized(given_token: str | None) -> None:
    with pytest.raises(Unauthorized) as refused:
        check_secret(given_token, "s3cr3t_Token-1")

    assert refused.value.http_status == 401
    assert refused.value.code == "TELEGRAM_SECRET_INVALID"
    assert "s3cr3t" not in refused.value.message


def test_an_unconfigured_secret_refuses_every_request() -> None:
    with pytest.raises(Unauthorized):
        check_secret("", "")


def test_check_text_strips_and_accepts_exactly_4096_characters() -> None:
    assert check_text("  hello \n") == "hello"
    assert check_text("я" * MAX_TEXT_LENGTH) == "я" * MAX_TEXT_LENGTH


# --- splitting ----------------------------------------------------------------------------------------------------


def _assert_rebuilds(text: str, parts: list[str], limit: int) -> None:
    """Every part fits, none is blank, and ``text`` is the parts in order with only whitespace between and around."""
    assert all(0 < len(part) <= limit and part.strip() for part in parts)
    pos = 0
    for part in parts:
        found = text.find(part, pos)
        assert found >= 0, f"part {part!r} missing or out of order"
        assert text[pos:found].strip() == "", f"non-whitespace {text[pos:found]!r} lost"
        pos = found + len(part)
    assert text[pos:].strip() == ""


def test_a_text_within_the_limit_is_one_unchanged_part() -> None:
    assert split_text("  Привіт!\n\nЯк справи?  ", 100) == ["  Привіт!\n\nЯк справи?  "]
    assert split_text(" \n ", 100) == []


def test_splitting_prefers_paragraphs_then_lines_then_sentences_then_words() -> None:
    assert split_text("aaaa bbbb.\ncccc\n\ndddd eeee", 20) == ["aaaa bbbb.\ncccc", "dddd eeee"]
    assert split_text("aaaa. bbbb\ncccc dddd", 15) == ["aaaa. bbbb", "cccc dddd"]
    assert split_text("aaaa bbbb. cccc dddd", 15) == ["aaaa bbbb.", "cccc dddd"]
    assert split_text("aaaa bbbb cccc dddd", 15) == ["aaaa bbbb cccc", "dddd"]


def test_a_boundary_in_the_second_half_beats_a_better_kind_early_on() -> None:
    text = "aa\n\n" + "b" * 10 + " " + "c" * 10

    assert split_text(text, 20) == ["aa\n\n" + "b" * 10, "c" * 10]


def test_a_word_longer_than_the_limit_is_cut_hard_without_loss() -> None:
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_the_next_part_keeps_its_indentation_after_a_line_split() -> None:
    assert split_text("def f():\n    return 1", 12) == ["def f():", "    return 1"]


@given(
    st.text(alphabet=st.sampled_from(list("ab я.!?…»\n\t")), max_size=400),
    st.integers(min_value=1, max_value=60),
)
@example(" ?", 1)
@example("     xx yy", 2)
def test_split_parts_fit_the_limit_and_rebuild_the_text_modulo_split_whitespace(text: str, limit: int) -> None:
    parts = split_text(text, limit)

    _assert_rebuilds(text, parts, limit)


@given(st.text(max_size=300), st.integers(min_value=1, max_value=40))
def test_split_handles_any_unicode_text(text: str, limit: int) -> None:
    _assert_rebuilds(text, split_text(text, limit), limit)


# --- the Bot API client --------------------------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    """A running fake Bot API."""
    with FakeTelegram() as server:
        yield server


@pytest.fixture
async def client(fake: FakeTelegram) -> AsyncIterator[TelegramClient]:
    """A client of the fake with the right token."""
    async with TelegramClient(fake.token, api_url=fake.url, timeout_s=5) as telegram:
        yield telegram


async def test_send_message_replies_to_the_message_and_returns_the_sent_id(
    fake: FakeTelegram, client: TelegramClient
) -> None:
    ids = await client.send_message(380412233, "Так, сукня є в розмірі M.", reply_to=52)

    [sent] = fake.sent
    assert ids == [sent.message_id]
    assert (sent.chat_id, sent.text, sent.reply_to) == (380412233, "Так, сукня є в розмірі M.", 52)
    [request] = fake.requests
    assert request.path == f"/bot{fake.token}/sendMessage"
    assert request.json()["reply_parameters"] == {"message_id": 52, "allow_sending_without_reply": True}


async def test_a_10000_character_reply_is_sent_as_three_messages_in_order_and_only_the_first_replies(
    fake: FakeTelegram, client: TelegramClient
) -> None:
    paragraphs = [f"{i:03d} " + "слово " * 60 for i in range(28)]
    text = "\n\n".join(p.strip() for p in paragraphs)[:10_000]
    assert len(text) == 10_000

    ids = await client.send_message(380412233, text, reply_to=52)

    sent = fake.sent
    assert len(sent) == 3
    assert ids == [message.message_id for message in sent]
    assert ids == sorted(ids)
    assert [message.reply_to for message in sent] == [52, None, None]
    assert all(len(message.text) <= 4096 for message in sent)
    assert "\n\n".join(message.text for message in sent) == text


async def test_a_message_without_reply_to_carries_no_reply_parameters(
    fake: FakeTelegram, client: TelegramClient
) -> None:
    await client.send_message("380412233", "hello")

    assert "reply_parameters" not in fake.requests[0].json()
    assert fake.sent[0].reply_to is None


async def test_sending_blank_text_is_refused_before_any_request(fake: FakeTelegram, client: TelegramClient) -> None:
    with pytest.raises(BadInput) as refused:
        await client.send_message(1, " \n ")

    assert refused.value.code == "EMPTY_TEXT"
    assert fake.requests == []


async def test_send_chat_action_shows_typing(fake: FakeTelegram, client: TelegramClient) -> None:
    await client.send_chat_action(380412233)

    assert fake.actions == [(380412233, "typing")]
    assert fake.requests[0].path.endswith("/sendChatAction")


async def test_a_429_is_rate_limited_with_telegrams_retry_after_and_the_next_send_succeeds(
    fake: FakeTelegram, client: TelegramClient
) -> None:
    fake.rate_limit_next(retry_after=7)

    with pytest.raises(RateLimited) as limited:
        await client.send_message(380412233, "hi", reply_to=52)

    assert limited.value.code == "TELEGRAM_RATE_LIMITED"
    assert limited.value.retry_after == timedelta(seconds=7)
    assert limited.value.retryable
    assert fake.sent == []
    await client.send_message(380412233, "hi", reply_to=52)
    assert [message.text for message in fake.sent] == ["hi"]


async def test_a_429_without_retry_after_waits_the_default() -> None:
    answer = json_response(429, {"ok": False, "error_code": 429, "description": "Too Many Requests"})
    with FakeHttpServer(lambda _: answer) as server:
        async with TelegramClient("1:token", api_url=server.url) as telegram:
            with pytest.raises(RateLimited) as limited:
                await telegram.send_chat_action(1)

    assert limited.value.retry_after == timedelta(seconds=5)


async def test_chat_not_found_is_permanent(fake: FakeTelegram, client: TelegramClient) -> None:
    fake.forget_chat(404404)

    with pytest.raises(BadInput) as refused:
        await client.send_message(404404, "hi")

    assert refused.value.code == "CHAT_NOT_FOUND"
    assert not refused.value.retryable
    assert refused.value.to_application_error().non_retryable


async def test_another_bad_request_is_permanent_and_carries_telegrams_description() -> None:
    answer = json_response(
        400, {"ok": False, "error_code": 400, "description": "Bad Request: can't parse entities: unclosed tag"}
    )
    with FakeHttpServer(lambda _: answer) as server:
        async with TelegramClient("1:token", api_url=server.url) as telegram:
            with pytest.raises(BadInput) as refused:
                await telegram.send_message(1, "<b>hi")

    assert refused.value.code == "TELEGRAM_BAD_REQUEST"
    assert "can't parse entities" in refused.value.message


async def test_a_group_migrated_to_a_supergroup_names_the_new_chat() -> None:
    answer = json_response(
        400,
        {
            "ok": False,
            "error_code": 400,
            "description": "Bad Request: group chat was upgraded to a supergroup chat",
            "parameters": {"migrate_to_chat_id": -1001234567890},
        },
    )
    with FakeHttpServer(lambda _: answer) as server:
        async with TelegramClient("1:token", api_url=server.url) as telegram:
            with pytest.raises(BadInput) as refused:
                await telegram.send_message(-100200, "hi")

    assert refused.value.code == "CHAT_MIGRATED"
    assert refused.value.details == {"migrate_to_chat_id": -1001234567890}


async def test_a_blocked_bot_is_permanent(fake: FakeTelegram, client: TelegramClient) -> None:
    fake.block_chat(380412233)

    with pytest.raises(BadInput) as refused:
        await client.send_message(380412233, "hi")

    assert refused.value.code == "BOT_BLOCKED"
    assert "blocked by the user" in refused.value.message


async def test_a_wrong_token_is_permanent_and_never_appears_in_the_error(fake: FakeTelegram) -> None:
    token = "987654321:AAWrongTokenSecretPart"
    async with TelegramClient(token, api_url=fake.url) as telegram:
        with pytest.raises(BadInput) as refused:
            await telegram.send_message(1, "hi")

    assert refused.value.code == "TELEGRAM_TOKEN_INVALID"
    assert not refused.value.retryable
    assert token not in json.dumps(refused.value.to_dict())
    assert fake.requests[0].path == f"/bot{token}/sendMessage"


async def test_an_unknown_bot_path_is_token_invalid() -> None:
    answer = json_response(404, {"ok": False, "error_code": 404, "description": "Not Found"})
    with FakeHttpServer(lambda _: answer) as server:
        async with TelegramClient("1:token", api_url=server.url) as telegram:
            with pytest.raises(BadInput) as refused:
                await telegram.send_chat_action(1)

    assert refused.value.code == "TELEGRAM_TOKEN_INVALID"


async def test_server_errors_are_retryable_and_the_send_succeeds_after_them(
    fake: FakeTelegram, client: TelegramClient
) -> None:
    fake.fail_next(500, count=2)

    for _ in range(2):
        with pytest.raises(ExternalServiceError) as failed:
            await client.send_message(380412233, "hi")
        assert failed.value.code == "TELEGRAM_UNAVAILABLE"
        assert failed.value.retryable

    assert len(await client.send_message(380412233, "hi")) == 1
    assert len(fake.sent) == 1


async def test_a_failure_after_some_parts_were_sent_names_the_sent_ones() -> None:
    answers = [
        json_response(200, {"ok": True, "result": {"message_id": 11}}),
        json_response(502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}),
    ]
    with FakeHttpServer(lambda _: answers.pop(0)) as server:
        async with TelegramClient("1:token", api_url=server.url) as telegram:
            with pytest.raises(ExternalServiceError) as failed:
                await telegram.send_message(1, "a" * 4096 + " " + "b" * 10, reply_to=5)

    assert failed.value.details == {"sent_message_ids": [11]}
    assert [request.json()["text"] for request in server.requests] == ["a" * 4096, "b" * 10]


async def test_an_unreachable_bot_api_is_retryable_and_hides_the_token() -> None:
    token = "555:AASecretTokenNeverShown"
    async with TelegramClient(token, api_url=f"http://127.0.0.1:{free_port()}") as telegram:
        with pytest.raises(ExternalServiceError) as failed:
            await telegram.send_message(1, "hi")

    assert failed.value.code == "TELEGRAM_UNAVAILABLE"
    assert failed.value.retryable
    assert token not in str(failed.value)
    assert failed.value.__cause__ is None and failed.value.__suppress_context__


async def test_a_slow_bot_api_times_out_as_retryable() -> None:
    def slow(_: Any) -> Any:
        time.sleep(1.0)
        return json_response(200, {"ok": True, "result": True})

    with FakeHttpServer(slow) as server:
        async with TelegramClient("1:token", api_url=server.url, timeout_s=0.2) as telegram:
            with pytest.raises(ExternalServiceError) as failed:
                await telegram.send_chat_action(1)

    assert "within 0.2 s" in failed.value.message


async def test_an_html_error_page_from_a_proxy_is_retryable() -> None:
    with FakeHttpServer(lambda _: (502, {"Content-Type": "text/html"}, b"<html>Bad Gateway</html>")) as server:
        async with TelegramClient("1:token", api_url=server.url) as telegram:
            with pytest.raises(ExternalServiceError):
                await telegram.send_message(1, "hi")


@pytest.mark.parametrize("token", ["", "  ", "12/../x"])
def test_an_empty_or_malformed_token_is_refused_up_front(token: str) -> None:
    with pytest.raises(BadInput) as refused:
        TelegramClient(token)

    assert refused.value.code == "TELEGRAM_TOKEN_INVALID"
