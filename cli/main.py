"""``conveyor``: run the stack, workers or API; inspect, cancel and schedule workflows; run pipelines."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table

from cli.context import cli_settings, run_command
from cli.output import console, emit_json, fail
from conveyor.errors import ConveyorError

app = typer.Typer(
    name="conveyor", help="Durable background pipelines on Temporal.", no_args_is_help=True, add_completion=False
)
schedules_app = typer.Typer(help="Temporal Schedules (the seeds' Beat entries).", no_args_is_help=True)
users_app = typer.Typer(help="Users, credits and API keys.", no_args_is_help=True)
db_app = typer.Typer(help="The app database.", no_args_is_help=True)
app.add_typer(schedules_app, name="schedules")
app.add_typer(users_app, name="users")
app.add_typer(db_app, name="db")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@app.command()
def up(as_json: JsonOpt = False) -> None:
    """Start the Temporal dev server, workers for every queue and the API; Ctrl-C stops them all."""
    from cli.stack import StackInfo, run_stack, stack_lock

    settings = cli_settings()

    def ready(info: StackInfo) -> None:
        if as_json:
            emit_json(dataclasses.asdict(info))
            return
        console.print(
            Panel.fit(
                f"Temporal   {info.temporal_address}\nWeb UI     {info.web_ui}\n"
                f"API        {info.api}\nAPI docs   {info.api_docs}\nLogs       {info.logs}\n"
                f"Decoding   {info.codec_login} (token: {info.codec_token_file or 'CONVEYOR_CODEC_TOKEN'})\n\n"
                "Ctrl-C stops everything; history and data are kept.",
                title="Conveyor is up",
            )
        )

    async def main() -> int:
        with stack_lock(settings):
            return await run_stack(settings, on_ready=ready)

    raise typer.Exit(run_command(main(), as_json=as_json))


@app.command()
def worker(
    queue: Annotated[list[str] | None, typer.Option("--queue", "-q", help="Task queue (repeat); default: all.")] = None,
    group: Annotated[
        list[str] | None,
        typer.Option("--group", "-g", help="Every queue of a pipeline (repeat); `conveyor pipelines` lists them."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run workers for the chosen task queues (or groups of them) against the configured Temporal address."""
    from workers.run import queues_of_groups, run_workers

    settings = cli_settings()
    try:
        chosen = [*(queue or []), *queues_of_groups(group or [])]
    except ConveyorError as err:
        fail(err, as_json=as_json)
    run_command(run_workers(settings, chosen or settings.worker_queues), as_json=as_json)


@app.command()
def api(as_json: JsonOpt = False) -> None:
    """Run only the HTTP API (with the connection, header-size and keep-alive limits of the settings)."""
    import uvicorn

    from api.app import create_app
    from api.server import uvicorn_config

    settings = cli_settings()
    try:
        uvicorn.Server(uvicorn_config(create_app(settings), settings)).run()
    except ConveyorError as err:
        fail(err, as_json=as_json)


@app.command()
def status(workflow_id: str, as_json: JsonOpt = False) -> None:
    """Status and progress of any Conveyor workflow."""
    from conveyor.client import WorkflowStatus, describe
    from conveyor.temporal import connect

    settings = cli_settings()

    async def main() -> WorkflowStatus:
        return await describe(await connect(settings), workflow_id)

    result = run_command(main(), as_json=as_json)
    if as_json:
        emit_json(result.model_dump(mode="json"))
        return
    table = Table(show_header=False, box=None)
    for key, value in result.model_dump(exclude={"progress"}).items():
        table.add_row(key, str(value))
    if result.progress is not None:
        p = result.progress
        table.add_row("progress", f"{p.stage} {p.percent:.0f}% ({p.done}/{p.total}) {p.message}")
    table.add_row("web ui", settings.workflow_ui_url(workflow_id))
    console.print(table)


