"""``conveyor persona ingest|search``: ingest a persona's texts with a bar per collection; ask it questions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from temporalio.client import WorkflowFailureError

from cli.context import DemoContext, DemoRun, cli_context, cli_settings, run_command
from cli.output import console, emit_json, fail, job_bars
from conveyor.errors import BadInput
from conveyor.settings import Settings

persona_app = typer.Typer(
    help="Personas: ingest works, quotes and profile into ChromaDB; search them.", no_args_is_help=True
)
POLL_S = 0.3


async def run_ingest(
    settings: Settings, persona_id: str, data_root: Path | None, *, user_name: str | None, show: bool
) -> dict[str, Any]:
    """Create the persona if needed, copy ``data_root``'s corpus into its folder (the operator's local files),
    start (or join) its ingestion, follow its jobs and return the result."""
    from activities.persona.sources import persona_folder, stage_seed_layout
    from api.routes.persona import persona_out
    from api.services import persona as service
    from conveyor.errors import NotFound

    async with cli_context(settings, user_name) as cli:
        async with cli.caller() as caller:
            try:
                persona = await service.get_persona(caller, persona_id)
            except NotFound:
                persona = await service.create_persona(caller.session, caller.user, persona_id, persona_id, "")
            if data_root is not None and persona.status not in ("queued", "running"):
                folder = persona_folder(settings.persona_data_root_resolved, caller.user.id, persona_id)
                await asyncio.to_thread(stage_seed_layout, data_root, persona_id, folder)
            started = await service.start_ingestion(caller, persona_id)
        handle = cli.client.get_workflow_handle(started.workflow_id)
        with job_bars(show=show) as bars:
            ids = {c: bars.add_task(c, total=100, label=c, detail="queued") for c in started.jobs}
            waiter = asyncio.ensure_future(handle.result())
            while True:
                async with cli.caller() as caller:
                    for job_id in started.jobs.values():
                        job = await service.get_job(caller, job_id)
                        detail = f"{job.status} · {job.files_done}/{job.files_total} files · {job.added} added"
                        bars.update(ids[job.collection], completed=job.progress, detail=detail)
                if waiter.done():
                    break
                await asyncio.wait([waiter], timeout=POLL_S)
            with contextlib.suppress(WorkflowFailureError):  # the persona and job rows carry the outcome
                waiter.result()
        async with cli.caller() as caller:
            persona = await service.get_persona(caller, persona_id)
            return persona_out(persona, settings, await service.jobs_of(caller, persona)).model_dump(mode="json")


async def run_search(
    settings: Settings, persona_id: str, query: str, *, k: int, collections: list[str], user_name: str | None
) -> dict[str, Any]:
    """Search the persona's passages through a persona worker."""
    from activities.persona.schemas import Collection, SearchRequest
    from api.services import persona as service

    try:
        chosen = [Collection(c) for c in collections] or list(Collection)
    except ValueError as err:
        raise BadInput(f"collections are works, quotes and profile: {err}", code="BAD_COLLECTION") from err
    async with cli_context(settings, user_name) as cli:
        async with cli.caller() as caller:
            persona = await service.get_persona(caller, persona_id)
        request = SearchRequest(persona_id=persona.id, query=query, k=k, collections=chosen)
        found = await service.search(caller, persona, request)  # needs no DB session
        return found.model_copy(update={"persona_id": persona_id}).model_dump(mode="json")


