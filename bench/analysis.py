"""Benchmark: analysis through Conveyor vs the same agents called directly, in one run.

1. Generates a messy 1,000,000-row CSV (``bench.datagen``).
2. Direct: converts it to Parquet and runs the profile-my-data and clean-my-data agents in-process.
3. Conveyor: the same two tasks through the real stack (dev server, workers, SQLite, blob store), timed from
   the ``process`` call to the task's completion. Direct and Conveyor runs alternate, ``--rounds`` times,
   and the best of each is compared, so load from elsewhere on the machine does not favour either.
4. ``POST /api/tasks/{id}/process`` latency over 200 calls against the API served by uvicorn in a
   separate process.

Prints both times and their ratio (target: orchestration overhead ≤ 10%) and p50/p95 latency (target
p95 < 50 ms). Usage: ``python -m bench.analysis [--rows N] [--calls N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import httpx
from rich.console import Console
from rich.table import Table

from activities.analysis.agents.base import AgentContext, Dataset
from activities.analysis.agents.registry import AGENTS
from activities.analysis.catalog import TOOLS
from activities.analysis.ingest import convert_to_parquet
from bench.datagen import write_messy_csv

console = Console()
OUT = Path(__file__).parent / "out"
TOOLS_RUN = ("profile-my-data", "clean-my-data")


def run_direct(csv: Path, tool_id: str, workdir: Path) -> float:
    """Convert and run a tool's agents in-process, chaining as the workflow does; returns seconds."""
    started = time.perf_counter()
    parquet = workdir / f"{tool_id}.parquet"
    convert_to_parquet(csv, csv.name, parquet, max_bytes=10**10)
    inputs = [Dataset(csv.name, parquet)]
    current, previous = inputs, {}
    agents = [a.id for a in TOOLS[tool_id].agents if a.min_files <= 1]
    for agent_id in agents:
        out = workdir / f"{tool_id}-{agent_id}"
        out.mkdir()
        con = duckdb.connect()
        result = AGENTS[agent_id](AgentContext(con, inputs, current, {}, previous, out))
        con.close()
        previous[agent_id] = result.summary
        if result.current is not None:
            current = result.current
    if current is not inputs:  # a user of the direct path also wants the cleaned table as a file
        con = duckdb.connect()
        for i, dataset in enumerate(current):
            out_csv = str(workdir / f"{tool_id}-final-{i}.csv")
            con.execute(f"COPY (SELECT * FROM read_parquet('{dataset.path}')) TO '{out_csv}' (HEADER, DELIMITER ',')")
        con.close()
    return time.perf_counter() - started


async def run_side_by_side(
    csv: Path, var: Path, rounds: int, calls: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], list[float]]:
    """Each round runs each tool directly, then through the real stack, back to back (so machine load
    hits both alike); then ``calls`` process calls are timed against the API."""
    from temporalio.testing import WorkflowEnvironment

    from activities.analysis.schemas import AnalysisResult
    from api.caller import Caller
    from api.services import analysis as service
    from conveyor import logging as conveyor_logging
    from conveyor.auth import create_user
    from conveyor.codec import KeyRing, encrypting_converter
    from conveyor.db import migrate
    from conveyor.settings import Settings
    from conveyor.temporal import SEARCH_ATTRIBUTES, free_port, temporal_cli_path
    from workers.run import build_workers, open_resources, queues_of_groups

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        data_converter=encrypting_converter(KeyRing.generate("bench")),
        search_attributes=list(SEARCH_ATTRIBUTES),
        ui=False,
        dev_server_extra_args=["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"],
    )
    port = free_port()
    settings = Settings(
        var_dir=var,
        temporal_address=env.client.service_client.config.target_host,
        api_port=port,
        max_upload_bytes=10**10,
        log_level="warning",
    )
    conveyor_logging.configure_logging(settings)
    await migrate(settings.database_url_resolved)
    direct: dict[str, list[float]] = {tool: [] for tool in TOOLS_RUN}
    through: dict[str, list[float]] = {tool: [] for tool in TOOLS_RUN}
    latencies: list[float] = []
    async with open_resources(settings) as res:
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as executor:
            workers = build_workers(env.client, res, queues_of_groups(["analysis"]), executor)
            runs = [asyncio.create_task(w.run()) for w in workers]
            async with res.sessions() as session:
                user, key = await create_user(session, "bench", 10**9)
                await session.commit()
                caller = Caller(user=user, session=session, client=env.client, blobs=res.blobs, settings=settings)
                for tool in [t for _ in range(rounds) for t in TOOLS_RUN]:
                    with tempfile.TemporaryDirectory() as tmp:
                        direct[tool].append(await asyncio.to_thread(run_direct, csv, tool, Path(tmp)))
                    with csv.open("rb") as f:
                        task = await service.create_task(
                            session,
                            res.blobs,
                            settings,
                            user,
                            tool_id=tool,
                            agents=[],
                            params={},
                            files=[service.Upload(csv.name, f)],
                        )
                    started = time.perf_counter()
                    result = await service.process_task(caller, task.task_id)
                    handle = env.client.get_workflow_handle(result.workflow_id, result_type=AnalysisResult)
                    final = await handle.result()
                    through[tool].append(time.perf_counter() - started)
                    assert final.status == "completed", final
                # the endpoint's own cost: workers stopped, so the 2 cores are not also running the queued work
                await asyncio.gather(*(w.shutdown() for w in workers))
                await asyncio.gather(*runs, return_exceptions=True)
                latencies = await _process_latency(settings, session, res, user, key, calls)
    await env.shutdown()
    return direct, through, latencies


