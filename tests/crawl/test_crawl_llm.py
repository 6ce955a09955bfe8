"""LLM refinement of findings against a fake chat completions endpoint: what changes, what never does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from activities.crawl import llm
from activities.crawl.llm import LlmConfig, refine_findings
from activities.crawl.schemas import BugKind, Finding, Severity
from tests.helpers import free_port
from tests.helpers.fakes import FakeOpenAI


class RecordingLog:
    """Stands in for the module's structlog logger to see its warnings."""

    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))

    def info(self, event: str, **fields: Any) -> None:
        """Ignored."""


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> RecordingLog:
    """The module's logger, replaced by a recorder."""
    recorder = RecordingLog()
    monkeypatch.setattr(llm, "log", recorder)
    return recorder


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    """A running fake chat completions endpoint."""
    with FakeOpenAI() as server:
        yield server


def config(fake: FakeOpenAI, **overrides: Any) -> LlmConfig:
    fields: dict[str, Any] = {"base_url": fake.base_url, "api_key": fake.api_key, "model": "gpt-test", "timeout_s": 5}
    fields.update(overrides)
    return LlmConfig(**fields)


def findings() -> list[Finding]:
    return [
        Finding(
            fingerprint="fp-link",
            kind=BugKind.BROKEN_LINK,
            severity=Severity.MEDIUM,
            title="Broken link",
            description="A link is broken.",
            page_url="https://shop.test/",
            evidence={"target": "https://shop.test/pricing", "status": 404},
        ),
        Finding(
            fingerprint="fp-js",
            kind=BugKind.PAGE_ERROR,
            severity=Severity.HIGH,
            title="Page error",
            description="An exception.",
            page_url="https://shop.test/cart",
            evidence={"message": "TypeError: x is undefined"},
        ),
    ]


async def test_titles_and_descriptions_are_refined(fake: FakeOpenAI) -> None:
    fake.content = {
        "bugs": [
            {"fingerprint": "fp-link", "title": "Home page links to a missing /pricing page", "description": "404."},
            {"fingerprint": "fp-js", "title": "Cart page throws TypeError", "description": "Open /cart."},
        ]
    }
    before = findings()

    after = await refine_findings(before, config(fake))

    assert [f.title for f in after] == ["Home page links to a missing /pricing page", "Cart page throws TypeError"]
    assert [f.description for f in after] == ["404.", "Open /cart."]
    for old, new in zip(before, after, strict=True):
        assert (new.fingerprint, new.kind, new.severity, new.page_url, new.evidence, new.count) == (
            old.fingerprint,
            old.kind,
            old.severity,
            old.page_url,
            old.evidence,
            old.count,
        )


async def test_unknown_fingerprints_and_other_fields_are_ignored(fake: FakeOpenAI) -> None:
    fake.content = {
        "bugs": [
            {
                "fingerprint": "fp-link",
                "title": "Refined",
                "kind": "server_error",
                "severity": "critical",
                "evidence": {},
                "page_url": "https://elsewhere.test/",
            },
            {"fingerprint": "fp-invented", "title": "A bug the model made up", "description": "Nope."},
            "not an object",
        ]
    }
    before = findings()

    after = await refine_findings(before, config(fake))

    assert len(after) == 2
    assert after[0] == before[0].model_copy(update={"title": "Refined"})
    assert after[1] == before[1]


async def test_long_titles_are_cut_and_empty_strings_ignored(fake: FakeOpenAI) -> None:
    fake.content = {
        "bugs": [
            {"fingerprint": "fp-link", "title": "Word " * 60 + "\nend", "description": "   "},
            {"fingerprint": "fp-js", "title": "", "description": "Better description."},
        ]
    }
    before = findings()

    after = await refine_findings(before, config(fake))

    assert len(after[0].title) <= 120
    assert after[0].title.startswith("Word Word")
    assert "\n" not in after[0].title
    assert after[0].description == before[0].description
    assert after[1].title == before[1].title
    assert after[1].description == "Better description."


async def test_a_fenced_json_answer_is_accepted(fake: FakeOpenAI) -> None:
    fake.content = '```json\n{"bugs": [{"fingerprint": "fp-js", "title": "Fenced"}]}\n```'

    after = await refine_findings(findings(), config(fake))

    assert after[1].title == "Fenced"


async def test_the_request_has_the_chat_completions_shape(fake: FakeOpenAI) -> None:
    before = findings()

    await refine_findings(before, config(fake))

    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {fake.api_key}"
    body = request.json()
    assert body["model"] == "gpt-test"
    assert body["temperature"] == 0
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system["role"] == "system"
    assert '"bugs"' in system["content"]
    assert user["role"] == "user"
    assert json.loads(user["content"]) == [
        {
            "fingerprint": f.fingerprint,
            "kind": f.kind.value,
            "severity": f.severity.value,
            "title": f.title,
            "description": f.description,
            "page_url": f.page_url,
            "evidence": f.evidence,
        }
        for f in before
    ]


async def test_no_findings_means_no_call(fake: FakeOpenAI) -> None:
    assert await refine_findings([], config(fake)) == []
    assert fake.requests == []


async def test_an_unreachable_endpoint_keeps_findings_unchanged(log: RecordingLog) -> None:
    cfg = LlmConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="sk-secret-value", model="m")
    before = findings()

    assert await refine_findings(before, cfg) == before
    [(event, fields)] = log.warnings
    assert "unchanged" in event
    assert "sk-secret-value" not in str(fields)


@pytest.mark.parametrize(
    "script",
    [
        {"content": "this is not JSON"},
        {"content": {"answer": "no bugs list"}},
        {"content": ["fp-link"]},
        {"raw_body": b"<html>oops</html>"},
        {"raw_body": b'{"choices": []}'},
        {"status": 500},
        {"status": 429},
    ],
)
async def test_bad_answers_keep_findings_unchanged(fake: FakeOpenAI, log: RecordingLog, script: dict[str, Any]) -> None:
    for name, value in script.items():
        setattr(fake, name, value)
    before = findings()

    assert await refine_findings(before, config(fake)) == before
    assert len(log.warnings) == 1


async def test_a_wrong_key_keeps_findings_unchanged(fake: FakeOpenAI, log: RecordingLog) -> None:
    before = findings()

    assert await refine_findings(before, config(fake, api_key="sk-wrong")) == before
    assert len(log.warnings) == 1


async def test_a_slow_endpoint_times_out_and_keeps_findings_unchanged(fake: FakeOpenAI, log: RecordingLog) -> None:
    fake.delay_s = 1.0
    before = findings()

    assert await refine_findings(before, config(fake, timeout_s=0.2)) == before
    assert len(log.warnings) == 1
