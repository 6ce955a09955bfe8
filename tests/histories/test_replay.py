"""Replay saved and fresh histories so a non-deterministic workflow change fails CI.

``tests/histories/*.json`` are runs recorded with the current workflows (``python -m tests.histories.record``);
``tests/histories/before-run-lifecycle/*.json`` were recorded before the kernel's run lifecycle replaced each
pipeline's own bookkeeping activity, and must keep replaying: runs started then may still be running.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import replayer

HISTORIES = Path(__file__).resolve().parent
#: Histories of runs started before the kernel's run lifecycle (each pipeline's own bookkeeping activity).
BEFORE_RUN_LIFECYCLE = HISTORIES / "before-run-lifecycle"
SAVED = sorted([*HISTORIES.glob("*.json"), *BEFORE_RUN_LIFECYCLE.glob("*.json")])


@pytest.mark.parametrize("folder", [HISTORIES, BEFORE_RUN_LIFECYCLE], ids=lambda p: p.name)
def test_saved_histories_exist(folder: Path) -> None:
    names = sorted(p.name for p in folder.glob("*.json"))
    for pipeline in ("analysis", "crawl", "persona", "video"):
        for outcome in ("completed", "failed", "cancelled"):
            assert f"{pipeline}-{outcome}.json" in names, names


#: Every attribution workflow, and each way an approval ends (the long-lived ones recorded while running).
ATTRIBUTION_HISTORIES = (
    "ingest",
    "sampler",
    "fatigue",
    "approval-approved",
    "approval-rejected",
    "approval-expired",
    "index",
    "similar",
)


def test_every_attribution_workflow_has_a_saved_history() -> None:
    names = {p.name for p in HISTORIES.glob("attribution-*.json")}
    assert names == {f"attribution-{n}.json" for n in ATTRIBUTION_HISTORIES}
    expired = json.loads((HISTORIES / "attribution-approval-expired.json").read_text())["events"]
    assert any("timerFiredEventAttributes" in e for e in expired)  # the 24 h timer's path, not a decision


def _events(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(path.read_text())["events"]
    return events


def _activity_types(path: Path) -> set[str]:
    """The activities a saved history scheduled."""
    return {
        e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
        for e in _events(path)
        if "activityTaskScheduledEventAttributes" in e
    }


def test_every_chat_workflow_has_a_saved_history() -> None:
    names = {p.name for p in HISTORIES.glob("chat-*.json")}
    assert names == {"chat-conversation.json", "chat-conversation-continued.json", "chat-health.json"}
    conversation = HISTORIES / "chat-conversation.json"
    # a conversation ending in an order, summarised and continued as new
    assert {"chat.process_and_respond", "chat.send_reply", "chat.create_order", "chat.summarize"} <= _activity_types(
        conversation
    )
    assert "workflowExecutionContinuedAsNewEventAttributes" in _events(conversation)[-1]
    # the run it continued as: started with what it carried, answering updates and a signal
    continued = _events(HISTORIES / "chat-conversation-continued.json")
    assert "continuedExecutionRunId" in continued[0]["workflowExecutionStartedEventAttributes"]
    assert any("workflowExecutionSignaledEventAttributes" in e for e in continued)
    assert _activity_types(HISTORIES / "chat-health.json") == {"chat.ping", "chat.worker_health_check"}


def _local_activities_and_patches(path: Path) -> set[str]:
    """The local activity types and patch ids a saved history recorded (from its markers)."""
    found: set[str] = set()
    for event in json.loads(path.read_text())["events"]:
        marker = event.get("markerRecordedEventAttributes")
        for detail in (marker or {}).get("details", {}).values():
            for payload in detail.get("payloads", []):
                if "data" not in payload:  # an empty result
                    continue
                data = json.loads(base64.b64decode(payload["data"]))
                if isinstance(data, dict):
                    found.add(str(data.get("activity_type") or data.get("id")))
    return found


@pytest.mark.parametrize("pipeline", ["analysis", "crawl", "persona"])
def test_old_histories_use_the_old_bookkeeping_and_new_ones_the_kernels(pipeline: str) -> None:
    old = _local_activities_and_patches(BEFORE_RUN_LIFECYCLE / f"{pipeline}-completed.json")
    new = _local_activities_and_patches(HISTORIES / f"{pipeline}-completed.json")
    assert old and all(name.startswith(f"{pipeline}.") for name in old), old
    assert "conveyor.record_run" in new and "conveyor-record-run" in new, new  # the activity and its patch


@pytest.mark.parametrize("path", SAVED, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_saved_history_replays(path: Path) -> None:
    from temporalio.client import WorkflowHistory

    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await replayer().replay_workflow(history)
    assert result.replay_failure is None
