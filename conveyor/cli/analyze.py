"""``conveyor analyze TOOL FILE…``: run an analysis task from the command line and wait for it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from conveyor.cli.output import console, emit_json, fail
from conveyor.errors import BadInput, ConveyorError, NotFound
from conveyor.logging import configure_logging
from conveyor.models import User
from conveyor.settings import Settings, get_settings


async def resolve_user(session: AsyncSession, settings: Settings, name: str | None) -> User:
    """The named user; without a name, the local CLI user (created with starter credits if missing)."""
    from conveyor.auth import create_user

    wanted = name or settings.local_user
    user = await session.scalar(select(User).where(User.name == wanted))
    if user is not None:
        return user
    if name is not None and name != settings.local_user:
        raise NotFound(f"user {name!r} not found; create it with `conveyor users create {name}`", code="USER_NOT_FOUND")
    user, _key = await create_user(session, wanted, settings.local_user_credits)
    await session.commit()
    return user


async def run_analysis(
    settings: Settings,
    tool_id: str,
    files: list[Path],
    *,
    agents: list[str],
    params: dict[str, Any],
    user_name: str | None,
    wait: bool,
    show: bool,
) -> dict[str, Any]:
    """Create and process a task, optionally wait for it, and return the task as the API shows it."""
    from api.routes.analysis import task_out
    from api.services import analysis as service
    from conveyor.cli.watch import Watched, watch
    from conveyor.db import create_engine, migrate, session_factory
    from conveyor.storage import blob_store_from_url
    from conveyor.temporal import connect

    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise BadInput(f"file not found: {', '.join(missing)}", code="FILE_NOT_FOUND")
    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    blobs = blob_store_from_url(settings.blob_url_resolved, s3_endpoint_url=settings.s3_endpoint_url)
    try:
        client = await connect(settings)
        sessions = session_factory(engine)
        async with sessions() as session:
            user = await resolve_user(session, settings, user_name)
            with contextlib.ExitStack() as stack:
                uploads = [service.Upload(f.name, stack.enter_context(f.open("rb"))) for f in files]
                task = await service.create_task(
                    session, blobs, settings, user, tool_id=tool_id, agents=agents, params=params, files=uploads
                )
            result = await service.process_task(session, client, user, task.task_id)
        if wait:
            await watch(client, [Watched(result.workflow_id, f"{tool_id}")], show=show)
        async with sessions() as session:
            task = await service.get_task(session, user, task.task_id)
            task = await service.reconcile(session, client, task)
            out = task_out(task, settings).model_dump(mode="json")
            out["local_outputs"] = {o["name"]: str(p) for o in task.outputs if (p := blobs.local_path(o["key"]))}
            return out
    finally:
        await engine.dispose()


def print_task(task: dict[str, Any]) -> None:
    """A readable summary of a finished (or running) task."""
    colour = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(task["status"], "cyan")
    console.print(f"[bold]{task['tool_id']}[/bold] task {task['task_id']}: [{colour}]{task['status']}[/{colour}]")
    if task.get("error_code"):
        console.print(f"  {task['error_code']}: {task['error_message']}")
    result = task.get("result") or {}
    headlines = result.get("headlines", {})
    if headlines:
        table = Table("agent", "seconds", "headline")
        for agent, figures in headlines.items():
            shown = ", ".join(f"{k}={v}" for k, v in list(figures.items())[:6])
            table.add_row(agent, str(result.get("seconds", {}).get(agent, "")), shown)
        console.print(table)
    local = task.get("local_outputs", {})
    for output in task["outputs"]:
        console.print(f"  {output['name']:<32} {local.get(output['name'], output['url'])}")
    if task.get("workflow_url"):
        console.print(f"  web ui: {task['workflow_url']}")


def analyze(
    tool_id: Annotated[str, typer.Argument(help="profile-my-data, clean-my-data or master-my-data")],
    files: Annotated[list[Path], typer.Argument(help="Input files (CSV, TSV, JSON lines, Parquet, Excel)")],
    agents: Annotated[str | None, typer.Option("--agents", help="Comma-separated agent ids (default: all).")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Run as this user (default: the local user).")] = None,
    params: Annotated[str | None, typer.Option("--params", help='JSON: {"agent-id": {"param": value}}')] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Return once queued.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Run an analysis tool on files, with a live progress bar and a summary of outputs."""
    import json

    settings = get_settings()
    configure_logging(settings)
    try:
        parsed = json.loads(params) if params else {}
        if not isinstance(parsed, dict):
            raise BadInput("--params must be a JSON object keyed by agent id", code="BAD_PARAMS")
        agent_list = [a.strip() for a in (agents or "").split(",") if a.strip()]
        task = asyncio.run(
            run_analysis(
                settings,
                tool_id,
                files,
                agents=agent_list,
                params=parsed,
                user_name=user,
                wait=not no_wait,
                show=not as_json,
            )
        )
    except json.JSONDecodeError as err:
        fail(BadInput(f"--params is not valid JSON: {err.msg}", code="BAD_PARAMS"), as_json=as_json)
    except ConveyorError as err:
        fail(err, as_json=as_json)
    if as_json:
        emit_json(task)
    else:
        print_task(task)
    if task["status"] in ("failed", "cancelled"):
        raise typer.Exit(1)
