"""Payload encryption: an AES-256-GCM payload codec with rotating keys, and the data converter every client uses.

Every payload Temporal stores (workflow and activity inputs and results, queries, signals, failures' details) is
replaced by one whose ``data`` is ``nonce ‖ AES-GCM(serialized original Payload)`` and whose metadata says
``encoding: binary/encrypted`` and ``encryption-key-id: <id>``; the key id is the associated data, so a payload
cannot be passed off as another key's. Payloads without the encrypted encoding (histories recorded before
encryption) decode unchanged. Keys come from ``CONVEYOR_PAYLOAD_KEYS`` or a key file, never from code: the first
key encrypts, every listed key decrypts (rotation). A local install (Temporal on loopback) with neither gets a key
file under its var dir, created once with mode 0600, so every process of that install shares it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from conveyor.errors import BadInput, ConveyorError

if TYPE_CHECKING:
    from conveyor.settings import Settings

#: Metadata ``encoding`` of an encrypted payload.
ENCRYPTED_ENCODING = b"binary/encrypted"
#: Metadata key naming the key a payload was encrypted with.
KEY_ID_METADATA = "encryption-key-id"
#: A key id: short, printable, safe in metadata, logs and file lines.
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
#: AES-256: keys are 32 bytes.
KEY_BYTES = 32
#: GCM's standard 96-bit nonce, random per payload.
NONCE_BYTES = 12
#: Name of a local install's key file and codec token file under ``var_dir``.
LOCAL_KEY_FILE = "payload-keys"
LOCAL_CODEC_TOKEN_FILE = "codec-token"


@dataclass(frozen=True)
class KeyRing:
    """The payload keys by id, in order: the first encrypts, all of them decrypt."""

    keys: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise BadInput("no payload key given", code="PAYLOAD_KEYS_INVALID")
        ids = [key_id for key_id, _ in self.keys]
        if len(set(ids)) != len(ids):
            raise BadInput("a payload key id is listed twice", code="PAYLOAD_KEYS_INVALID", details={"key_ids": ids})

    @property
    def current(self) -> str:
        """Id of the key new payloads are encrypted with."""
        return self.keys[0][0]

    def get(self, key_id: str) -> bytes | None:
        """The key with this id, if the ring has it."""
        return next((key for kid, key in self.keys if kid == key_id), None)

    @classmethod
    def parse(cls, text: str, *, source: str = "CONVEYOR_PAYLOAD_KEYS") -> KeyRing:
        """Keys from ``id:base64`` entries separated by commas or lines (``#`` starts a comment); first is current."""
        entries = [e.strip() for line in text.splitlines() for e in line.split("#", 1)[0].split(",")]
        keys: list[tuple[str, bytes]] = []
        for entry in filter(None, entries):
            key_id, sep, encoded = entry.partition(":")
            key_id = key_id.strip()
            if not sep or not KEY_ID_PATTERN.match(key_id):
                raise BadInput(
                    f"{source}: each entry is id:base64-key with an id of letters, digits, '.', '_' or '-'",
                    code="PAYLOAD_KEYS_INVALID",
                )
            try:
                key = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != KEY_BYTES:
                raise BadInput(
                    f"{source}: key {key_id!r} is not {KEY_BYTES} bytes of base64 (AES-256)",
                    code="PAYLOAD_KEYS_INVALID",
                    details={"key_id": key_id},
                )
            keys.append((key_id, key))
        if not keys:
            raise BadInput(f"{source}: no payload key in it", code="PAYLOAD_KEYS_INVALID")
        return cls(tuple(keys))

    @classmethod
    def generate(cls, prefix: str = "key") -> KeyRing:
        """A ring of one fresh random key whose id is ``<prefix>-<8 random hex>``."""
        return cls(((f"{prefix}-{secrets.token_hex(4)}", AESGCM.generate_key(bit_length=256)),))

    def rotated(self, new: KeyRing) -> KeyRing:
        """``new``'s keys first (the first encrypts), then this ring's keys that ``new`` does not list."""
        kept = tuple((kid, key) for kid, key in self.keys if new.get(kid) is None)
        return KeyRing(new.keys + kept)

    def render(self, separator: str = "\n") -> str:
        """The ring in the form :meth:`parse` reads (a key file with ``\\n``, the setting with ``,``)."""
        return separator.join(f"{kid}:{base64.b64encode(key).decode()}" for kid, key in self.keys)


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over the whole serialized payload; the key id is in the metadata and bound as associated data."""

    def __init__(self, keys: KeyRing) -> None:
        self.keys = keys
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.keys}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt each payload with the current key."""
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt encrypted payloads with the key their metadata names; others pass unchanged."""
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        """One payload, encrypted with the current key under a fresh random nonce."""
        key_id = self.keys.current
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(
            metadata={"encoding": ENCRYPTED_ENCODING, KEY_ID_METADATA: key_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        """The original of an encrypted payload (an unencrypted one is returned as it is)."""
        if payload.metadata.get("encoding") != ENCRYPTED_ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise ConveyorError(
                f"payload encrypted with unknown key id {key_id!r}; known key ids: {', '.join(self._ciphers)}",
                code="PAYLOAD_KEY_UNKNOWN",
                details={"key_id": key_id},
            )
        data = payload.data
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            raise ConveyorError(
                f"payload does not decrypt with key {key_id!r} (a different key under the same id, or tampered)",
                code="PAYLOAD_UNREADABLE",
                details={"key_id": key_id},
            ) from None
        return Payload.FromString(plain)


def process_keys(prefix: str = "ephemeral") -> KeyRing:
    """The payload keys of this process and of every process it starts (which inherit its environment).

    ``CONVEYOR_PAYLOAD_KEYS`` when set; otherwise a fresh key is generated and put there first. For servers that
    live as long as one run (tests, benchmarks), whose worker processes must share the client's key.
    """
    os.environ.setdefault("CONVEYOR_PAYLOAD_KEYS", KeyRing.generate(prefix).render(","))
    return KeyRing.parse(os.environ["CONVEYOR_PAYLOAD_KEYS"])


def encrypting_converter(keys: KeyRing) -> DataConverter:
    """The pydantic data converter with payloads encrypted by ``keys``; failures' messages and stack traces too."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def is_local_install(settings: Settings) -> bool:
    """Whether Temporal runs on this machine's loopback (the embedded stack), where local secret files are made."""
    host = settings.temporal_address.rpartition(":")[0].strip("[]") or "127.0.0.1"
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def write_secret_once(path: Path, content: str) -> str:
    """Create ``path`` with mode 0600 holding ``content`` unless it exists; return what the file holds.

    The file appears whole or not at all (written aside, then hard-linked into place), so processes racing to
    create it all end up reading the one that won.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        aside = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(content)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(aside, path)
            except FileExistsError:
                pass
        finally:
            aside.unlink(missing_ok=True)
    return path.read_text()


def _read_secret_file(path: Path, what: str) -> str:
    """A configured secret file's text, or a clear error when it cannot be read."""
    try:
        return path.read_text()
    except OSError as err:
        raise BadInput(f"cannot read the {what} file {path}: {err.strerror}", code="SECRET_FILE_UNREADABLE") from None


def local_key_file(settings: Settings) -> Path:
    """Where a local install keeps its payload keys."""
    return settings.var_dir.resolve() / LOCAL_KEY_FILE


def load_keys(settings: Settings) -> KeyRing:
    """The payload keys: ``payload_keys``, else ``payload_key_file``, else a local install's own key file."""
    if settings.payload_keys is not None and settings.payload_keys.get_secret_value().strip():
        return KeyRing.parse(settings.payload_keys.get_secret_value())
    if settings.payload_key_file:
        path = Path(settings.payload_key_file)
        return KeyRing.parse(_read_secret_file(path, "payload key"), source=str(path))
    if not is_local_install(settings):
        raise BadInput(
            "no payload key: set CONVEYOR_PAYLOAD_KEYS or CONVEYOR_PAYLOAD_KEY_FILE (the same keys on every "
            "process that talks to Temporal)",
            code="PAYLOAD_KEYS_MISSING",
        )
    path = local_key_file(settings)
    return KeyRing.parse(write_secret_once(path, KeyRing.generate("local").render() + "\n"), source=str(path))


def data_converter(settings: Settings) -> DataConverter:
    """The encrypting data converter for these settings' keys."""
    return encrypting_converter(load_keys(settings))


def codec_token(settings: Settings) -> str | None:
    """The codec server's operator token: the setting, its file, a local install's own file, else none."""
    if settings.codec_token is not None and settings.codec_token.get_secret_value().strip():
        return settings.codec_token.get_secret_value().strip()
    if settings.codec_token_file:
        return _read_secret_file(Path(settings.codec_token_file), "codec token").strip() or None
    if not is_local_install(settings):
        return None
    return write_secret_once(settings.var_dir.resolve() / LOCAL_CODEC_TOKEN_FILE, secrets.token_urlsafe(32)).strip()


def codec_session_value(token: str) -> str:
    """The codec sign-in cookie's value: derived from the token, so the cookie jar never holds the token itself."""
    return hmac.new(token.encode(), b"conveyor codec session", hashlib.sha256).hexdigest()
