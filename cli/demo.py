"""``conveyor demo``: run every pipeline's demo (its manifest names it) against a running (or started) stack."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import SecretStr
from rich.table import Table
from sqlalchemy import select

from cli.context import DemoContext, DemoRun
from cli.output import console, emit_json, fail
from conveyor.errors import ConveyorError, ExternalServiceError
from conveyor.logging import configure_logging
from conveyor.pipeline import load
from conveyor.settings import Settings, get_settings
from workers.pipelines import PIPELINES

DemoFn = Callable[[DemoContext], Awaitable[list[DemoRun]]]

DEMO_USER = "demo"
DEMO_CREDITS = 500
STACK_START_TIMEOUT_S = 180.0


def demo_key_path(settings: Settings) -> Path:
    """Where the demo keeps its API key between runs (readable by its owner only)."""
    return settings.var_dir / "demo.key"


def _save_key(path: Path, key: str) -> None:
    """Write ``key`` to ``path`` with 0600 permissions (replacing the file in one step)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


async def demo_key(settings: Settings) -> str:
    """The demo user's API key: the one kept under the var dir while it is live, else a new one (older ones revoked).

    The demo user is created, and topped up to the demo's credits, as needed.
    """
    from conveyor import credits
    from conveyor.auth import create_user, rotate, user_for_key
    from conveyor.db import create_engine, migrate, session_factory
    from conveyor.models import User

    path = demo_key_path(settings)
    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    try:
        async with session_factory(engine).begin() as session:
            user = await session.scalar(select(User).where(User.name == DEMO_USER))
            if user is None:
                user, key = await create_user(session, DEMO_USER, DEMO_CREDITS)
                _save_key(path, key)
                return key
            if user.credits < DEMO_CREDITS:
                await credits.grant(
                    session, user, DEMO_CREDITS - user.credits, reason="demo top-up", key=f"demo:{uuid.uuid4()}"
                )
            kept = path.read_text().strip() if path.is_file() else ""
            owner = await user_for_key(session, kept) if kept else None
            if owner is not None and owner.id == user.id:
                return kept
            key, _revoked = await rotate(session, user)
            _save_key(path, key)
            return key
    finally:
        await engine.dispose()


async def _api_answers(url: str) -> bool:
    async with httpx.AsyncClient(timeout=2.0) as http:
        try:
            await http.get(f"{url}/api/health")
            return True
        except httpx.TransportError:
            return False


def _env_of(overrides: dict[str, Any]) -> dict[str, str]:
    """Settings as the environment variables a child process reads them from."""
    env = {}
    for name, value in overrides.items():
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        env[f"CONVEYOR_{name.upper()}"] = text if isinstance(text, str) else json.dumps(text)
    return env


async def _ensure_stack(settings: Settings) -> tuple[subprocess.Popen[bytes] | None, Settings]:
    """Use a running stack, or start ``conveyor up`` in the background; returns the process we started and the
    settings the stack runs with."""
    from cli.chat import demo_stack_settings
    from cli.stack import wait_for_api

    proc = None
    if not await _api_answers(settings.api_url):
        logs = settings.var_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        # the stack's crawlers may reach the demo's sample site, and no other loopback address; its Telegram
        # replies go to the demo's local Bot API unless a bot is configured
        overrides: dict[str, Any] = {
            "crawl_allowed_hosts": [*settings.crawl_allowed_hosts, f"127.0.0.1:{settings.demo_site_port}"],
            **demo_stack_settings(settings),
        }
        settings = settings.model_copy(update=overrides)
        with (logs / "up.log").open("ab") as out:
            proc = subprocess.Popen(  # noqa: ASYNC220 - starts a background process; nothing waits on it here
                [sys.executable, "-m", "cli", "up", "--json"],
                env={**os.environ, **_env_of(overrides)},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        console.print(f"starting the stack in the background (logs: {logs / 'up.log'}) …")
    if not await wait_for_api(settings.api_url, STACK_START_TIMEOUT_S, healthy=True):
        if proc is not None:
            _stop(proc)
        raise ExternalServiceError(
            f"the stack at {settings.api_url} did not become healthy; see {settings.var_dir / 'logs'}",
            code="STACK_UNHEALTHY",
        )
    return proc, settings


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def run_demo(settings: Settings, *, keep_running: bool, show: bool) -> list[DemoRun]:
    """Run every pipeline's demo and return the runs."""
    from conveyor.temporal import connect

    proc, settings = await _ensure_stack(settings)
    try:
        key = await demo_key(settings)
        client = await connect(settings)
        runs: list[DemoRun] = []
        async with httpx.AsyncClient(base_url=settings.api_url, headers={"X-API-Key": key}, timeout=60) as http:
            for pipeline in PIPELINES:  # each pipeline's part, as its manifest names it
                part: DemoFn = load(pipeline.demo)
                runs += await part(DemoContext(settings, http, client, show))
        return runs
    finally:
        if proc is not None and not keep_running:
            _stop(proc)


def _summary(runs: list[DemoRun], stopped: bool) -> None:
    table = Table("pipeline", "workflow id", "status", "seconds", "key outputs", "Web UI", title="Conveyor demo")
    for r in runs:
        colour = "green" if r.status == "completed" else "red"
        table.add_row(
            r.pipeline, r.workflow_id, f"[{colour}]{r.status}[/{colour}]", f"{r.seconds:.1f}", r.outputs, r.link
        )
    console.print(table)
    if stopped:
        console.print("The stack was stopped; `conveyor up` brings it back with all history for the links above.")


def demo(
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Leave a stack the demo started running.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Run every implemented pipeline on bundled samples, with live progress and a summary table."""
    settings = get_settings()
    configure_logging(settings)
    try:
        started_here = not asyncio.run(_api_answers(settings.api_url))
        runs = asyncio.run(run_demo(settings, keep_running=keep_running, show=not as_json))
    except ConveyorError as err:
        fail(err, as_json=as_json)
    except httpx.HTTPStatusError as err:
        fail(
            ExternalServiceError(f"the API answered {err.response.status_code}: {err.response.text[:300]}"),
            as_json=as_json,
        )
    if as_json:
        emit_json([r.__dict__ for r in runs])
    else:
        _summary(runs, stopped=started_here and not keep_running)
    if not runs or any(r.status != "completed" for r in runs):
        raise typer.Exit(1)


__all__ = ["demo", "demo_key", "demo_key_path", "run_demo"]
