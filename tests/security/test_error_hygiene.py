"""Issue 12, item 14: errors that are not Conveyor's own leave a worker without server paths, DB URLs or credentials.

The activities run on a real worker (the time-skipping test server) with the kernel's interceptor; what the
workflow's caller reads back (decoded, as the API and the run rows read it) names no path, while the worker's log
keeps the full text. Error types and retries are Temporal's as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, MutableMapping
from datetime import timedelta
from typing import Any

import pytest
import structlog
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner

from conveyor.errors import NON_RETRYABLE_ERROR_TYPES, ExternalServiceError, failure_info, scrub_message
from tests.helpers import NewWorker
from workers import interceptors
from workers.interceptors import ConveyorInterceptor

SECRET = "/srv/secret/path"
DB_URL = "postgresql+asyncpg://conveyor:hunter2@db.internal:5432/prod"
attempts: list[str] = []


@activity.defn(name="hygiene_case")
async def hygiene_case(case: str) -> int:
    """Fail the way ``case`` says (``flaky`` only on its first attempt); the attempt number on success."""
    attempts.append(case)
    if case == "oserror":
        raise OSError(f"[Errno 5] I/O error reading {SECRET}/uploads/orders.csv")
    if case == "permission":
        raise PermissionError(13, "Permission denied", f"{SECRET}/key.pem")
    if case == "chained":
        try:
            raise OSError(f"[Errno 111] connect to {SECRET}/.s.PGSQL.5432 refused")
        except OSError as err:
            raise RuntimeError(f"cannot reach {DB_URL}") from err
    if case == "ours":
        try:
            raise ConnectionError(f"the pool of {DB_URL} is closed")
        except ConnectionError as err:
            raise ExternalServiceError("the database is unavailable", code="DB_DOWN") from err
    if case == "flaky" and activity.info().attempt == 1:
        raise OSError(f"{SECRET} is busy")
    return activity.info().attempt


@workflow.defn(name="HygieneWorkflow")
class HygieneWorkflow:
    @workflow.run
    async def run(self, case: str) -> int:
        return int(
            await workflow.execute_activity(
                hygiene_case,
                case,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=10),
                    maximum_attempts=3,
                    non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
                ),
            )
        )


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MutableMapping[str, Any]]]:
    """What the interceptor logs on the worker (a logger made under structlog's capture: cached ones bypass it)."""
    with structlog.testing.capture_logs() as captured:
        monkeypatch.setattr(interceptors, "log", structlog.get_logger("workers.interceptors"))
        yield captured


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and every cause below it, Temporal's and Python's."""
    found: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and len(found) < 20:
        found.append(cur)
        cur = getattr(cur, "cause", None) or cur.__cause__
    return found


def _text(err: BaseException) -> str:
    """Every message and type of a failure's chain, as the caller reads it (its stack trace names code only)."""
    return "\n".join(f"{type(e).__name__} {getattr(e, 'type', '')} {e}" for e in _chain(err))


async def _fail(new_worker: NewWorker, case: str) -> WorkflowFailureError:
    attempts.clear()
    async with new_worker(
        [HygieneWorkflow],
        [hygiene_case],
        interceptors=[ConveyorInterceptor()],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ) as worker:
        with pytest.raises(WorkflowFailureError) as caught:
            await worker.client.execute_workflow(
                HygieneWorkflow.run, case, id=f"hygiene-{uuid.uuid4()}", task_queue=worker.task_queue
            )
    return caught.value


def _activity_failure(err: WorkflowFailureError) -> ApplicationError:
    assert isinstance(err.cause, ActivityError)
    assert isinstance(err.cause.cause, ApplicationError)
    return err.cause.cause


async def test_an_oserror_leaves_the_worker_without_its_path_and_the_worker_log_keeps_it(
    new_worker: NewWorker, logs: list[MutableMapping[str, Any]]
) -> None:
    failed = await _fail(new_worker, "oserror")

    app = _activity_failure(failed)
    assert app.type == "OSError"  # the type Temporal always gave it
    assert app.message == "[Errno 5] I/O error reading <path>"
    assert SECRET not in _text(failed) and "orders.csv" not in _text(failed)
    assert SECRET not in failure_info(failed).message  # what a run row and the API show
    assert attempts == ["oserror"] * 3, "still retried by the policy"
    assert any(SECRET in str(entry.get("error")) and entry["error_type"] == "OSError" for entry in logs)


async def test_non_retryable_types_stay_non_retryable(new_worker: NewWorker) -> None:
    failed = await _fail(new_worker, "permission")

    app = _activity_failure(failed)
    assert app.type == "PermissionError" and not app.non_retryable  # the policy's type list decides, as before
    assert attempts == ["permission"]
    assert SECRET not in _text(failed) and "Permission denied" in app.message


async def test_db_urls_and_credentials_are_scrubbed_along_the_whole_cause_chain(
    new_worker: NewWorker, logs: list[MutableMapping[str, Any]]
) -> None:
    failed = await _fail(new_worker, "chained")

    text = _text(failed)
    assert "hunter2" not in text and "db.internal" not in text and SECRET not in text
    app = _activity_failure(failed)
    assert app.type == "RuntimeError" and app.message == "cannot reach postgresql+asyncpg://<redacted>"
    below = app.cause or app.__cause__
    assert isinstance(below, ApplicationError) and below.type == "OSError", "the cause is kept, scrubbed"
    assert any("hunter2" in str(entry.get("error")) for entry in logs)


async def test_conveyor_errors_keep_their_kind_and_code_and_their_foreign_causes_are_scrubbed(
    new_worker: NewWorker,
) -> None:
    failed = await _fail(new_worker, "ours")

    app = _activity_failure(failed)
    assert (app.type, app.details[0], app.message) == ("ExternalService", "DB_DOWN", "the database is unavailable")
    assert attempts == ["ours"] * 3
    assert "hunter2" not in _text(failed)


async def test_a_retry_after_a_scrubbed_failure_still_succeeds(new_worker: NewWorker) -> None:
    attempts.clear()
    async with new_worker(
        [HygieneWorkflow],
        [hygiene_case],
        interceptors=[ConveyorInterceptor()],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ) as worker:
        result = await worker.client.execute_workflow(
            HygieneWorkflow.run, "flaky", id=f"hygiene-{uuid.uuid4()}", task_queue=worker.task_queue
        )
    assert result == 2


@pytest.mark.parametrize(
    ("raw", "public"),
    [
        (
            "[Errno 2] No such file or directory: '/var/lib/conveyor/x.db'",
            "[Errno 2] No such file or directory: '<path>'",
        ),
        ("open C:\\Users\\ops\\key.pem failed", "open <path> failed"),
        ("GET https://bob:s3cr3t@api.example.com/v1 -> 500", "GET https://<redacted>@api.example.com/v1 -> 500"),
        ("redis://:pw@cache:6379/0 is down", "redis://<redacted> is down"),
        ("read file:///srv/a/b", "read file://<path>"),
        (
            "x\n[parameters: ('alice@example.com', 3)]\n(Background on this error at: https://sqlalche.me/e/20/gkpj)",
            "x\n[parameters: <redacted>]\n(Background on this error at: https://sqlalche.me/e/20/gkpj)",
        ),
        ("see https://docs.example.com/a/b, 1/2 done and/or", "see https://docs.example.com/a/b, 1/2 done and/or"),
    ],
)
def test_scrub_message(raw: str, public: str) -> None:
    assert scrub_message(raw) == public
