"""The blob stores: one behaviour suite run against a local folder and a real S3-compatible server (moto)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from conveyor import storage
from conveyor.errors import BadInput, ExternalServiceError, NotFound
from conveyor.storage import BlobStore, LocalBlobStore, S3BlobStore, blob_store_from_url

BUCKET = "conveyor-test"
MiB = 1024 * 1024


# --------------------------------------------------------------------------------------------------------
# fixtures


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _client(endpoint: str, **config: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, **config),
    )


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real moto S3 server process on a free port, with the test bucket created."""
    binary = Path(sys.executable).parent / "moto_server"
    assert binary.exists(), f"{binary} is missing: install the dev extras (moto[server])"
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    try:
        client = _client(endpoint, connect_timeout=1, retries={"total_max_attempts": 1})
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"moto_server exited with {proc.returncode}: {log_path.read_text()}")
            try:
                client.list_buckets()
                break
            except (BotoCoreError, ClientError):  # not listening yet
                if time.monotonic() > deadline:
                    pytest.fail(f"moto_server did not answer on {endpoint}: {log_path.read_text()}")
                time.sleep(0.1)
        client.create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """Each store kind; every S3 test gets its own key prefix in the shared bucket."""
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    endpoint: str = request.getfixturevalue("s3_endpoint")
    return S3BlobStore(BUCKET, f"t-{uuid.uuid4().hex}", _client(endpoint))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------------
# the shared behaviour suite


def test_bytes_round_trip_and_stat(store: BlobStore) -> None:
    info = store.put_bytes("docs/readme.txt", b"hello blobs", "text/plain; charset=utf-8")

    assert info.key == "docs/readme.txt"
    assert info.size == 11
    assert info.content_type == "text/plain; charset=utf-8"
    assert store.get_bytes("docs/readme.txt") == b"hello blobs"
    stat = store.stat("docs/readme.txt")
    assert (stat.key, stat.size, stat.content_type) == ("docs/readme.txt", 11, "text/plain; charset=utf-8")
    assert stat.modified.tzinfo is not None
    assert abs(stat.modified - datetime.now(UTC)) < timedelta(minutes=5)


def test_overwrite_replaces_content_and_type(store: BlobStore) -> None:
    store.put_bytes("shots/0001.png", b"v1", "application/x-custom")
    store.put_bytes("shots/0001.png", b"version 2")

    assert store.get_bytes("shots/0001.png") == b"version 2"
    stat = store.stat("shots/0001.png")
    assert stat.size == 9
    assert stat.content_type == "image/png"  # not given: guessed from the key, same on both stores


def test_content_type_guessed_or_default(store: BlobStore) -> None:
    assert store.put_bytes("a/report.csv", b"x,y\n").content_type == "text/csv"
    assert store.put_bytes("a/raw", b"\x00\x01").content_type == storage.DEFAULT_CONTENT_TYPE
    assert store.stat("a/report.csv").content_type == "text/csv"
    assert store.stat("a/raw").content_type == "application/octet-stream"


def test_large_file_round_trip_streams(store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(12 * MiB))
    expected = _file_sha(src)

    info = store.put_file("videos/big.mp4", src)

    assert info.size == 12 * MiB
    assert info.content_type == "video/mp4"
    assert store.stat("videos/big.mp4").size == 12 * MiB
    if isinstance(store, S3BlobStore):  # went up in parts (ETag "<md5>-<parts>")
        head = store.client.head_object(Bucket=store.bucket, Key=f"{store.prefix}/videos/big.mp4")
        assert head["ETag"].strip('"').endswith("-2")
    dest = store.download("videos/big.mp4", tmp_path / "out" / "copy.mp4")
    assert dest == tmp_path / "out" / "copy.mp4"
    assert _file_sha(dest) == expected
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy.mp4"]  # no temporary file left behind
    chunks = list(store.iter_chunks("videos/big.mp4"))
    assert len(chunks) >= 12 and all(len(c) <= MiB for c in chunks)
    assert _sha(b"".join(chunks)) == expected
    with store.open("videos/big.mp4") as stream:
        assert stream.read(16) == src.read_bytes()[:16]


