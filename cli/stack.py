"""``conveyor up``: the embedded stack (Temporal dev server, workers, API) as supervised child processes."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

import httpx

from conveyor.codec import LOCAL_CODEC_TOKEN_FILE, codec_token
from conveyor.db import migrate
from conveyor.errors import Conflict, ExternalServiceError
from conveyor.logging import get_logger
from conveyor.settings import Settings
from conveyor.temporal import connect, dev_server_command, ensure_search_attributes, spawn, stop_process

log = get_logger(__name__)

#: How long the stack waits for each part to answer when starting.
START_TIMEOUT_S = 90.0


@dataclass
class StackInfo:
    """Where the running stack can be reached."""

    temporal_address: str
    web_ui: str
    api: str
    api_docs: str
    pids: dict[str, int] = field(default_factory=dict)
    logs: str = ""
    #: Where an operator signs in so the Web UI can decode payloads (the token is in ``codec_token_file``).
    codec_login: str = ""
    codec_token_file: str = ""


@contextlib.contextmanager
def stack_lock(settings: Settings) -> Iterator[IO[str]]:
    """Hold ``<var>/conveyor.pid`` exclusively; a second ``up`` gets a Conflict naming the running pid."""
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    path = settings.var_dir / "conveyor.pid"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        handle.close()
        raise Conflict(
            f"Conveyor is already running from {settings.var_dir} (pid {pid}); stop it first", code="ALREADY_RUNNING"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield handle
    finally:
        handle.seek(0)
        handle.truncate()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def child_env(settings: Settings) -> dict[str, str]:
    """Environment that gives children the same settings as this process."""
    env = {
        "CONVEYOR_VAR_DIR": str(settings.var_dir.resolve()),
        "CONVEYOR_TEMPORAL_ADDRESS": settings.temporal_address,
        "CONVEYOR_TEMPORAL_NAMESPACE": settings.temporal_namespace,
        "CONVEYOR_DATABASE_URL": settings.database_url_resolved,
        "CONVEYOR_BLOB_URL": settings.blob_url_resolved,
        "CONVEYOR_API_HOST": settings.api_host,
        "CONVEYOR_API_PORT": str(settings.api_port),
        "CONVEYOR_LOG_JSON": "true",
    }
    # the same payload keys and codec token as this process (a local install's files are found under var_dir)
    secrets = {
        "CONVEYOR_PAYLOAD_KEYS": settings.payload_keys,
        "CONVEYOR_PAYLOAD_KEY_FILE": settings.payload_key_file,
        "CONVEYOR_CODEC_TOKEN": settings.codec_token,
        "CONVEYOR_CODEC_TOKEN_FILE": settings.codec_token_file,
    }
    for name, value in secrets.items():
        text = value if isinstance(value, str) else value.get_secret_value() if value is not None else ""
        if text:
            env[name] = text
    return env


async def wait_for_api(url: str, within_s: float, *, healthy: bool = False) -> bool:
    """Poll ``/api/health`` until it answers (any status, or 200 when ``healthy``) within ``within_s``."""
    deadline = asyncio.get_running_loop().time() + within_s
    async with httpx.AsyncClient(timeout=2.0) as http:
        while asyncio.get_running_loop().time() < deadline:
            try:
                resp = await http.get(f"{url}/api/health")
                if not healthy or resp.status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.25)
    return False


class Stack:
    """The embedded stack's processes, started in order and stopped in reverse."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.logs = settings.var_dir / "logs"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _conveyor(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cli", *args]

    async def start(self) -> StackInfo:
        """Start server, prepare it and the DB, then workers and API; returns where they listen."""
        s = self.settings
        self.logs.mkdir(parents=True, exist_ok=True)
        s.temporal_db_path.parent.mkdir(parents=True, exist_ok=True)
        self.procs["temporal"] = spawn(dev_server_command(s), log_path=self.logs / "temporal.log")
        client = await connect(s, attempts=int(START_TIMEOUT_S / 0.25), delay=0.25)
        added = await ensure_search_attributes(client)
        log.info("temporal ready", address=s.temporal_address, search_attributes_added=added)
        await migrate(s.database_url_resolved)
        from cli.schedules import sync_schedules  # schedules name workflows: import at use

        await sync_schedules(client)
        token_file = s.codec_token_file or str(s.var_dir.resolve() / LOCAL_CODEC_TOKEN_FILE)
        if s.codec_token is None:
            codec_token(s)  # a local install's token file exists before the API reads it
        env = child_env(s)
        self.procs["worker"] = spawn(self._conveyor("worker"), log_path=self.logs / "worker.log", env=env)
        self.procs["api"] = spawn(self._conveyor("api"), log_path=self.logs / "api.log", env=env)
        if not await wait_for_api(s.api_url, START_TIMEOUT_S):
            raise ExternalServiceError(f"the API did not start; see {self.logs / 'api.log'}", code="API_START_FAILED")
        return StackInfo(
            temporal_address=s.temporal_address,
            web_ui=s.temporal_ui_url,
            api=s.api_url,
            api_docs=f"{s.api_url}/docs",
            pids={name: p.pid for name, p in self.procs.items()},
            logs=str(self.logs),
            codec_login=f"{s.api_url}/codec/login",
            codec_token_file="" if s.codec_token is not None else token_file,
        )

    def crashed(self) -> str | None:
        """Name of a child that exited on its own, if any."""
        return next((name for name, p in self.procs.items() if p.poll() is not None), None)

    def stop(self) -> None:
        """Stop API, then workers (letting activities finish), then the server."""
        for name in ("api", "worker", "temporal"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                code = stop_process(proc, timeout=20.0)
                log.info("stopped", process=name, exit_code=code)


async def run_stack(settings: Settings, *, on_ready: Callable[[StackInfo], None]) -> int:
    """Run the stack until SIGINT/SIGTERM; returns the exit code (1 if a part crashed)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stack = Stack(settings)
    try:
        on_ready(await stack.start())
        while not stop.is_set():
            crashed = stack.crashed()
            if crashed is not None:
                log.error("a stack process exited; stopping", process=crashed, logs=str(stack.logs))
                return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
        return 0
    finally:
        stack.stop()
