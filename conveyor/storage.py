"""Blob storage: files that pipelines produce and consume (screenshots, uploads, renders, reports).

Workflows pass blob *keys* around, never bytes; activities read and write the blobs through a
:class:`BlobStore`. Two stores implement the same behaviour:

* :class:`LocalBlobStore` — a folder (the embedded default, ``var/blobs``). Writes are atomic: a blob is
  written to a temporary file in the target folder, fsynced and renamed into place, so a crash never
  leaves a half-written blob. A content type that differs from the one guessed from the key's extension
  is kept in a hidden sidecar file next to the blob.
* :class:`S3BlobStore` — a bucket and key prefix on S3 or an S3-compatible server (MinIO, moto) via boto3.

Keys are ``/``-separated relative paths (``crawl/<session>/shots/0001.png``) and are validated the same
way by both stores, so a key that works locally works on S3 and the other way round. The API is
synchronous; async callers wrap calls with ``asyncio.to_thread``.

Errors follow :mod:`conveyor.errors`: a missing blob is ``NotFound(code="BLOB_NOT_FOUND")``, a bad key
``BadInput(code="BAD_BLOB_KEY")``, and an unreachable or failing S3 server (or a missing bucket) an
``ExternalServiceError`` the retry policy retries.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import mimetypes
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit
from urllib.request import url2pathname

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from conveyor.errors import BadInput, ConveyorError, ExternalServiceError, NotFound

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_CONTENT_TYPE",
    "BlobInfo",
    "BlobStore",
    "LocalBlobStore",
    "S3BlobStore",
    "blob_store_from_url",
    "guess_content_type",
    "s3_client",
    "validate_key",
]

#: Chunk size of :meth:`BlobStore.iter_chunks` and of local copies.
DEFAULT_CHUNK_SIZE = 1024 * 1024
#: Content type of a blob whose type was not given and cannot be guessed from its key.
DEFAULT_CONTENT_TYPE = "application/octet-stream"

#: Longest key, in UTF-8 bytes (S3's limit, prefix included).
MAX_KEY_BYTES = 1024
#: Longest key segment, in UTF-8 bytes (leaves room under the usual 255-byte file name limit for the
#: local store's temporary and sidecar names).
MAX_SEGMENT_BYTES = 200

# Built-in table only (no /etc/mime.types), so every machine guesses the same type for the same key.
_MIME = mimetypes.MimeTypes()
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SIDECAR_SUFFIX = ".meta.json"
_TMP_SUFFIX = ".tmp"
_S3_DELETE_BATCH = 1000


@dataclass(frozen=True)
class BlobInfo:
    """What a store knows about one blob (``content_type`` is None in listings: S3 does not list it)."""

    key: str
    size: int
    content_type: str | None
    modified: datetime


def guess_content_type(key: str) -> str:
    """The content type a blob gets when none is given, from its key's extension."""
    guessed, _encoding = _MIME.guess_type(key, strict=False)
    return guessed or DEFAULT_CONTENT_TYPE


def _check_path(value: str, *, what: str, allow_partial: bool) -> str:
    if not isinstance(value, str):
        raise BadInput(f"blob {what} must be a string, got {type(value).__name__}", code="BAD_BLOB_KEY")
    if len(value.encode("utf-8")) > MAX_KEY_BYTES:
        raise BadInput(f"blob {what} is longer than {MAX_KEY_BYTES} bytes", code="BAD_BLOB_KEY")
    if value.startswith("/"):
        raise BadInput(f"blob {what} {value!r} must be relative (no leading '/')", code="BAD_BLOB_KEY")
    if "\\" in value:
        raise BadInput(f"blob {what} {value!r} must use '/' separators, not '\\'", code="BAD_BLOB_KEY")
    if _CONTROL_CHARS.search(value):
        raise BadInput(f"blob {what} {value!r} contains control characters", code="BAD_BLOB_KEY")
    segments = value.split("/")
    if allow_partial and segments[-1] == "":
        segments = segments[:-1]  # "reports/" names a folder-like prefix
    for segment in segments:
        if not segment:
            raise BadInput(f"blob {what} {value!r} has an empty segment", code="BAD_BLOB_KEY")
        if segment.startswith("."):
            # also rules out "." and ".."; dot-names are reserved for the local store's own files
            raise BadInput(f"blob {what} {value!r} has a segment starting with '.'", code="BAD_BLOB_KEY")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise BadInput(
                f"blob {what} {value!r} has a segment longer than {MAX_SEGMENT_BYTES} bytes",
                code="BAD_BLOB_KEY",
            )
    return value