def test_put_file_with_content_type(store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.write_bytes(b"col\n1\n")

    info = store.put_file("uploads/data", src, "text/csv")

    assert (info.size, info.content_type) == (6, "text/csv")
    assert store.stat("uploads/data").content_type == "text/csv"
    assert store.get_bytes("uploads/data") == b"col\n1\n"


@pytest.mark.parametrize(
    "call",
    [
        lambda s, d: s.get_bytes("nope/missing.bin"),
        lambda s, d: s.stat("nope/missing.bin"),
        lambda s, d: s.open("nope/missing.bin"),
        lambda s, d: s.iter_chunks("nope/missing.bin"),
        lambda s, d: s.download("nope/missing.bin", d / "dest.bin"),
    ],
    ids=["get_bytes", "stat", "open", "iter_chunks", "download"],
)
def test_missing_blob_is_not_found(store: BlobStore, tmp_path: Path, call: Callable[..., Any]) -> None:
    store.put_bytes("nope/other.bin", b"x")  # the folder / prefix exists, the key does not

    with pytest.raises(NotFound) as err:
        call(store, tmp_path)

    assert err.value.code == "BLOB_NOT_FOUND"
    assert err.value.http_status == 404
    assert not (tmp_path / "dest.bin").exists()
    assert store.exists("nope/missing.bin") is False


def test_move_file_stores_content_and_takes_the_file(store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "scratch" / "table.parquet"
    src.parent.mkdir()
    src.write_bytes(b"PAR1" + bytes(range(256)) * 100)
    info = store.move_file("work/agent/0.parquet", src, "application/vnd.apache.parquet")
    assert not src.exists()
    assert info.size == 4 + 25_600
    assert store.get_bytes("work/agent/0.parquet")[:4] == b"PAR1"
    assert store.stat("work/agent/0.parquet").content_type == "application/vnd.apache.parquet"


def test_exists_and_delete(store: BlobStore) -> None:
    store.put_bytes("jobs/1/out.json", b"{}")
    assert store.exists("jobs/1/out.json")

    store.delete("jobs/1/out.json")

    assert not store.exists("jobs/1/out.json")
    store.delete("jobs/1/out.json")  # deleting twice is fine (webhook redeliveries, retried cleanups)
    assert list(store.list("jobs/")) == []


def test_delete_prefix_counts(store: BlobStore) -> None:
    for i in range(3):
        store.put_bytes(f"sess/1/shot-{i}.png", b"png")
    store.put_bytes("sess/2/shot-0.png", b"png", "image/x-custom")
    store.put_bytes("sess/2/deep/log.txt", b"log")
    store.put_bytes("session.txt", b"other")

    assert store.delete_prefix("sess/1/") == 3
    assert store.delete_prefix("sess/1/") == 0
    assert [b.key for b in store.list("sess/")] == ["sess/2/deep/log.txt", "sess/2/shot-0.png"]
    assert store.delete_prefix("sess/") == 2
    assert [b.key for b in store.list()] == ["session.txt"]
    with pytest.raises(BadInput) as err:
        store.delete_prefix("")
    assert err.value.code == "BAD_BLOB_KEY"
    assert store.exists("session.txt")


def test_list_by_prefix(store: BlobStore) -> None:
    store.put_bytes("reports/2024-01.csv", b"a" * 10)
    store.put_bytes("reports/2024-02.csv", b"b" * 20, "text/x-special")  # local store writes a sidecar
    store.put_bytes("reports/2025-01.csv", b"c")
    store.put_bytes("reports/archive/2023.csv", b"d")
    store.put_bytes("reportsX/other.csv", b"e")

    assert [(b.key, b.size) for b in store.list("reports/2024-")] == [
        ("reports/2024-01.csv", 10),
        ("reports/2024-02.csv", 20),
    ]
    assert [b.key for b in store.list("reports/")] == [
        "reports/2024-01.csv",
        "reports/2024-02.csv",
        "reports/2025-01.csv",
        "reports/archive/2023.csv",
    ]
    assert [b.key for b in store.list("reports")][-1] == "reportsX/other.csv"
    assert len(list(store.list())) == 5
    assert list(store.list("nothing/here/")) == []


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../escape",
        "a/../../b",
        "a\\b",
        "a//b",
        "a/",
        "./a",
        ".hidden",
        "a/.b",
        "x\x00y",
        "n" * 201,
    ],
)
def test_bad_keys_rejected(store: BlobStore, tmp_path: Path, key: str) -> None:
    for call in (lambda: store.put_bytes(key, b"x"), lambda: store.get_bytes(key), lambda: store.exists(key)):
        with pytest.raises(BadInput) as err:
            call()
        assert err.value.code == "BAD_BLOB_KEY"
        assert err.value.http_status == 400
    assert not (tmp_path / "escape").exists()
    assert list(store.list()) == []


