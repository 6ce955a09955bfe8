"""Serving a blob over HTTP, written once: the file itself from a local store, streamed from S3 otherwise."""

from __future__ import annotations

from fastapi.responses import FileResponse, Response, StreamingResponse

from conveyor.storage import BlobStore, guess_content_type


def serve_blob(blobs: BlobStore, key: str, *, media_type: str | None = None, filename: str | None = None) -> Response:
    """A response with the blob at ``key`` (``filename`` makes it a download of that name)."""
    kind = media_type or guess_content_type(key)
    local = blobs.local_path(key)
    if local is not None:
        return FileResponse(local, media_type=kind, filename=filename)
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'} if filename else None
    return StreamingResponse(blobs.iter_chunks(key), media_type=kind, headers=headers)