@app.command()
def cancel(workflow_id: str, as_json: JsonOpt = False) -> None:
    """Request cancellation of any Conveyor workflow."""
    from conveyor.client import WorkflowStatus, cancel_workflow
    from conveyor.temporal import connect

    settings = cli_settings()

    async def main() -> WorkflowStatus:
        return await cancel_workflow(await connect(settings), workflow_id)

    result = run_command(main(), as_json=as_json)
    outcome = "already " + result.status if result.closed else "cancellation requested"
    if as_json:
        emit_json({"workflow_id": workflow_id, "result": outcome})
    else:
        console.print(f"{workflow_id}: {outcome}")


@app.command()
def pipelines(as_json: JsonOpt = False) -> None:
    """The pipelines this Conveyor runs: their task queues (with concurrency), workflows and schedules."""
    from workers.pipelines import PIPELINES

    rows: list[dict[str, Any]] = [
        {
            "name": p.name,
            "description": p.description,
            "queues": {q.name: q.concurrency for q in p.queues},
            "workflows": [ref.partition(":")[2] for q in p.queues for ref in q.workflow_refs],
            "schedules": {s.id: s.cron for s in p.schedules},
        }
        for p in PIPELINES
    ]
    if as_json:
        emit_json(rows)
        return
    table = Table("pipeline", "queues (concurrency)", "workflows", "schedules")
    for r in rows:
        queues = "\n".join(f"{name} ({n})" for name, n in r["queues"].items())
        schedules = "\n".join(f"{sid} ({cron})" for sid, cron in r["schedules"].items())
        table.add_row(r["name"], queues, "\n".join(r["workflows"]), schedules)
    console.print(table)


@schedules_app.command("sync")
def schedules_sync(as_json: JsonOpt = False) -> None:
    """Create or update every schedule to match the code."""
    from cli.schedules import sync_schedules
    from conveyor.temporal import connect

    settings = cli_settings()

    async def main() -> list[dict[str, str]]:
        return await sync_schedules(await connect(settings))

    rows = run_command(main(), as_json=as_json)
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        console.print(f"{row['action']:>8}  {row['id']}  ({row['cron']})")


@schedules_app.command("list")
def schedules_list(as_json: JsonOpt = False) -> None:
    """List schedules and their next runs."""
    from cli.schedules import list_schedules
    from conveyor.temporal import connect

    settings = cli_settings()

    async def main() -> list[dict[str, Any]]:
        return await list_schedules(await connect(settings))

    rows = run_command(main(), as_json=as_json)
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "workflow", "next runs", "paused", "note")
    for r in rows:
        table.add_row(r["id"], str(r["workflow"]), "\n".join(r["next_runs"]), str(r["paused"]), r["note"] or "")
    console.print(table)


ExpiresOpt = Annotated[
    float | None, typer.Option("--expires-in", min=0.001, help="Days the key lasts (default: until revoked).")
]


async def _with_session(settings: Any, work: Any) -> Any:
    """Migrate the app DB, then run ``work(session)`` in one transaction."""
    from conveyor.db import create_engine, migrate, session_factory

    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    try:
        async with session_factory(engine).begin() as session:
            return await work(session)
    finally:
        await engine.dispose()


def _users_command(settings: Any, work: Any, as_json: bool, lines: Any) -> None:
    """Run ``work(session)`` in one transaction; print its result as JSON, or the ``lines(result)`` for people."""
    result = run_command(_with_session(settings, work), as_json=as_json)
    if as_json:
        emit_json(result)
    else:
        for line in lines(result):
            console.print(line)


