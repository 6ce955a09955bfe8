"""The error taxonomy: HTTP codes, retryability, the Temporal form of an error and reading failures back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    RetryState,
    TimeoutType,
)
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

from conveyor.errors import (
    NON_RETRYABLE_ERROR_TYPES,
    BadInput,
    Conflict,
    ConveyorError,
    ErrorKind,
    ExternalServiceError,
    FailureInfo,
    InsufficientCredits,
    NotFound,
    OperationTimeout,
    RateLimited,
    Retryable,
    TooLarge,
    failure_info,
    http_status,
)

PERMANENT = [BadInput, NotFound, Conflict, TooLarge, InsufficientCredits]
TRANSIENT = [RateLimited, ExternalServiceError, Retryable, OperationTimeout, ConveyorError]
ALL_CLASSES = [*PERMANENT, *TRANSIENT]


def _activity_error(cause: BaseException) -> ActivityError:
    """An ActivityError as a workflow sees it, with ``cause`` as Temporal's converter would chain it."""
    err = ActivityError(
        "activity task failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker-1",
        activity_type="analysis.load_task",
        activity_id="1",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    err.__cause__ = cause
    return err


# ------------------------------------------------------------------------------------------- HTTP status


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (BadInput, 400),
        (NotFound, 404),
        (Conflict, 409),
        (TooLarge, 413),
        (InsufficientCredits, 402),
        (RateLimited, 429),
        (ExternalServiceError, 502),
        (OperationTimeout, 504),
        (ConveyorError, 500),
        (Retryable, 503),
    ],
)
def test_each_error_class_maps_to_its_http_status(cls: type[ConveyorError], status: int) -> None:
    err = cls("boom")
    assert err.http_status == status
    assert http_status(err.kind) == status
    assert http_status(err.kind.value) == status


def test_unknown_kind_is_http_500() -> None:
    assert http_status("NoSuchKind") == 500
    assert http_status("") == 500


def test_cancelled_kind_is_http_409() -> None:
    assert http_status(ErrorKind.CANCELLED) == 409


# ------------------------------------------------------------------------------------------- retryability


@pytest.mark.parametrize("cls", PERMANENT)
def test_permanent_errors_are_not_retryable(cls: type[ConveyorError]) -> None:
    err = cls("never going to work")
    assert err.retryable is False
    assert err.kind.value in NON_RETRYABLE_ERROR_TYPES


@pytest.mark.parametrize("cls", TRANSIENT)
def test_transient_errors_are_retryable(cls: type[ConveyorError]) -> None:
    err = cls("try again")
    assert err.retryable is True
    assert err.kind.value not in NON_RETRYABLE_ERROR_TYPES


def test_retry_policies_never_retry_python_programming_errors() -> None:
    for name in ("ValueError", "KeyError", "TypeError", "PermissionError"):
        assert name in NON_RETRYABLE_ERROR_TYPES


def test_default_codes_name_the_failure() -> None:
    assert InsufficientCredits("no").code == "INSUFFICIENT_CREDITS"
    assert NotFound("no").code == "NOT_FOUND"
    assert BadInput("no", code="UNKNOWN_TOOL").code == "UNKNOWN_TOOL"


# ----------------------------------------------------------------------------------- Temporal error form


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_to_application_error_carries_kind_code_and_retryability(cls: type[ConveyorError]) -> None:
    err = cls("something went wrong", code="SPECIFIC_CODE", details={"file": "a.csv"})
    app = err.to_application_error()
    assert isinstance(app, ApplicationError)
    assert app.type == err.kind.value
    assert app.message == "something went wrong"
    assert app.details[0] == "SPECIFIC_CODE"
    assert app.details[1] == {"file": "a.csv"}
    assert app.non_retryable is (cls in PERMANENT)
    assert app.next_retry_delay is None


def test_rate_limited_asks_temporal_to_wait_retry_after() -> None:
    app = RateLimited("slow down", retry_after=timedelta(seconds=42)).to_application_error()
    assert app.type == "RateLimited"
    assert app.details[0] == "RATE_LIMITED"
    assert app.non_retryable is False
    assert app.next_retry_delay == timedelta(seconds=42)


def test_to_dict_is_the_api_error_body() -> None:
    body = RateLimited("slow down", retry_after=timedelta(seconds=30), details={"provider": "x"}).to_dict()
    assert body == {
        "code": "RATE_LIMITED",
        "kind": "RateLimited",
        "message": "slow down",
        "details": {"provider": "x"},
        "retry_after": 30,
    }
    assert BadInput("bad").to_dict() == {"code": "BAD_INPUT", "kind": "BadInput", "message": "bad"}


# ----------------------------------------------------------------------------------------- failure_info


