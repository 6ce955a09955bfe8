"""A fatigue approval survives its Temporal server restarting and its worker being killed (-9): the owner approves
it afterwards and the action runs once."""

from __future__ import annotations

import signal
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from activities.attribution import contract
from activities.attribution.models import AuditEntry
from activities.attribution.schemas import ApprovalOutcome, FatigueReport
from cli.attribution import DEMO_TIRED_AD, demo_metrics
from conveyor.auth import create_user
from conveyor.db import create_engine, migrate, session_factory
from conveyor.temporal import connect, dev_server_command, free_port, spawn, stop_process
from tests.helpers import assert_eventually
from tests.helpers.processes import spawn_worker, stop_all
from tests.helpers.stack import serve_api, stack_settings

pytestmark = [pytest.mark.process, pytest.mark.slow]


async def test_a_pending_approval_outlives_a_server_restart_and_a_killed_worker(tmp_path: Path) -> None:
    settings = stack_settings(
        tmp_path / "var",
        f"127.0.0.1:{free_port()}",
        temporal_ui_port=free_port(),
        temporal_db_filename=str(tmp_path / "temporal.db"),
    )

    async def start_server(log: str) -> subprocess.Popen[bytes]:
        proc = spawn(dev_server_command(settings), log_path=tmp_path / log)
        await connect(settings, attempts=240, delay=0.25)
        return proc

    servers = [await start_server("temporal1.log")]
    await migrate(settings.database_url_resolved)
    engine = create_engine(settings.database_url_resolved)
    sessions = session_factory(engine)
    workers = [spawn_worker(settings, [contract.FATIGUE_QUEUE], tmp_path / "worker1.log")]
    try:
        async with sessions.begin() as session:
            _user, key = await create_user(session, "ana", 100)
        async with (
            serve_api(settings) as api_url,
            httpx.AsyncClient(base_url=api_url, headers={"X-API-Key": key}) as http,
        ):
            assert (await http.post("/api/ads", json={"ad_id": "tired", "campaign_id": "c"})).status_code == 201
            tired = [{**m, "ad_id": "tired"} for m in demo_metrics(datetime.now(UTC).date(), [DEMO_TIRED_AD])]
            assert (await http.post("/api/ad-metrics", json={"metrics": tired})).status_code == 200
            client = await connect(settings)
            report = await client.execute_workflow(
                contract.FATIGUE_WORKFLOW,
                contract.ScheduledRun(),
                id=f"fatigue-{uuid.uuid4().hex[:8]}",
                task_queue=contract.FATIGUE_QUEUE,
                result_type=FatigueReport,
            )
            [request] = report.approvals
            approval = contract.approval_workflow_id(request.approval_id)

            async def waiting() -> None:
                outcome = await client.get_workflow_handle(approval).query(
                    contract.APPROVAL_QUERY, result_type=ApprovalOutcome
                )
                assert outcome.status == "pending"

            await assert_eventually(waiting, within_s=60, interval=0.5)

            # everything the approval runs on goes away: the worker dies (-9), the server stops and comes back
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait(30)
            stop_process(servers.pop())
            servers.append(await start_server("temporal2.log"))
            workers.append(spawn_worker(settings, [contract.FATIGUE_QUEUE], tmp_path / "worker2.log"))

            async def approve() -> None:  # until the server and a worker answer (a 409: an earlier try got through)
                answer = await http.post(f"/api/approvals/{request.approval_id}/approve", timeout=60)
                assert answer.status_code in (200, 409), answer.text

            await assert_eventually(approve, within_s=90, interval=1.0)
            approved = (await http.get(f"/api/approvals/{request.approval_id}")).json()
            assert (approved["status"], approved["decided_by"]) == ("executed", "ana")
            assert (await http.get("/api/ads/tired")).json()["status"] == "rotated"
            async with sessions() as session:
                audit = (await session.scalars(select(AuditEntry))).all()
            assert [(e.ad_id, e.action, e.actor) for e in audit] == [("tired", "rotate", "ana")]
    finally:
        stop_all(*workers)
        for server in servers:
            stop_process(server)
        await engine.dispose()