async def _process_latency(settings, session, res, user, key: str, calls: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Create ``calls`` tiny tasks, then time each ``POST /process`` against a uvicorn API process."""
    import io

    from api.services import analysis as service

    ids = []
    for _ in range(calls):
        task = await service.create_task(
            session,
            res.blobs,
            settings,
            user,
            tool_id="profile-my-data",
            agents=["unified-profiler"],
            params={},
            files=[service.Upload("tiny.csv", io.BytesIO(b"a,b\n1,2\n3,4\n"))],
        )
        ids.append(task.task_id)
    env = {
        **os.environ,
        "CONVEYOR_VAR_DIR": str(settings.var_dir),
        "CONVEYOR_TEMPORAL_ADDRESS": settings.temporal_address,
        "CONVEYOR_API_PORT": str(settings.api_port),
        "CONVEYOR_LOG_LEVEL": "warning",
    }
    api = subprocess.Popen([sys.executable, "-m", "cli", "api"], env=env, stderr=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(base_url=settings.api_url, headers={"X-API-Key": key}) as http:
            for _ in range(200):
                try:
                    if (await http.get("/api/health")).status_code in (200, 503):
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            latencies = []
            for task_id in ids:
                t0 = time.perf_counter()
                resp = await http.post(f"/api/tasks/{task_id}/process")
                latencies.append((time.perf_counter() - t0) * 1000)
                resp.raise_for_status()
        return latencies
    finally:
        api.terminate()
        api.wait(30)


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    csv = OUT / f"messy_{args.rows}.csv"
    if not csv.exists():
        console.print(f"generating {args.rows:,} rows → {csv}")
        write_messy_csv(csv, rows=args.rows)
    with tempfile.TemporaryDirectory() as var:
        direct, through, latencies = asyncio.run(run_side_by_side(csv, Path(var), args.rounds, args.calls))
    title = f"analysis on {args.rows:,} rows, best of {args.rounds} interleaved rounds"
    table = Table("tool", "direct s", "Conveyor s", "ratio", "overhead", "all direct / Conveyor s", title=title)
    best_d, best_c = {t: min(v) for t, v in direct.items()}, {t: min(v) for t, v in through.items()}
    for tool in [*TOOLS_RUN, "total"]:
        d = best_d[tool] if tool in best_d else sum(best_d.values())
        c = best_c[tool] if tool in best_c else sum(best_c.values())
        samples = (
            " ".join(f"{x:.1f}" for x in direct[tool]) + " / " + " ".join(f"{x:.1f}" for x in through[tool])
            if tool in direct
            else ""
        )
        table.add_row(tool, f"{d:.2f}", f"{c:.2f}", f"{c / d:.3f}", f"{(c / d - 1) * 100:+.1f}%", samples)
    console.print(table)
    q = statistics.quantiles(latencies, n=100)
    console.print(
        f"POST /api/tasks/{{id}}/process over {len(latencies)} calls (uvicorn process, workers idle): "
        f"p50 {statistics.median(latencies):.1f} ms, p95 {q[94]:.1f} ms, max {max(latencies):.1f} ms"
    )


if __name__ == "__main__":
    main()
