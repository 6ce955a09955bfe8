"""Fixtures of the persona tests: a real Chroma server (``chroma run``, from the chromadb wheel)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import assert_eventually, free_port


@pytest.fixture
async def chroma_server(tmp_path: Path) -> AsyncIterator[str]:
    """A real ``chroma run`` server on a free port, answering its heartbeat; its URL (tests using it: ``process``)."""
    port = free_port()
    log_path = tmp_path / "chroma-server.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "chroma"),
            *("run", "--path", str(tmp_path / "server-data"), "--host", "127.0.0.1", "--port", str(port)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=1) as http:

            async def answering() -> None:
                if proc.returncode is not None:
                    pytest.fail(f"chroma run exited: {log_path.read_text(errors='replace')}")
                try:
                    status = (await http.get(f"{url}/api/v2/heartbeat")).status_code
                except httpx.TransportError as err:
                    raise AssertionError(f"chroma server not answering yet: {err!r}") from err
                assert status == 200, status

            await assert_eventually(answering, within_s=30, interval=0.1)
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
