"""OpenAPI links: which operation an answer's ids lead to (a created task to its status, a started crawl to its bugs).

Clients and generators read them to chain calls without guessing: Schemathesis' stateful tests follow them from a
create to the reads, cancels and follow-up steps that take the new id (``tests/security/test_openapi_fuzz.py``).
Links name their target by ``operationId``, looked up in the built schema, so renaming a handler cannot leave a
dangling link: a link whose source or target operation is missing raises when the schema is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Link:
    """From the ``status`` answer of ``source`` (``"METHOD /path"``), ``target`` takes ``parameters`` from it."""

    source: str
    status: str
    target: str
    parameters: dict[str, str]

    @property
    def name(self) -> str:
        """The link's name in the schema: the target's method and path, readable."""
        method, _, path = self.target.partition(" ")
        words = [part.strip("{}") for part in path.split("/") if part and part != "api"]
        return method.capitalize() + "".join(word.replace("_", " ").title().replace(" ", "") for word in words)


def _from(source: str, status: str, field: str, param: str, *targets: str) -> list[Link]:
    """Links from ``source``'s answer to each target, passing the answer's ``field`` as the path's ``param``."""
    return [Link(source, status, target, {param: f"$response.body#/{field}"}) for target in targets]


def _progress(source: str, status: str) -> list[Link]:
    """The kernel's workflow routes, reached from any answer carrying a ``workflow_id``."""
    return _from(
        source,
        status,
        "workflow_id",
        "workflow_id",
        "GET /api/workflows/{workflow_id}/progress",
        "POST /api/workflows/{workflow_id}/cancel",
    )


LINKS: list[Link] = [
    *_from(
        "POST /api/tasks",
        "201",
        "task_id",
        "task_id",
        "GET /api/tasks/{task_id}",
        "POST /api/tasks/{task_id}/process",
        "POST /api/tasks/{task_id}/cancel",
    ),
    *_progress("POST /api/tasks/{task_id}/process", "202"),
    *_from(
        "POST /api/crawls",
        "202",
        "session_id",
        "session_id",
        "GET /api/crawls/{session_id}",
        "GET /api/crawls/{session_id}/bugs",
        "GET /api/crawls/{session_id}/pages",
        "POST /api/crawls/{session_id}/cancel",
        "POST /api/crawls/{session_id}/rerun",
    ),
    *_progress("POST /api/crawls", "202"),
    *_from(
        "POST /api/personas",
        "201",
        "id",
        "persona_id",
        "GET /api/personas/{persona_id}",
        "POST /api/personas/{persona_id}/documents",
        "POST /api/personas/{persona_id}/ingest",
        "POST /api/personas/{persona_id}/search",
        "POST /api/personas/{persona_id}/cancel",
    ),
    *_progress("POST /api/personas/{persona_id}/ingest", "202"),
    *_from(
        "POST /api/videos/upload",
        "201",
        "video_id",
        "video_id",
        "GET /api/videos/{video_id}",
        "POST /api/videos/{video_id}/preview",
        "POST /api/videos/{video_id}/caption",
        "POST /api/videos/{video_id}/transcode",
        "POST /api/videos/{video_id}/cancel",
    ),
    *_from("POST /api/videos/render", "202", "video_id", "video_id", "GET /api/videos/{video_id}"),
    *_progress("POST /api/videos/render", "202"),
    *_from(
        "POST /api/ads",
        "201",
        "ad_id",
        "ad_id",
        "GET /api/ads/{ad_id}",
        "GET /api/ads/{ad_id}/attribution",
    ),
    *_from(
        "POST /api/ads",
        "201",
        "campaign_id",
        "campaign_id",
        "GET /api/campaigns/{campaign_id}/sampler",
        "GET /api/campaigns/{campaign_id}/allocations",
    ),
    # a message's answer, its reply (200) or where it was queued (202), names its conversation
    *_from(
        "POST /api/chat/messages",
        "200",
        "workflow_id",
        "workflow_id",
        "GET /api/chat/conversations/{workflow_id}",
        "GET /api/workflows/{workflow_id}/progress",
    ),
    *_from(
        "POST /api/chat/messages",
        "202",
        "workflow_id",
        "workflow_id",
        "GET /api/chat/conversations/{workflow_id}",
        "GET /api/workflows/{workflow_id}/progress",
    ),
]


def _operation(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    """The schema's operation object for ``"METHOD /path"``."""
    method, _, path = ref.partition(" ")
    try:
        operation: dict[str, Any] = spec["paths"][path][method.lower()]
    except KeyError:
        raise LookupError(f"OpenAPI link names {ref}, which the API does not have") from None
    return operation


def add_links(spec: dict[str, Any], links: list[Link] = LINKS) -> dict[str, Any]:
    """Write ``links`` into the responses of ``spec`` (in place), each naming its target's ``operationId``."""
    for link in links:
        response = _operation(spec, link.source)["responses"][link.status]
        response.setdefault("links", {})[link.name] = {
            "operationId": _operation(spec, link.target)["operationId"],
            "parameters": link.parameters,
        }
    return spec
