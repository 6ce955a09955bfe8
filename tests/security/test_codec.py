"""Issue 12, item 2: payloads are encrypted (AES-256-GCM, rotating keys), and the codec server decodes them for the
Web UI only with the operator's credential."""

from __future__ import annotations

import base64
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import MarkerRecordedEventAttributes
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from conveyor.codec import (
    ENCRYPTED_ENCODING,
    KEY_ID_METADATA,
    EncryptionCodec,
    KeyRing,
    codec_token,
    data_converter,
    encrypting_converter,
    load_keys,
)
from conveyor.errors import BadInput, ConveyorError
from conveyor.settings import Settings
from conveyor.temporal import dev_server_command
from tests.helpers import assert_eventually
from tests.helpers.stack import Stack

SAMPLE_CSV = b"name,city,amount\nAda,London,12\nGrace,New York,7\n"


def _plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=text.encode())


async def test_payloads_are_encrypted_with_a_fresh_nonce_and_decode_to_the_originals() -> None:
    codec = EncryptionCodec(KeyRing.generate("k"))
    original = [_plain('{"url": "http://intranet.example/secret"}'), _plain('"persona query"')]

    encoded = await codec.encode(original)
    again = await codec.encode(original)

    for payload in encoded:
        assert payload.metadata["encoding"] == ENCRYPTED_ENCODING
        assert payload.metadata[KEY_ID_METADATA] == codec.keys.current.encode()
        assert b"secret" not in payload.data and b"persona" not in payload.data
    assert encoded[0].data[:12] != again[0].data[:12], "a nonce is never reused"
    assert await codec.decode(encoded) == original


async def test_unencrypted_payloads_decode_unchanged() -> None:
    codec = EncryptionCodec(KeyRing.generate("k"))
    recorded_before_encryption = [_plain('{"task_id": "t-1"}')]

    assert await codec.decode(recorded_before_encryption) == recorded_before_encryption


async def test_rotation_old_key_still_decodes_and_new_payloads_use_the_new_key() -> None:
    old = KeyRing.generate("old")
    before = await EncryptionCodec(old).encode([_plain('"written under the old key"')])
    rotated = KeyRing.parse(KeyRing.generate("new").render(",") + "," + old.render(","))

    codec = EncryptionCodec(rotated)
    after = await codec.encode([_plain('"written under the new key"')])

    assert rotated.current.startswith("new-")
    assert after[0].metadata[KEY_ID_METADATA] == rotated.current.encode()
    assert await codec.decode(before) == [_plain('"written under the old key"')]
    assert await codec.decode(after) == [_plain('"written under the new key"')]


async def test_an_unknown_key_id_fails_clearly_naming_it() -> None:
    retired = KeyRing.generate("retired")
    sealed = await EncryptionCodec(retired).encode([_plain('"x"')])

    with pytest.raises(ConveyorError) as caught:
        await EncryptionCodec(KeyRing.generate("current")).decode(sealed)

    assert caught.value.code == "PAYLOAD_KEY_UNKNOWN"
    assert retired.current in caught.value.message
    assert caught.value.details == {"key_id": retired.current}


async def test_the_key_id_is_bound_to_the_ciphertext() -> None:
    ring = KeyRing.parse(KeyRing.generate("a").render(",") + "," + KeyRing.generate("b").render(","))
    sealed = await EncryptionCodec(ring).encode([_plain('"x"')])
    relabelled = Payload(
        metadata={**sealed[0].metadata, KEY_ID_METADATA: ring.keys[1][0].encode()}, data=sealed[0].data
    )

    with pytest.raises(ConveyorError) as caught:
        await EncryptionCodec(ring).decode([relabelled])

    assert caught.value.code == "PAYLOAD_UNREADABLE"


@pytest.mark.parametrize(
    "value",
    ["k1", "k1:" + base64.b64encode(b"short").decode(), "bad id:" + base64.b64encode(os.urandom(32)).decode()],
    ids=["no-key", "not-aes-256", "bad-id"],
)
def test_malformed_keys_are_refused_without_echoing_them(value: str) -> None:
    with pytest.raises(BadInput) as caught:
        KeyRing.parse(value)

    assert caught.value.code == "PAYLOAD_KEYS_INVALID"
    secret = value.partition(":")[2]
    assert not secret or secret not in caught.value.message


