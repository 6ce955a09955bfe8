"""``conveyor persona ingest|search``: ingest a persona's texts with a bar per collection; ask it questions."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from conveyor.cli.output import console, emit_json, fail, job_bars
from conveyor.errors import BadInput, ConveyorError
from conveyor.logging import configure_logging
from conveyor.settings import Settings, get_settings

persona_app = typer.Typer(
    help="Personas: ingest works, quotes and profile into ChromaDB; search them.", no_args_is_help=True
)
POLL_S = 0.3


async def _open(settings: Settings) -> Any:
    from conveyor.db import create_engine, migrate

    await migrate(settings.database_url_resolved)
    return create_engine(settings.database_url_resolved)


async def run_ingest(
    settings: Settings, persona_id: str, data_root: Path, *, user_name: str | None, show: bool
) -> dict[str, Any]:
    """Create the persona if needed, start (or join) its ingestion, follow its jobs and return the result."""
    from activities.persona.models import Persona
    from api.routes.persona import persona_out
    from api.services import persona as service
    from conveyor.cli.analyze import resolve_user
    from conveyor.db import session_factory
    from conveyor.temporal import connect

    engine = await _open(settings)
    try:
        client = await connect(settings)
        sessions = session_factory(engine)
        async with sessions() as session:
            user = await resolve_user(session, settings, user_name)
            if await session.get(Persona, persona_id) is None:
                await service.create_persona(session, user, persona_id, persona_id, "")
            started = await service.start_ingestion(session, client, user, persona_id, data_root)
        handle = client.get_workflow_handle(started.workflow_id)
        with job_bars(show=show) as bars:
            ids = {c: bars.add_task(c, total=100, label=c, detail="pending") for c in started.jobs}
            waiter = asyncio.ensure_future(handle.result())
            while True:
                async with sessions() as session:
                    for job_id in started.jobs.values():
                        job = await service.get_job(session, user, job_id)
                        detail = f"{job.status} · {job.files_done}/{job.files_total} files · {job.added} added"
                        bars.update(ids[job.collection], completed=job.progress, detail=detail)
                if waiter.done():
                    break
                await asyncio.wait([waiter], timeout=POLL_S)
            try:
                waiter.result()
            except Exception:  # noqa: BLE001 - the persona and job rows carry the outcome shown below
                pass
        async with sessions() as session:
            persona = await service.get_persona(session, user, persona_id)
            await session.refresh(persona)
            jobs = await service.jobs_of(session, persona)
            for job in jobs:
                await session.refresh(job)
            return persona_out(persona, jobs, settings).model_dump(mode="json")
    finally:
        await engine.dispose()


async def run_search(
    settings: Settings, persona_id: str, query: str, *, k: int, collections: list[str], user_name: str | None
) -> dict[str, Any]:
    """Search the persona's passages through a persona worker."""
    from activities.persona.schemas import Collection, SearchRequest
    from api.services import persona as service
    from conveyor.cli.analyze import resolve_user
    from conveyor.db import session_factory
    from conveyor.temporal import connect

    try:
        chosen = [Collection(c) for c in collections] or list(Collection)
    except ValueError as err:
        raise BadInput(f"collections are works, quotes and profile: {err}", code="BAD_COLLECTION") from err
    engine = await _open(settings)
    try:
        client = await connect(settings)
        async with session_factory(engine)() as session:
            user = await resolve_user(session, settings, user_name)
            persona = await service.get_persona(session, user, persona_id)
        request = SearchRequest(persona_id=persona_id, query=query, k=k, collections=chosen)
        return (await service.search(client, user, persona, request)).model_dump(mode="json")
    finally:
        await engine.dispose()


UserOpt = Annotated[str | None, typer.Option("--user", help="Act as this user (default: the local user).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@persona_app.command("ingest")
def ingest(
    persona_id: Annotated[str, typer.Argument(help="Persona id (its folder name under data/).")],
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Folder with data/<id>/ and personas/<id>/ (default: setting).")
    ] = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest a persona's works, quotes and profile with a progress bar per collection."""
    settings = get_settings()
    configure_logging(settings)
    root = (data_dir or settings.persona_data_root_resolved).resolve()
    try:
        if not root.is_dir():
            raise BadInput(f"data folder {root} not found", code="DATA_DIR_NOT_FOUND")
        result = asyncio.run(run_ingest(settings, persona_id, root, user_name=user, show=not as_json))
    except ConveyorError as err:
        fail(err, as_json=as_json)
    if as_json:
        emit_json(result)
    else:
        colour = {"active": "green", "failed": "red"}.get(result["status"], "yellow")
        console.print(f"persona [bold]{persona_id}[/bold]: [{colour}]{result['status']}[/{colour}]")
        if result.get("status_reason"):
            console.print(f"  {result['status_reason']}")
        table = Table("collection", "status", "vectors", "added", "removed", "files", "warnings")
        for job in result["jobs"]:
            table.add_row(
                job["collection"],
                job["status"],
                str(job["total_vectors"]),
                str(job["added"]),
                str(job["removed"]),
                f"{job['files_done']}/{job['files_total']}",
                "\n".join(job["warnings"]) or (job["error_message"] or ""),
            )
        console.print(table)
    if result["status"] != "active":
        raise typer.Exit(1)


@persona_app.command("search")
def search(
    persona_id: Annotated[str, typer.Argument(help="Persona id.")],
    question: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", min=1, max=50, help="Passages to return.")] = 5,
    collection: Annotated[
        list[str] | None, typer.Option("--collection", "-c", help="works, quotes or profile (repeat; default all).")
    ] = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The passages of a persona that best answer a question."""
    settings = get_settings()
    configure_logging(settings)
    try:
        result = asyncio.run(
            run_search(settings, persona_id, question, k=k, collections=collection or [], user_name=user)
        )
    except ConveyorError as err:
        fail(err, as_json=as_json)
    if as_json:
        emit_json(result)
        return
    table = Table("score", "collection", "source", "passage", title=question)
    for p in result["passages"]:
        table.add_row(f"{p['score']:.3f}", p["collection"], p["source"], p["text"][:300])
    console.print(table)