@users_app.command("create")
def users_create(
    name: str,
    credits: Annotated[int, typer.Option("--credits", min=0, help="Initial credits.")] = 0,
    admin: Annotated[bool, typer.Option("--admin", help="An operator: may call operator-only endpoints.")] = False,
    expires_in: ExpiresOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a user and print its API key (shown only this once)."""
    from conveyor.auth import create_user, key_prefix

    settings = cli_settings()

    async def work(session: Any) -> dict[str, Any]:
        role = "admin" if admin else "user"
        user, key = await create_user(session, name, credits, role=role, expires_in_days=expires_in)
        return {
            "id": user.id,
            "name": user.name,
            "role": user.role,
            "credits": user.credits,
            "api_key": key,
            "prefix": key_prefix(key),
        }

    _users_command(
        settings,
        work,
        as_json,
        lambda r: [
            f"user {r['name']} (id {r['id']}, {r['role']}) with {r['credits']} credits",
            f"API key (shown once): [bold]{r['api_key']}[/bold]",
        ],
    )


@users_app.command("promote")
def users_promote(
    name: str,
    demote: Annotated[bool, typer.Option("--demote", help="Make an admin an ordinary user again.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Give a user the admin role (operator endpoints), or take it away with --demote."""
    from conveyor.auth import set_role

    settings = cli_settings()

    async def work(session: Any) -> dict[str, Any]:
        user = await set_role(session, name, "user" if demote else "admin")
        return {"id": user.id, "name": user.name, "role": user.role}

    _users_command(settings, work, as_json, lambda r: [f"user {r['name']} is now {r['role']}"])


@users_app.command("revoke")
def users_revoke(
    prefix: Annotated[str | None, typer.Argument(help="The key's first 10 characters (cvy_ and six more).")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Revoke every key of this user instead.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke one API key by its prefix, or every key of a user (--user NAME)."""
    from conveyor.auth import revoke_all, revoke_prefix, user_named
    from conveyor.errors import BadInput

    settings = cli_settings()
    if (prefix is None) == (user is None):
        fail(BadInput("give a key prefix or --user NAME (one of them)", code="BAD_OPTION"), as_json=as_json)

    async def work(session: Any) -> dict[str, Any]:
        if user is not None:
            owner = await user_named(session, user)
            return {"user": owner.name, "revoked": await revoke_all(session, owner.id)}
        assert prefix is not None
        row = await revoke_prefix(session, prefix)
        return {"user_id": row.user_id, "prefix": row.prefix, "revoked": 1}

    _users_command(settings, work, as_json, lambda r: [f"revoked {r['revoked']} key(s)"])


@users_app.command("rotate")
def users_rotate(name: str, expires_in: ExpiresOpt = None, as_json: JsonOpt = False) -> None:
    """Issue a user a new API key (printed once) and revoke every older one."""
    from conveyor.auth import key_prefix, rotate, user_named

    settings = cli_settings()

    async def work(session: Any) -> dict[str, Any]:
        owner = await user_named(session, name)
        key, revoked = await rotate(session, owner, expires_in_days=expires_in)
        return {"name": owner.name, "api_key": key, "prefix": key_prefix(key), "revoked": revoked}

    _users_command(
        settings,
        work,
        as_json,
        lambda r: [
            f"revoked {r['revoked']} older key(s) of {r['name']}",
            f"new API key (shown once): [bold]{r['api_key']}[/bold]",
        ],
    )


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOpt = False) -> None:
    """Apply database migrations."""
    from conveyor.db import migrate

    settings = cli_settings()
    run_command(migrate(settings.database_url_resolved), as_json=as_json)
    if as_json:
        emit_json({"database": "migrated"})
    else:
        console.print("database migrated")


def _register_pipeline_commands() -> None:
    """Each pipeline's commands (its manifest names the function that adds them), then ``demo``."""
    from cli.demo import demo
    from conveyor.pipeline import load
    from workers.pipelines import PIPELINES

    for pipeline in PIPELINES:
        load(pipeline.cli)(app)
    app.command()(demo)


_register_pipeline_commands()


def main() -> None:
    """Run the CLI, then exit without interpreter teardown.

    The Temporal client's Rust threads can crash CPython's finalisation after a short-lived command has
    finished its work (SIGSEGV or SIGABRT at exit), which would turn a
    successful command into a failed exit code. Output is flushed first; nothing else is pending by then.
    """
    code = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