def test_keys_come_from_the_setting_or_a_key_file(tmp_path: Path) -> None:
    ring = KeyRing.generate("file")
    key_file = tmp_path / "keys"
    key_file.write_text("# current first\n" + ring.render() + "\n")

    from_setting = Settings(var_dir=tmp_path, payload_keys=ring.render(","))
    from_file = Settings(var_dir=tmp_path, payload_keys=None, payload_key_file=str(key_file))

    assert load_keys(from_setting) == ring
    assert load_keys(from_file) == ring
    assert ring.render(",") not in repr(from_setting), "the keys are a secret: never printed with the settings"


def test_a_local_install_gets_one_private_key_file_every_process_shares(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, payload_keys=None, temporal_address="127.0.0.1:7233")

    first = load_keys(settings)
    second = load_keys(Settings(var_dir=tmp_path, payload_keys=None, temporal_address="localhost:7233"))

    assert first == second
    key_file = tmp_path / "payload-keys"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    token = codec_token(Settings(var_dir=tmp_path, codec_token=None))
    assert token and stat.S_IMODE((tmp_path / "codec-token").stat().st_mode) == 0o600


def test_a_remote_temporal_without_keys_is_refused(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, payload_keys=None, temporal_address="temporal:7233")

    with pytest.raises(BadInput) as caught:
        data_converter(settings)

    assert caught.value.code == "PAYLOAD_KEYS_MISSING"
    assert not (tmp_path / "payload-keys").exists()


def test_the_embedded_web_ui_decodes_through_the_api_codec_endpoint(tmp_path: Path) -> None:
    cmd = dev_server_command(Settings(var_dir=tmp_path, api_port=8123))

    assert cmd[cmd.index("--ui-codec-endpoint") + 1] == "http://127.0.0.1:8123/codec"


def _payloads(message: Message) -> Iterator[Payload]:
    """Every Payload inside a protobuf message, except search attributes (the server indexes those in clear) and
    the core SDK's own marker bookkeeping (patch ids; a local activity's id, type, attempt and times), which it writes
    itself, not through the data converter; a local activity's result is in the marker's ``result`` and checked."""
    if isinstance(message, Payload):
        yield message
        return
    if isinstance(message, MarkerRecordedEventAttributes) and message.marker_name.startswith("core_"):
        for name, details in message.details.items():
            if message.marker_name == "core_local_activity" and name == "result":
                yield from details.payloads
        return
    for field, value in message.ListFields():
        if field.name == "search_attributes" or field.type != field.TYPE_MESSAGE:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            items = value.values()
        elif isinstance(value, Message):
            items = [value]
        else:
            items = list(value)
        for item in items:
            if isinstance(item, Message):
                yield from _payloads(item)


def _client_with(client: Client, converter: DataConverter) -> Client:
    """A client of the same server and namespace whose data converter is ``converter``."""
    config = client.config()
    config["data_converter"] = converter
    return Client(**config)


async def test_a_finished_run_leaves_no_plaintext_in_temporal_and_the_codec_reads_it(stack: Stack) -> None:
    marker = f"codec-marker-{uuid.uuid4().hex}"
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        created = await http.post(
            "/api/tasks",
            data={"tool_id": "profile-my-data"},
            files=[("files", (f"{marker}.csv", SAMPLE_CSV, "text/csv"))],
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["task_id"]
        queued = await http.post(f"/api/tasks/{task_id}/process")
        assert queued.status_code == 202, queued.text

        async def finished() -> str:
            task = (await http.get(f"/api/tasks/{task_id}")).json()
            assert task["status"] in ("completed", "failed", "cancelled"), task["status"]
            return str(task["workflow_id"])

        workflow_id = await assert_eventually(finished, within_s=120, interval=0.3)

    raw = await _client_with(stack.client, pydantic_data_converter).get_workflow_handle(workflow_id).fetch_history()
    stored = b"".join(event.SerializeToString() for event in raw.events)
    payloads = [p for event in raw.events for p in _payloads(event)]
    assert marker.encode() not in stored, "an uploaded file's name is readable in Temporal's history"
    assert payloads and all(p.metadata["encoding"] == ENCRYPTED_ENCODING for p in payloads)

    codec = stack.client.data_converter.payload_codec
    assert codec is not None
    decoded = await codec.decode(payloads)
    assert any(marker.encode() in p.data for p in decoded), "the codec client reads the history back"


def _codec_body(payloads: list[Payload]) -> dict[str, list[dict[str, object]]]:
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    }


