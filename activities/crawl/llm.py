"""Optional refinement of bug titles and descriptions by an OpenAI-compatible chat completions endpoint."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import httpx

from activities.crawl.schemas import Finding
from conveyor.logging import get_logger

log = get_logger(__name__)

#: Longest title kept from the model (ticket trackers show about this much).
MAX_TITLE_CHARS = 120

SYSTEM_PROMPT = """\
You are a QA engineer writing bug tickets from an automated website crawl.
The user message is a JSON list of bugs, each with fingerprint, kind, severity, title, description, page_url \
and evidence.
For each bug write a clearer title (one line, at most 120 characters, naming what is broken and where) and a \
clearer description in Markdown (what happens, where, how to reproduce, what was expected). Use only facts found \
in the bug's fields and evidence; never invent URLs, numbers or causes.
Answer with a JSON object only: {"bugs": [{"fingerprint": "...", "title": "...", "description": "..."}]}, \
one entry per input bug, with its fingerprint copied exactly."""


@dataclass(frozen=True)
class LlmConfig:
    """Where the chat completions endpoint is, how to authenticate, which model, how long to wait."""

    base_url: str
    api_key: str
    model: str
    timeout_s: float = 30.0


async def refine_findings(
    findings: list[Finding], config: LlmConfig, *, http: httpx.AsyncClient | None = None
) -> list[Finding]:
    """The findings with titles/descriptions rewritten by the model; unchanged if anything goes wrong."""
    if not findings:
        return []
    try:
        refinements = await _ask(findings, config, http)
    # Refinement is a nicety: no failure of the endpoint or of its answer may lose or break a bug report.
    except Exception as exc:
        log.warning(
            "LLM refinement failed; keeping findings unchanged",
            error=_redact(f"{type(exc).__name__}: {exc}", config.api_key),
            model=config.model,
            findings=len(findings),
        )
        return list(findings)
    refined = [_apply(finding, refinements.get(finding.fingerprint)) for finding in findings]
    log.info(
        "LLM refined findings",
        model=config.model,
        findings=len(findings),
        refined=sum(1 for before, after in zip(findings, refined, strict=True) if before is not after),
    )
    return refined


async def _ask(findings: list[Finding], config: LlmConfig, http: httpx.AsyncClient | None) -> dict[str, dict[str, str]]:
    """Call the endpoint and return the usable title/description changes by fingerprint."""
    bugs = [
        {
            "fingerprint": f.fingerprint,
            "kind": f.kind.value,
            "severity": f.severity.value,
            "title": f.title,
            "description": f.description,
            "page_url": f.page_url,
            "evidence": f.evidence,
        }
        for f in findings
    ]
    payload = {
        "model": config.model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            # default=str: evidence is free-form and may hold values JSON cannot encode as they are.
            {"role": "user", "content": json.dumps(bugs, ensure_ascii=False, default=str)},
        ],
        "temperature": 0,
        "response_format": {"type": "json_object"},
    }
    url = config.base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {config.api_key}", "Content-Type": "application/json"}
    client = http if http is not None else httpx.AsyncClient()
    try:
        # httpx's timeout bounds each phase; this bounds the whole exchange (a server dripping tokens).
        async with asyncio.timeout(config.timeout_s):
            response = await client.post(url, headers=headers, json=payload, timeout=config.timeout_s)
    finally:
        if http is None:
            await client.aclose()
    response.raise_for_status()
    content = response.json()["choices"][0]["message"]["content"]
    if not isinstance(content, str):
        raise ValueError("the answer's message content is not a string")
    return _parse_refinements(content, {f.fingerprint for f in findings})


def _parse_refinements(content: str, known: set[str]) -> dict[str, dict[str, str]]:
    """Title/description changes by fingerprint, for known fingerprints only, from the model's JSON answer."""
    parsed = json.loads(_strip_fence(content))
    items = parsed.get("bugs") if isinstance(parsed, dict) else None
    if not isinstance(items, list):
        raise ValueError("the answer is not an object with a list of bugs")
    changes: dict[str, dict[str, str]] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        fingerprint = item.get("fingerprint")
        # The first answer for a fingerprint wins; anything about a bug we did not send is made up.
        if not isinstance(fingerprint, str) or fingerprint not in known or fingerprint in changes:
            continue
        change: dict[str, str] = {}
        title = item.get("title")
        if isinstance(title, str):
            # Titles are one line in every tracker.
            title = " ".join(title.split())[:MAX_TITLE_CHARS].rstrip()
            if title:
                change["title"] = title
        description = item.get("description")
        if isinstance(description, str) and description.strip():
            change["description"] = description.strip()
        if change:
            changes[fingerprint] = change
    return changes


def _strip_fence(content: str) -> str:
    """The content without a Markdown code fence, which some models add despite the JSON response format."""
    text = content.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
    return text


def _apply(finding: Finding, change: dict[str, str] | None) -> Finding:
    """The finding with the change applied (only title and description ever change)."""
    if not change:
        return finding
    update = {key: value for key, value in change.items() if key in ("title", "description")}
    if all(getattr(finding, key) == value for key, value in update.items()):
        return finding
    return finding.model_copy(update=update)


def _redact(text: str, api_key: str) -> str:
    """The text with the API key blanked out, should an error ever echo it."""
    return text.replace(api_key, "***") if api_key else text
