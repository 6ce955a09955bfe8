"""``conveyor crawl URL``: crawl a site for bugs from the command line, with a live progress bar."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from cli.context import DemoContext, DemoRun, bad_option, cli_context, cli_settings, run_command
from cli.output import console, emit_json, fail
from conveyor.settings import Settings

SAMPLE_SITE = Path(__file__).resolve().parents[1] / "samples" / "site"

SEVERITIES = ("critical", "high", "medium", "low")
SEVERITY_COLOURS = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}


async def run_crawl(
    settings: Settings, config: Any, *, user_name: str | None, wait: bool, show: bool
) -> dict[str, Any]:
    """Start a session, optionally follow it, and return it with its bugs as the API shows them."""
    from api.pages import PageParams
    from api.routes.crawl import crawl_out
    from api.services import crawl as service
    from cli.watch import Watched, watch

    async with cli_context(settings, user_name) as cli:
        async with cli.caller() as caller:
            crawl = await service.start_session(caller, config)
        if wait:
            await watch(cli.client, [Watched(crawl.workflow_id or "", f"crawl {config.url}"[:28])], show=show)
        async with cli.caller() as caller:
            crawl = await service.get_session(caller, crawl.id)
            await caller.session.refresh(crawl)
            out = crawl_out(crawl, settings).model_dump(mode="json")
            views, _total = await service.list_bugs(caller, crawl, PageParams(limit=1000, offset=0))
            out["bugs"] = [
                {
                    "kind": v.bug.kind,
                    "severity": v.bug.severity,
                    "title": v.bug.title,
                    "page": v.bug.page_url,
                    "pages": v.pages,
                    "ticket": v.ticket.key if v.ticket else None,
                    "ticket_url": v.ticket.url if v.ticket else None,
                }
                for v in views
            ]
            return out


def print_crawl(crawl: dict[str, Any]) -> None:
    """Session outcome, a table of bugs by kind and severity, and the bugs themselves."""
    colour = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(crawl["status"], "cyan")
    console.print(
        f"[bold]crawl[/bold] {crawl['url']}: [{colour}]{crawl['status']}[/{colour}] · "
        f"{crawl['pages_crawled']} pages · {crawl['bugs_found']} bugs"
        + (" · truncated at the time limit" if crawl.get("truncated") else "")
    )
    if crawl.get("error_code"):
        console.print(f"  {crawl['error_code']}: {crawl['error_message']}")
    bugs = crawl.get("bugs", [])
    if bugs:
        counts = Counter((b["kind"], b["severity"]) for b in bugs)
        kinds = sorted({b["kind"] for b in bugs})
        summary = Table("kind", *SEVERITIES, "total", title="bugs by kind and severity")
        for kind in kinds:
            row = [str(counts.get((kind, s), "")) for s in SEVERITIES]
            summary.add_row(kind, *row, str(sum(counts.get((kind, s), 0) for s in SEVERITIES)))
        console.print(summary)
        detail = Table("severity", "kind", "title", "pages", "ticket")
        for b in bugs:
            style = SEVERITY_COLOURS.get(b["severity"], "")
            detail.add_row(
                f"[{style}]{b['severity']}[/{style}]", b["kind"], b["title"], str(len(b["pages"])), b["ticket"] or ""
            )
        console.print(detail)
    if crawl.get("workflow_url"):
        console.print(f"  web ui: {crawl['workflow_url']}")


def crawl(
    url: Annotated[str, typer.Argument(help="Start URL (http or https).")],
    max_pages: Annotated[int, typer.Option("--max-pages", min=1, max=1000, help="Page budget.")] = 50,
    max_depth: Annotated[int, typer.Option("--max-depth", min=0, max=10, help="Link depth from the start.")] = 3,
    slow_page_ms: Annotated[int, typer.Option("--slow-ms", min=100, help="Slow-page threshold in ms.")] = 3000,
    ignore_robots: Annotated[bool, typer.Option("--ignore-robots", help="Do not obey robots.txt.")] = False,
    subdomains: Annotated[bool, typer.Option("--subdomains", help="Also crawl the start host's subdomains.")] = False,
    user: Annotated[str | None, typer.Option("--user", help="Run as this user (default: the local user).")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Return once queued.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Crawl a site for bugs (broken links, errors, slow pages, accessibility) and file a ticket per bug."""
    from activities.crawl.schemas import CrawlConfig

    settings = cli_settings()
    try:
        config = CrawlConfig(
            url=url,
            max_pages=max_pages,
            max_depth=max_depth,
            slow_page_ms=slow_page_ms,
            respect_robots=not ignore_robots,
            same_origin=not subdomains,
        )
    except ValidationError as err:
        fail(bad_option(err), as_json=as_json)
    run = run_crawl(settings, config, user_name=user, wait=not no_wait, show=not as_json)
    result = run_command(run, as_json=as_json)
    if as_json:
        emit_json(result)
    else:
        print_crawl(result)
    if result["status"] in ("failed", "cancelled"):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``conveyor crawl``."""
    app.command()(crawl)


async def demo(ctx: DemoContext) -> list[DemoRun]:
    """Crawl the bundled sample site (served from this process) and show the bugs it planted and we found."""
    from cli.sample_site import sample_site
    from cli.watch import Watched, watch

    manifest = json.loads((SAMPLE_SITE / "expected.json").read_text())
    # on the port the stack's network policy allows for it (a stack the demo starts allows exactly that)
    with sample_site(port=ctx.settings.demo_site_port) as site:
        body = {"url": f"{site.url}/", "max_pages": 50, "max_depth": manifest["max_depth"]}
        body["slow_page_ms"] = manifest["slow_page_ms"]
        started = await ctx.http.post("/api/crawls", json=body)
        started.raise_for_status()
        session_id, wf = started.json()["session_id"], started.json()["workflow_id"]
        t0 = time.monotonic()
        final = (await watch(ctx.client, [Watched(wf, "crawl sample site")], show=ctx.show))[wf]
    crawl = (await ctx.http.get(f"/api/crawls/{session_id}")).json()
    bugs = (await ctx.http.get(f"/api/crawls/{session_id}/bugs", params={"limit": 500})).json()["items"]
    if ctx.show:
        crawl["bugs"] = [{**b, "ticket": (b["ticket"] or {}).get("key"), "pages": b["pages"]} for b in bugs]
        print_crawl(crawl)
    tickets = sum(1 for b in bugs if b["ticket"])
    summary = f"{crawl['pages_crawled']} pages, {len(bugs)} bugs of {len(manifest['bugs'])} planted, {tickets} tickets"
    return [ctx.run("crawl: sample site", final, t0, crawl["status"], summary)]