def _from_body(body: dict[str, list[dict[str, dict[str, str] | str]]]) -> list[Payload]:
    out = []
    for item in body["payloads"]:
        metadata = item.get("metadata", {})
        assert isinstance(metadata, dict)
        data = item.get("data", "")
        assert isinstance(data, str)
        out.append(Payload(metadata={k: base64.b64decode(v) for k, v in metadata.items()}, data=base64.b64decode(data)))
    return out


async def test_codec_server_decodes_with_the_operator_token_and_refuses_without(stack: Stack) -> None:
    token = codec_token(stack.settings)
    assert token
    originals = [_plain('{"url": "http://127.0.0.1/private"}'), _plain('"persona query"')]
    codec = stack.client.data_converter.payload_codec
    assert codec is not None
    sealed = await codec.encode(originals)
    _, tenant_key = await stack.new_user()
    headers = {"X-Namespace": stack.settings.temporal_namespace}

    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
        anonymous = await http.post("/codec/decode", json=_codec_body(sealed), headers=headers)
        tenant = await http.post(
            "/codec/decode", json=_codec_body(sealed), headers={**headers, "X-API-Key": tenant_key}
        )
        wrong = await http.post(
            "/codec/decode", json=_codec_body(sealed), headers={**headers, "Authorization": "Bearer not-the-token"}
        )
        operator = await http.post(
            "/codec/decode", json=_codec_body(sealed), headers={**headers, "Authorization": f"Bearer {token}"}
        )
        encoded = await http.post(
            "/codec/encode", json=_codec_body(originals), headers={**headers, "Authorization": f"Bearer {token}"}
        )

    assert [anonymous.status_code, tenant.status_code, wrong.status_code] == [401, 401, 401]
    assert b"private" not in anonymous.content
    assert operator.status_code == 200, operator.text
    assert _from_body(operator.json()) == originals
    assert encoded.status_code == 200, encoded.text
    assert all(p.metadata["encoding"] == ENCRYPTED_ENCODING for p in _from_body(encoded.json()))
    assert await codec.decode(_from_body(encoded.json())) == originals


async def test_the_web_ui_signs_in_once_and_its_origin_alone_gets_cors(stack: Stack) -> None:
    token = codec_token(stack.settings)
    assert token
    codec = stack.client.data_converter.payload_codec
    assert codec is not None
    sealed = await codec.encode([_plain('"decoded for the UI"')])
    ui = stack.settings.temporal_ui_url.rstrip("/")
    preflight_headers = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}

    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
        refused = await http.post("/codec/login", data={"token": "guess"})
        signed_in = await http.post("/codec/login", data={"token": token})
        cookie = signed_in.cookies.get("conveyor_codec")
        from_ui = await http.post(
            "/codec/decode", json=_codec_body(sealed), headers={"Origin": ui, "X-Namespace": "default"}
        )
        ui_preflight = await http.options("/codec/decode", headers={"Origin": ui, **preflight_headers})
        evil_preflight = await http.options(
            "/codec/decode", headers={"Origin": "http://evil.example", **preflight_headers}
        )

    assert refused.status_code == 401 and "conveyor_codec" not in refused.cookies
    assert signed_in.status_code == 303 and signed_in.headers["location"] == stack.settings.temporal_ui_url
    set_cookie = signed_in.headers["set-cookie"].lower()
    assert cookie and token not in cookie
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie and "path=/codec" in set_cookie
    assert from_ui.status_code == 200, from_ui.text
    assert _from_body(from_ui.json()) == [_plain('"decoded for the UI"')]
    assert from_ui.headers["access-control-allow-origin"] == ui
    assert from_ui.headers["access-control-allow-credentials"] == "true"
    assert ui_preflight.headers["access-control-allow-origin"] == ui
    assert "x-namespace" in ui_preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in evil_preflight.headers


async def test_a_payload_under_an_unknown_key_is_a_clear_400_from_the_codec_server(stack: Stack) -> None:
    token = codec_token(stack.settings)
    assert token
    stranger = await EncryptionCodec(KeyRing.generate("elsewhere")).encode([_plain('"x"')])

    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
        resp = await http.post(
            "/codec/decode", json=_codec_body(stranger), headers={"Authorization": f"Bearer {token}"}
        )

    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "PAYLOAD_KEY_UNKNOWN"
    assert stranger[0].metadata[KEY_ID_METADATA].decode() in resp.json()["error"]["message"]


def test_the_suite_encrypts_too() -> None:
    from tests.helpers import DATA_CONVERTER

    assert isinstance(DATA_CONVERTER.payload_codec, EncryptionCodec)
    assert isinstance(encrypting_converter(KeyRing.generate()).payload_codec, EncryptionCodec)