def test_local_path(store: BlobStore) -> None:
    store.put_bytes("files/a.txt", b"on disk")

    path = store.local_path("files/a.txt")

    if isinstance(store, LocalBlobStore):
        assert path is not None and path.is_file() and path.read_bytes() == b"on disk"
        assert store.root in path.parents
        with pytest.raises(NotFound):
            store.local_path("files/missing.txt")
    else:
        assert path is None


async def test_async_callers_use_to_thread(store: BlobStore) -> None:
    await asyncio.to_thread(store.put_bytes, "async/x.bin", b"abc")
    assert await asyncio.to_thread(store.get_bytes, "async/x.bin") == b"abc"


# --------------------------------------------------------------------------------------------------------
# local store specifics


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_local_writes_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    src = tmp_path / "src.bin"
    src.write_bytes(b"file")

    store.put_bytes("a/one.png", b"1")
    store.put_bytes("a/two.bin", b"2", "image/webp")
    store.put_file("b/three.txt", src)
    store.put_bytes("a/one.png", b"1 again")

    assert _all_files(store.root) == ["a/.two.bin.meta.json", "a/one.png", "a/two.bin", "b/three.txt"]
    store.delete_prefix("a/")
    assert _all_files(store.root) == ["b/three.txt"]
    assert not (store.root / "a").exists()  # emptied folders are pruned


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
def test_local_failed_write_keeps_old_blob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: str) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    store.put_bytes("doc/page.html", b"old")

    def crash(*_args: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, fail_at, crash)
    with pytest.raises(OSError, match="disk gone"):
        store.put_bytes("doc/page.html", b"new content that never lands")
    monkeypatch.undo()

    assert store.get_bytes("doc/page.html") == b"old"
    assert _all_files(store.root) == ["doc/page.html"]


