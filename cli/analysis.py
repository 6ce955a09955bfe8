"""``conveyor analyze TOOL FILE…``: run an analysis task from the command line and wait for it."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.context import DemoContext, DemoRun, cli_context, cli_settings, run_command
from cli.output import console, emit_json, fail
from conveyor.errors import BadInput
from conveyor.settings import Settings

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "analysis"


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
    from cli.watch import Watched, watch

    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise BadInput(f"file not found: {', '.join(missing)}", code="FILE_NOT_FOUND")
    async with cli_context(settings, user_name) as cli:
        async with cli.caller() as caller:
            with contextlib.ExitStack() as stack:
                uploads = [service.Upload(f.name, stack.enter_context(f.open("rb"))) for f in files]
                task = await service.create_task(
                    caller.session,
                    caller.blobs,
                    settings,
                    caller.user,
                    tool_id=tool_id,
                    agents=agents,
                    params=params,
                    files=uploads,
                )
            result = await service.process_task(caller, task.task_id)
        if wait:
            await watch(cli.client, [Watched(result.workflow_id, f"{tool_id}")], show=show)
        async with cli.caller() as caller:
            task = await service.get_task(caller, task.task_id)
            out = task_out(task, settings).model_dump(mode="json")
            out["local_outputs"] = {o["name"]: str(p) for o in task.outputs if (p := cli.blobs.local_path(o["key"]))}
            return out


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
    from api.services.analysis import parse_agents, parse_params

    settings = cli_settings()
    try:
        parsed, agent_list = parse_params(params), parse_agents(agents)
    except BadInput as err:
        fail(err, as_json=as_json)
    wait, show = not no_wait, not as_json
    run = run_analysis(settings, tool_id, files, agents=agent_list, params=parsed, user_name=user, wait=wait, show=show)
    task = run_command(run, as_json=as_json)
    if as_json:
        emit_json(task)
    else:
        print_task(task)
    if task["status"] in ("failed", "cancelled"):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``conveyor analyze``."""
    app.command()(analyze)


DEMO_JOBS = [
    ("profile-my-data", ["orders_2024.csv", "orders_2025.csv"]),
    ("clean-my-data", ["customers.csv"]),
    ("master-my-data", ["customers.csv", "customers_crm.csv"]),
    ("profile-my-data", ["sales_eu.csv"]),
]


async def demo(ctx: DemoContext) -> list[DemoRun]:
    """Profile (with drift), clean and master the bundled analysis samples through the HTTP API."""
    from cli.watch import Watched, watch

    started: list[tuple[str, str, float]] = []
    for tool, names in DEMO_JOBS:
        files = [("files", (n, (SAMPLES / n).read_bytes(), "text/csv")) for n in names]
        created = await ctx.http.post("/api/tasks", data={"tool_id": tool}, files=files)
        created.raise_for_status()
        task_id = created.json()["task_id"]
        queued = await ctx.http.post(f"/api/tasks/{task_id}/process")
        queued.raise_for_status()
        started.append((task_id, queued.json()["workflow_id"], time.monotonic()))
    labels = [f"analysis {tool} ({', '.join(names)})"[:28] for tool, names in DEMO_JOBS]
    final = await watch(
        ctx.client, [Watched(wf, label) for (_, wf, _), label in zip(started, labels, strict=True)], show=ctx.show
    )
    runs = []
    for (task_id, wf, t0), (tool, _names) in zip(started, DEMO_JOBS, strict=True):
        task = (await ctx.http.get(f"/api/tasks/{task_id}")).json()
        outputs = ", ".join(o["name"] for o in task["outputs"]) or (task.get("error_code") or "")
        runs.append(ctx.run(f"analysis: {tool}", final[wf], t0, task["status"], outputs))
    return runs