def validate_key(key: str) -> str:
    """Return ``key`` if it is a valid blob key, else raise ``BadInput(code="BAD_BLOB_KEY")``."""
    if not key:
        raise BadInput("blob key must not be empty", code="BAD_BLOB_KEY")
    return _check_path(key, what="key", allow_partial=False)


def _validate_prefix(prefix: str) -> str:
    if prefix == "":
        return prefix
    return _check_path(prefix, what="prefix", allow_partial=True)


def _not_found(key: str) -> NotFound:
    return NotFound(f"blob {key!r} does not exist", code="BLOB_NOT_FOUND", details={"key": key})


class BlobStore(ABC):
    """Where blobs live; every method is synchronous and safe to call from several threads."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> BlobInfo:
        """Store ``data`` under ``key`` (replacing any blob there) and describe the result."""

    @abstractmethod
    def put_file(self, key: str, path: Path, content_type: str | None = None) -> BlobInfo:
        """Store the file at ``path`` under ``key`` without reading it into memory."""

    def move_file(self, key: str, path: Path, content_type: str | None = None) -> BlobInfo:
        """Store the file at ``path`` under ``key`` and remove it from ``path``."""
        info = self.put_file(key, path, content_type)
        Path(path).unlink(missing_ok=True)
        return info

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The whole content of a blob."""

    @abstractmethod
    def download(self, key: str, dest: Path) -> Path:
        """Copy a blob to the file ``dest`` (streamed; ``dest`` appears only when complete)."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of a blob; close it when done."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a blob exists under ``key``."""

    @abstractmethod
    def stat(self, key: str) -> BlobInfo:
        """Size, content type and modification time of a blob."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete a blob; deleting a missing blob is not an error."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with ``prefix`` (non-empty); return how many."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every blob whose key starts with ``prefix``, in key order."""

    @abstractmethod
    def local_path(self, key: str) -> Path | None:
        """The blob's file on this machine (NotFound if missing), or None for a remote store."""

    def iter_chunks(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """A blob's content in chunks of at most ``chunk_size`` bytes (NotFound raised at call time)."""
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        stream = self.open(key)  # opened now so a missing blob fails before the first chunk is asked for
        return _chunks(stream, chunk_size)


def _chunks(stream: IO[bytes], chunk_size: int) -> Iterator[bytes]:
    with stream:
        while chunk := stream.read(chunk_size):
            yield chunk


# --------------------------------------------------------------------------------------------------------
# local folder


class LocalBlobStore(BlobStore):
    """Blobs as files under a root folder; atomic writes, content types in sidecars when not guessable."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    # paths ------------------------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    @staticmethod
    def _sidecar(path: Path) -> Path:
        return path.with_name(f".{path.name}{_SIDECAR_SUFFIX}")

    def _key_of(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    # writing ----------------------------------------------------------------------------------------------

    @staticmethod
    def _write_atomic(path: Path, fill: Callable[[BinaryIO], object], label: str) -> None:
        """Write a file via a temporary sibling + fsync + rename; the old file stays intact on failure."""
        for attempt in range(3):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
                break
            except FileNotFoundError:
                # a concurrent delete pruned the (empty) folder between mkdir and mkstemp: make it again
                if attempt == 2:
                    raise
            except (FileExistsError, NotADirectoryError) as exc:
                raise BadInput(
                    f"cannot write {label}: a file exists where a folder is needed", code="BAD_BLOB_KEY"
                ) from exc
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                fill(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except IsADirectoryError as exc:
            tmp.unlink(missing_ok=True)
            raise BadInput(f"cannot write {label}: it is a folder", code="BAD_BLOB_KEY") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @staticmethod
    def _fsync_dir(folder: Path) -> None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _put(self, key: str, content_type: str | None, fill: Callable[[BinaryIO], object]) -> BlobInfo:
        path = self._path(key)
        self._write_atomic(path, fill, f"blob {key!r}")
        return self._finish_put(key, path, content_type)

    def _finish_put(self, key: str, path: Path, content_type: str | None) -> BlobInfo:
        """Record a non-default content type beside a freshly written blob and make the entry durable."""
        resolved = content_type or guess_content_type(key)
        sidecar = self._sidecar(path)
        if resolved != guess_content_type(key):
            body = json.dumps({"content_type": resolved}).encode()
            self._write_atomic(sidecar, lambda fh: fh.write(body), f"content type of blob {key!r}")
        else:
            sidecar.unlink(missing_ok=True)
        self._fsync_dir(path.parent)
        return self._info(key, path, resolved)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> BlobInfo:
        """Store ``data`` under ``key`` atomically."""
        return self._put(key, content_type, lambda fh: fh.write(data))

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> BlobInfo:
        """Copy the file at ``path`` under ``key`` atomically, in chunks."""
        with Path(path).open("rb") as src:
            return self._put(key, content_type, lambda fh: shutil.copyfileobj(src, fh, DEFAULT_CHUNK_SIZE))

    def move_file(self, key: str, path: Path, content_type: str | None = None) -> BlobInfo:
        """Rename the file at ``path`` into the store (after an fsync); copies when it is on another device."""
        target, src = self._path(key), Path(path)
        if target.exists() and target.is_dir():
            raise BadInput(f"cannot write blob {key!r}: it is a folder", code="BAD_BLOB_KEY")
        with src.open("rb") as fh:
            os.fsync(fh.fileno())
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(src, 0o644)
            os.replace(src, target)
        except OSError as err:
            if err.errno != errno.EXDEV:
                raise
            return super().move_file(key, path, content_type)
        return self._finish_put(key, target, content_type)

    # reading ----------------------------------------------------------------------------------------------

    def _existing(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise _not_found(key)
        return path

    def _content_type(self, key: str, path: Path) -> str:
        try:
            meta = json.loads(self._sidecar(path).read_text("utf-8"))
        except (FileNotFoundError, ValueError):
            return guess_content_type(key)
        value = meta.get("content_type") if isinstance(meta, dict) else None
        return value if isinstance(value, str) and value else guess_content_type(key)

    def _info(self, key: str, path: Path, content_type: str | None) -> BlobInfo:
        try:
            st = path.stat()
        except FileNotFoundError as exc:
            raise _not_found(key) from exc
        return BlobInfo(key, st.st_size, content_type, datetime.fromtimestamp(st.st_mtime, UTC))

    def get_bytes(self, key: str) -> bytes:
        """The whole content of a blob."""
        try:
            return self._existing(key).read_bytes()
        except FileNotFoundError as exc:
            raise _not_found(key) from exc

    def open(self, key: str) -> BinaryIO:
        """The blob's file, opened for reading."""
        try:
            return self._existing(key).open("rb")
        except FileNotFoundError as exc:
            raise _not_found(key) from exc

    def download(self, key: str, dest: Path) -> Path:
        """Copy a blob to ``dest`` atomically."""
        dest = Path(dest)
        with self.open(key) as src:
            self._write_atomic(dest, lambda fh: shutil.copyfileobj(src, fh, DEFAULT_CHUNK_SIZE), f"file {str(dest)!r}")
        return dest

    def exists(self, key: str) -> bool:
        """Whether a blob exists under ``key``."""
        return self._path(key).is_file()

    def stat(self, key: str) -> BlobInfo:
        """Size, content type and modification time of a blob."""
        path = self._existing(key)
        return self._info(key, path, self._content_type(key, path))

    def local_path(self, key: str) -> Path:
        """The blob's file (NotFound if missing)."""
        return self._existing(key)

    # listing and deleting ---------------------------------------------------------------------------------

    def _walk(self, prefix: str) -> builtins.list[Path]:
        """Blob files whose key starts with ``prefix``, in key order (hidden files skipped)."""
        folder = self.root.joinpath(*prefix.split("/")[:-1]) if "/" in prefix else self.root
        if not folder.is_dir():
            return []
        found: list[tuple[str, Path]] = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith("."):
                    continue
                path = Path(dirpath, name)
                key = self._key_of(path)
                if key.startswith(prefix):
                    found.append((key, path))
        found.sort()
        return [path for _key, path in found]

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every blob whose key starts with ``prefix``, in key order."""
        for path in self._walk(_validate_prefix(prefix)):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue  # deleted while listing
            yield BlobInfo(self._key_of(path), st.st_size, None, datetime.fromtimestamp(st.st_mtime, UTC))

    def _remove(self, path: Path) -> bool:
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError):
            return False
        self._sidecar(path).unlink(missing_ok=True)
        return True

    def _prune(self, folder: Path) -> None:
        """Remove empty folders from ``folder`` up to (not including) the root."""
        while folder != self.root and self.root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def delete(self, key: str) -> None:
        """Delete a blob and its sidecar; a missing blob is not an error."""
        path = self._path(key)
        if self._remove(path):
            self._prune(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with ``prefix``; return how many."""
        if not prefix:
            raise BadInput("refusing to delete every blob: prefix must not be empty", code="BAD_BLOB_KEY")
        deleted = 0
        folders: set[Path] = set()
        for path in self._walk(_validate_prefix(prefix)):
            if self._remove(path):
                deleted += 1
                folders.add(path.parent)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            self._prune(folder)
        return deleted


# --------------------------------------------------------------------------------------------------------
# S3


class _StreamingBodyReader(io.RawIOBase):
    """A raw stream over an S3 response body that turns botocore read errors into ConveyorErrors."""

    def __init__(self, body: Any, on_error: Callable[[BaseException], ConveyorError]) -> None:
        super().__init__()
        self._body = body
        self._on_error = on_error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data: bytes = self._body.read(len(view))
        except (BotoCoreError, OSError) as exc:
            raise self._on_error(exc) from exc
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _client_error_in(exc: BaseException) -> ClientError | BotoCoreError | None:
    """The botocore error behind a boto3 transfer error, if any."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ClientError | BotoCoreError):
            return cur
        cur = cur.__cause__ or cur.__context__
    last = getattr(exc, "last_exception", None)  # boto3's RetriesExceededError
    return last if isinstance(last, ClientError | BotoCoreError) else None


class S3BlobStore(BlobStore):
    """Blobs as objects under ``prefix`` in an S3 (or S3-compatible) bucket."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        client: S3Client | None = None,
        *,
        transfer_config: TransferConfig | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            _validate_prefix(self.prefix)
        self.client: S3Client = client if client is not None else boto3.client("s3")
        self.transfer_config = transfer_config or TransferConfig()
        self._bucket_seen = False

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    # keys and errors --------------------------------------------------------------------------------------

    def _object_key(self, key: str) -> str:
        validate_key(key)
        full = f"{self.prefix}/{key}" if self.prefix else key
        if len(full.encode("utf-8")) > MAX_KEY_BYTES:
            raise BadInput(f"blob key {key!r} is too long with the store prefix", code="BAD_BLOB_KEY")
        return full

    def _blob_key(self, object_key: str) -> str:
        return object_key[len(self.prefix) + 1 :] if self.prefix else object_key

    def _where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" + (
            f" at {self.client.meta.endpoint_url}" if self.client.meta.endpoint_url else ""
        )

    def _bucket_missing(self) -> ExternalServiceError:
        return ExternalServiceError(
            f"S3 bucket {self.bucket!r} does not exist ({self._where()}); create it before starting Conveyor",
            code="BLOB_BUCKET_MISSING",
            details={"bucket": self.bucket},
        )

    def _unavailable(self, exc: BaseException, action: str) -> ExternalServiceError:
        return ExternalServiceError(
            f"blob store {self._where()} failed to {action}: {exc}",
            code="BLOB_STORE_UNAVAILABLE",
            details={"bucket": self.bucket},
        )

    def _is_bucket_missing_404(self) -> bool:
        """Tell a missing bucket from a missing key after a body-less 404 (checked once per store)."""
        if self._bucket_seen:
            return False
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _error_code(exc) in {"404", "NoSuchBucket", "NotFound"}:
                return True
            raise self._unavailable(exc, "check the bucket") from exc
        except BotoCoreError as exc:
            raise self._unavailable(exc, "check the bucket") from exc
        self._bucket_seen = True
        return False

    def _map_error(self, exc: BaseException, action: str, key: str | None) -> ConveyorError:
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            if code == "NoSuchBucket":
                return self._bucket_missing()
            if key is not None and code in {"NoSuchKey", "404", "NotFound"}:
                return self._bucket_missing() if self._is_bucket_missing_404() else _not_found(key)
            return self._unavailable(exc, action)
        inner = _client_error_in(exc)
        if inner is not None and inner is not exc:
            return self._map_error(inner, action, key)
        return self._unavailable(exc, action)

    @contextlib.contextmanager
    def _calling(self, action: str, key: str | None = None) -> Iterator[None]:
        try:
            yield
        except ParamValidationError:
            raise  # a programming error, not an outage
        except (ClientError, BotoCoreError, Boto3Error) as exc:
            raise self._map_error(exc, action, key) from exc

    def _content_type_args(self, key: str, content_type: str | None) -> str:
        return content_type or guess_content_type(key)

    # writing ----------------------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> BlobInfo:
        """Store ``data`` as one object."""
        object_key = self._object_key(key)
        with self._calling("store a blob", key):
            self.client.put_object(
                Bucket=self.bucket,
                Key=object_key,
                Body=data,
                ContentType=self._content_type_args(key, content_type),
            )
        return self.stat(key)

    def put_file(self, key: str, path: Path, content_type: str | None = None) -> BlobInfo:
        """Upload a file (multipart above the transfer threshold)."""
        object_key = self._object_key(key)
        with self._calling("upload a blob", key):
            self.client.upload_file(
                str(path),
                self.bucket,
                object_key,
                ExtraArgs={"ContentType": self._content_type_args(key, content_type)},
                Config=self.transfer_config,
            )
        return self.stat(key)

    # reading ----------------------------------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        """The whole content of an object."""
        with self.open(key) as stream:
            return stream.read()

    def open(self, key: str) -> BinaryIO:
        """A buffered stream over the object's body."""
        object_key = self._object_key(key)
        with self._calling("read a blob", key):
            response = self.client.get_object(Bucket=self.bucket, Key=object_key)
        raw = _StreamingBodyReader(response["Body"], lambda exc: self._map_error(exc, "read a blob", key))
        return io.BufferedReader(raw, DEFAULT_CHUNK_SIZE)

    def download(self, key: str, dest: Path) -> Path:
        """Download an object to ``dest`` (boto3 writes a temporary file and renames it)."""
        dest = Path(dest)
        object_key = self._object_key(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._calling("download a blob", key):
            self.client.download_file(self.bucket, object_key, str(dest), Config=self.transfer_config)
        return dest

    def exists(self, key: str) -> bool:
        """Whether the object exists."""
        try:
            self.stat(key)
        except NotFound:
            return False
        return True

    def stat(self, key: str) -> BlobInfo:
        """Size, content type and modification time from a HEAD request."""
        object_key = self._object_key(key)
        with self._calling("stat a blob", key):
            head = self.client.head_object(Bucket=self.bucket, Key=object_key)
        self._bucket_seen = True
        return BlobInfo(key, head["ContentLength"], head.get("ContentType"), head["LastModified"].astimezone(UTC))

    def local_path(self, key: str) -> None:
        """Always None: S3 objects have no local file."""
        return None

    # listing and deleting ---------------------------------------------------------------------------------

    def _list_objects(self, prefix: str) -> Iterator[tuple[str, int, datetime]]:
        object_prefix = self._object_key_prefix(_validate_prefix(prefix))
        paginator = self.client.get_paginator("list_objects_v2")
        with self._calling("list blobs"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=object_prefix):
                for obj in page.get("Contents", []):
                    yield obj["Key"], obj["Size"], obj["LastModified"].astimezone(UTC)

    def _object_key_prefix(self, prefix: str) -> str:
        return f"{self.prefix}/{prefix}" if self.prefix else prefix

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every object whose key starts with ``prefix``, in key order."""
        for object_key, size, modified in self._list_objects(prefix):
            yield BlobInfo(self._blob_key(object_key), size, None, modified)

    def delete(self, key: str) -> None:
        """Delete an object; a missing object is not an error."""
        object_key = self._object_key(key)
        with self._calling("delete a blob"):
            self.client.delete_object(Bucket=self.bucket, Key=object_key)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix`` in batches of 1000; return how many."""
        if not prefix:
            raise BadInput("refusing to delete every blob: prefix must not be empty", code="BAD_BLOB_KEY")
        deleted = 0
        batch: list[ObjectIdentifierTypeDef] = []
        for object_key, _size, _modified in self._list_objects(prefix):
            batch.append({"Key": object_key})
            if len(batch) == _S3_DELETE_BATCH:
                deleted += self._delete_batch(batch)
                batch = []
        if batch:
            deleted += self._delete_batch(batch)
        return deleted

    def _delete_batch(self, batch: builtins.list[ObjectIdentifierTypeDef]) -> int:
        with self._calling("delete blobs"):
            response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise ExternalServiceError(
                f"blob store {self._where()} failed to delete {len(errors)} of {len(batch)} blobs "
                f"(first: {first.get('Key')}: {first.get('Code')} {first.get('Message')})",
                code="BLOB_STORE_UNAVAILABLE",
                details={"bucket": self.bucket, "failed": len(errors)},
            )
        return len(batch)


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# --------------------------------------------------------------------------------------------------------
# construction from settings


def s3_client(endpoint_url: str = "", config: Config | None = None) -> S3Client:
    """A boto3 S3 client; an endpoint (MinIO, moto) gets path-style addressing. Credentials: boto3's chain."""
    if config is None:
        config = Config(
            connect_timeout=10,
            read_timeout=60,
            retries={"mode": "standard", "max_attempts": 3},
            s3={"addressing_style": "path"} if endpoint_url else {},
        )
    return boto3.client("s3", endpoint_url=endpoint_url or None, config=config)


def blob_store_from_url(url: str, *, s3_endpoint_url: str = "") -> BlobStore:
    """The store a URL names: a folder path or ``file://`` URL, or ``s3://bucket/prefix``."""
    if not url or not url.strip():
        raise BadInput("blob store URL is empty", code="BAD_BLOB_URL")
    match = _URL_SCHEME.match(url)
    if match is None:  # a plain path (Windows drive letters have a one-letter "scheme")
        return LocalBlobStore(Path(url))
    scheme = match.group(1).lower()
    parts = urlsplit(url)
    if scheme == "file":
        if not url.lower().startswith("file://") or parts.netloc not in {"", "localhost"}:
            raise BadInput(f"blob store URL {url!r} must be file:///absolute/path (no host)", code="BAD_BLOB_URL")
        if not parts.path or parts.query or parts.fragment:
            raise BadInput(f"blob store URL {url!r} must name a folder", code="BAD_BLOB_URL")
        return LocalBlobStore(Path(url2pathname(parts.path)))
    if scheme == "s3":
        bucket = parts.netloc
        if not url.lower().startswith("s3://") or not _BUCKET_NAME.match(bucket):
            raise BadInput(
                f"blob store URL {url!r} must be s3://bucket/prefix with a valid bucket name",
                code="BAD_BLOB_URL",
            )
        if parts.query or parts.fragment:
            raise BadInput(f"blob store URL {url!r} must not have a query or fragment", code="BAD_BLOB_URL")
        prefix = parts.path.strip("/")
        if prefix:
            try:
                _validate_prefix(prefix)
            except BadInput as exc:
                raise BadInput(f"blob store URL {url!r}: {exc.message}", code="BAD_BLOB_URL") from exc
        return S3BlobStore(bucket, prefix, s3_client(s3_endpoint_url))
    raise BadInput(
        f"blob store URL {url!r} has unsupported scheme {scheme!r}: use a folder path, file:// or s3://",
        code="BAD_BLOB_URL",
    )
