"""Record real AnalysisWorkflow histories for the replay tests: ``python -m tests.histories.record``.

Runs a completed, a failed and a cancelled task on the real dev server with the real activities and saves
each history as JSON beside this file. Re-record only when a workflow change is meant to be incompatible
(and then version the workflow with ``workflow.patched`` instead, if runs may be in flight).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import tempfile
from pathlib import Path

from temporalio.client import WorkflowFailureError

from api.services import analysis as service
from bench.datagen import write_messy_csv
from conveyor.auth import create_user
from conveyor.db import migrate
from conveyor.progress import PROGRESS_QUERY, Progress
from conveyor.settings import Settings
from tests.conftest import start_dev_server
from workers.run import build_workers, open_resources

HERE = Path(__file__).parent
SAMPLES = HERE.parents[1] / "samples" / "analysis"


async def record() -> None:
    """Run the three scenarios and write their histories."""
    env = await start_dev_server()
    with tempfile.TemporaryDirectory() as var:
        settings = Settings(var_dir=Path(var), temporal_address=env.client.service_client.config.target_host)
        await migrate(settings.database_url_resolved)
        async with open_resources(settings) as res:
            with concurrent.futures.ThreadPoolExecutor() as executor:
                workers = build_workers(env.client, res, ["analysis"], executor)
                runs = [asyncio.create_task(w.run()) for w in workers]
                async with res.sessions() as session:
                    user, _ = await create_user(session, "recorder", 1000)
                    await session.commit()
                    big = Path(var) / "big.csv"
                    write_messy_csv(big, rows=20_000)
                    scenarios = {
                        "completed": ("profile-my-data", "orders_2024.csv", (SAMPLES / "orders_2024.csv").read_bytes()),
                        "failed": ("profile-my-data", "header_only.csv", b"id,name\n"),
                        "cancelled": ("clean-my-data", "big.csv", big.read_bytes()),
                    }
                    for outcome, (tool, name, data) in scenarios.items():
                        task = await service.create_task(
                            session,
                            res.blobs,
                            settings,
                            user,
                            tool_id=tool,
                            agents=[],
                            params={},
                            files=[service.Upload(name, io.BytesIO(data))],
                        )
                        started = await service.process_task(session, env.client, user, task.task_id)
                        handle = env.client.get_workflow_handle(started.workflow_id)
                        if outcome == "cancelled":
                            while (await handle.query(PROGRESS_QUERY, result_type=Progress)).done < 1:
                                await asyncio.sleep(0.05)
                            await handle.cancel()
                        try:
                            await handle.result()
                        except WorkflowFailureError:
                            pass  # failed and cancelled runs are what this records
                        history = await handle.fetch_history()
                        (HERE / f"analysis-{outcome}.json").write_text(history.to_json())
                await asyncio.gather(*(w.shutdown() for w in workers))
                await asyncio.gather(*runs, return_exceptions=True)
    await env.shutdown()


if __name__ == "__main__":
    asyncio.run(record())