def test_failure_info_reads_code_and_kind_through_activity_error() -> None:
    app = InsufficientCredits("this run costs 5 credits but only 2 are available").to_application_error()
    info = failure_info(_activity_error(app))
    assert info == FailureInfo(
        "INSUFFICIENT_CREDITS", ErrorKind.PAYMENT_REQUIRED, "this run costs 5 credits but only 2 are available"
    )


def test_failure_info_reads_through_child_workflow_and_activity_errors() -> None:
    app = BadInput("unknown tool 'x'", code="UNKNOWN_TOOL").to_application_error()
    child = ChildWorkflowError(
        "child failed",
        namespace="default",
        workflow_id="wf",
        run_id="run",
        workflow_type="AnalysisWorkflow",
        initiated_event_id=1,
        started_event_id=2,
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    child.__cause__ = _activity_error(app)
    info = failure_info(child)
    assert (info.code, info.kind, info.message) == ("UNKNOWN_TOOL", ErrorKind.BAD_INPUT, "unknown tool 'x'")


def test_failure_info_of_a_raw_conveyor_error() -> None:
    info = failure_info(NotFound("task t not found", code="TASK_NOT_FOUND"))
    assert info == FailureInfo("TASK_NOT_FOUND", ErrorKind.NOT_FOUND, "task t not found")


def test_activity_timeout_is_timeout() -> None:
    timeout = TemporalTimeoutError(
        "activity heartbeat timeout", type=TimeoutType.HEARTBEAT, last_heartbeat_details=[{"agent": "x"}]
    )
    info = failure_info(_activity_error(timeout))
    assert info.code == "TIMEOUT"
    assert info.kind is ErrorKind.TIMEOUT
    assert info.to_error().http_status == 504


def test_activity_cancellation_is_cancelled() -> None:
    info = failure_info(_activity_error(CancelledError("cancelled")))
    assert (info.code, info.kind) == ("CANCELLED", ErrorKind.CANCELLED)


def test_application_error_of_unknown_type_is_internal_error() -> None:
    app = ApplicationError("KeyError: 'column'", "SOME_DETAIL", type="KeyError", non_retryable=True)
    info = failure_info(_activity_error(app))
    assert info.code == "INTERNAL_ERROR"
    assert info.kind is ErrorKind.INTERNAL
    assert info.message == "KeyError: 'column'"


def test_plain_python_exception_is_internal_error_with_its_text() -> None:
    info = failure_info(RuntimeError("disk on fire"))
    assert info == FailureInfo("INTERNAL_ERROR", ErrorKind.INTERNAL, "disk on fire")
    assert failure_info(RuntimeError()).message == "RuntimeError"


def test_python_cause_chain_is_followed() -> None:
    try:
        try:
            raise TooLarge("file is 3 GB", code="FILE_TOO_LARGE")
        except TooLarge as inner:
            raise RuntimeError("wrapper") from inner
    except RuntimeError as outer:
        info = failure_info(outer)
    assert (info.code, info.kind) == ("FILE_TOO_LARGE", ErrorKind.TOO_LARGE)


# -------------------------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("cls", [c for c in ALL_CLASSES if c is not ConveyorError])
def test_error_survives_the_trip_through_temporal(cls: type[ConveyorError]) -> None:
    original = cls("what the user reads", code="THE_CODE")
    info = failure_info(_activity_error(original.to_application_error()))
    rebuilt = info.to_error()
    assert type(rebuilt) is cls
    assert rebuilt.code == "THE_CODE"
    assert rebuilt.message == "what the user reads"
    assert rebuilt.http_status == original.http_status
    assert rebuilt.retryable == original.retryable


def test_internal_failure_rebuilds_as_base_error_with_http_500() -> None:
    rebuilt = FailureInfo("INTERNAL_ERROR", ErrorKind.INTERNAL, "oops").to_error()
    assert type(rebuilt) is ConveyorError
    assert rebuilt.http_status == 500
    assert rebuilt.code == "INTERNAL_ERROR"


def test_cancelled_failure_rebuilds_as_cancelled() -> None:
    rebuilt = failure_info(_activity_error(CancelledError("cancelled"))).to_error()
    assert rebuilt.kind is ErrorKind.CANCELLED
    assert rebuilt.http_status == 409


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("7", 7), (3, 3), (2.5, 2.5), (None, 10), ("", 10), ("soon", 10), (True, 10), ("-4", 0), ("1e9", 60), ("inf", 10)],
)
def test_retry_after_reads_seconds_and_bounds_them(raw: object, seconds: float) -> None:
    from datetime import timedelta

    from conveyor.outbound import retry_after

    wait = retry_after(raw, default=timedelta(seconds=10), most=timedelta(seconds=60))
    assert wait == timedelta(seconds=seconds)