def test_local_key_folder_clash_is_bad_input(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    store.put_bytes("a/b", b"file")
    store.put_bytes("c/d/e", b"file")

    with pytest.raises(BadInput):
        store.put_bytes("a/b/c", b"under a file")
    with pytest.raises(BadInput):
        store.put_bytes("c/d", b"over a folder")
    assert store.get_bytes("a/b") == b"file"
    assert not store.exists("c/d")


def test_local_stat_reads_back_given_type_after_reopen(tmp_path: Path) -> None:
    LocalBlobStore(tmp_path / "blobs").put_bytes("x/data.json", b"{}", "application/vnd.conveyor+json")

    assert LocalBlobStore(tmp_path / "blobs").stat("x/data.json").content_type == "application/vnd.conveyor+json"


# --------------------------------------------------------------------------------------------------------
# S3 specifics


def test_s3_closed_port_is_external_service_error() -> None:
    client = _client(f"http://127.0.0.1:{_free_port()}", connect_timeout=1, retries={"total_max_attempts": 1})
    store = S3BlobStore(BUCKET, "p", client)

    started = time.monotonic()
    for call in (
        lambda: store.get_bytes("a.txt"),
        lambda: store.put_bytes("a.txt", b"x"),
        lambda: list(store.list()),
    ):
        with pytest.raises(ExternalServiceError) as err:
            call()
        assert err.value.code == "BLOB_STORE_UNAVAILABLE"
        assert err.value.retryable
    assert time.monotonic() - started < 15


def test_s3_missing_bucket_is_external_service_error(s3_endpoint: str) -> None:
    store = S3BlobStore("no-such-bucket", "", _client(s3_endpoint))

    for call in (
        lambda: store.get_bytes("a.txt"),
        lambda: store.exists("a.txt"),
        lambda: store.stat("a.txt"),
        lambda: store.put_bytes("a.txt", b"x"),
        lambda: list(store.list()),
    ):
        with pytest.raises(ExternalServiceError) as err:
            call()
        assert err.value.code == "BLOB_BUCKET_MISSING"
        assert "no-such-bucket" in err.value.message


def test_s3_keys_live_under_the_prefix(s3_endpoint: str) -> None:
    client = _client(s3_endpoint)
    store = S3BlobStore(BUCKET, "/tenant-a/blobs/", client)

    store.put_bytes("x/y.txt", b"z")

    assert store.prefix == "tenant-a/blobs"
    assert client.get_object(Bucket=BUCKET, Key="tenant-a/blobs/x/y.txt")["Body"].read() == b"z"
    assert [b.key for b in store.list()] == ["x/y.txt"]
    assert store.delete_prefix("x/") == 1


# --------------------------------------------------------------------------------------------------------
# blob_store_from_url


def test_from_url_plain_path(tmp_path: Path) -> None:
    store = blob_store_from_url(str(tmp_path / "var" / "blobs"))

    assert isinstance(store, LocalBlobStore)
    assert store.root == (tmp_path / "var" / "blobs").resolve()
    assert store.root.is_dir()


def test_from_url_file_url(tmp_path: Path) -> None:
    store = blob_store_from_url((tmp_path / "my blobs").as_uri())

    assert isinstance(store, LocalBlobStore)
    assert store.root == (tmp_path / "my blobs").resolve()
    store.put_bytes("k.txt", b"v")
    assert (tmp_path / "my blobs" / "k.txt").read_bytes() == b"v"


def test_from_url_s3_round_trip(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    prefix = f"fromurl-{uuid.uuid4().hex}/blobs"

    store = blob_store_from_url(f"s3://{BUCKET}/{prefix}", s3_endpoint_url=s3_endpoint)

    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == (BUCKET, prefix)
    assert store.client.meta.endpoint_url == s3_endpoint
    store.put_bytes("hello.txt", b"world")
    assert store.get_bytes("hello.txt") == b"world"
    assert blob_store_from_url(f"s3://{BUCKET}/{prefix}").local_path("hello.txt") is None


def test_from_url_s3_without_prefix() -> None:
    store = blob_store_from_url("s3://conveyor", s3_endpoint_url="http://minio:9000")

    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == ("conveyor", "")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "http://example.com/blobs",
        "ftp://host/x",
        "s3://",
        "s3:///prefix",
        "s3:/bucket/x",
        "s3://Bad_Bucket/x",
        "s3://conveyor/a/../b",
        "s3://conveyor/x?versioning=1",
        "file://otherhost/data",
        "file:relative/path",
        "gs://bucket/x",
    ],
)
def test_from_url_rejects_bad_urls(url: str) -> None:
    with pytest.raises(BadInput) as err:
        blob_store_from_url(url)

    assert err.value.code == "BAD_BLOB_URL"
    assert err.value.http_status == 400