UserOpt = Annotated[str | None, typer.Option("--user", help="Act as this user (default: the local user).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@persona_app.command("ingest")
def ingest(
    persona_id: Annotated[str, typer.Argument(help="Persona id (its folder name under data/).")],
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="A folder on this machine with data/<id>/ and personas/<id>/profile.md: copied into the persona's "
            "folder first (default: ingest the documents it already has).",
        ),
    ] = None,
    user: UserOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest a persona's works, quotes and profile with a progress bar per collection."""
    settings = cli_settings()
    root = data_dir.resolve() if data_dir is not None else None
    if root is not None and not root.is_dir():
        fail(BadInput(f"data folder {root} not found", code="DATA_DIR_NOT_FOUND"), as_json=as_json)
    result = run_command(run_ingest(settings, persona_id, root, user_name=user, show=not as_json), as_json=as_json)
    if as_json:
        emit_json(result)
    else:
        colour = {"completed": "green", "failed": "red"}.get(result["status"], "yellow")
        console.print(f"persona [bold]{persona_id}[/bold]: [{colour}]{result['status']}[/{colour}]")
        if result.get("error_message"):
            console.print(f"  {result['error_code']}: {result['error_message']}")
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
    if result["status"] != "completed":
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
    settings = cli_settings()
    result = run_command(
        run_search(settings, persona_id, question, k=k, collections=collection or [], user_name=user), as_json=as_json
    )
    if as_json:
        emit_json(result)
        return
    table = Table("score", "collection", "source", "passage", title=question)
    for p in result["passages"]:
        table.add_row(f"{p['score']:.3f}", p["collection"], p["source"], p["text"][:300])
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``conveyor persona ingest|search``."""
    app.add_typer(persona_app, name="persona")


SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "personas"
DEMO_PERSONA = "franklin"
DEMO_QUESTION = "What did he pay too much for as a child?"


def demo_documents() -> list[tuple[str, Path]]:
    """The bundled persona's files as (collection, path) uploads: works, quotes and the profile."""
    data = SAMPLES / "data" / DEMO_PERSONA
    files = [("profile", SAMPLES / "personas" / DEMO_PERSONA / "profile.md")]
    files += [("quotes", p) for p in sorted((data / "quotes").glob("*.jsonl"))]
    files += [("works", p) for p in sorted((data / "works").rglob("*")) if p.suffix in (".txt", ".md")]
    files += [("profile", p) for p in sorted((data / "profile").rglob("*")) if p.suffix in (".txt", ".md")]
    return files


async def demo(ctx: DemoContext) -> list[DemoRun]:
    """Upload the bundled persona (works, quotes, profile) through the API, ingest it and ask it a question."""
    from cli.watch import Watched, watch

    created = await ctx.http.post("/api/personas", json={"id": DEMO_PERSONA, "name": "Benjamin Franklin"})
    if created.status_code != 409:  # already there from an earlier demo: ingest again (adds nothing new)
        created.raise_for_status()
    for collection, path in demo_documents():
        sent = await ctx.http.post(
            f"/api/personas/{DEMO_PERSONA}/documents",
            data={"collection": collection},
            files={"file": (path.name, path.read_bytes(), "text/plain")},
        )
        sent.raise_for_status()
    started = await ctx.http.post(f"/api/personas/{DEMO_PERSONA}/ingest")
    started.raise_for_status()
    wf = started.json()["workflow_id"]
    t0 = time.monotonic()
    final = (await watch(ctx.client, [Watched(wf, "persona franklin")], show=ctx.show))[wf]
    persona = (await ctx.http.get(f"/api/personas/{DEMO_PERSONA}")).json()
    counts = ", ".join(f"{j['collection']} {j['total_vectors']}" for j in persona["jobs"])
    found = await ctx.http.post(f"/api/personas/{DEMO_PERSONA}/search", json={"query": DEMO_QUESTION, "k": 3})
    found.raise_for_status()
    passages = found.json()["passages"]
    if ctx.show and passages:
        table = Table("score", "collection", "source", "passage", title=f"persona search: {DEMO_QUESTION}")
        for p in passages:
            table.add_row(f"{p['score']:.3f}", p["collection"], p["source"], p["text"][:160])
        console.print(table)
    top = f"; top answer from {passages[0]['source']}" if passages else ""
    return [ctx.run("persona: franklin", final, t0, persona["status"], f"vectors: {counts}{top}")]
