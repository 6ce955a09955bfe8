"""Attribution from the terminal: ``hubspot connect``, ``ads import``, ``webhooks replay``, ``attribution report``,
``sampler show`` and ``approvals list|approve|reject``; and the demo's part (signed sample deliveries)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import TypeAdapter, ValidationError
from rich.table import Table

from cli.context import DemoContext, DemoRun, bad_option, cli_context, cli_settings, run_command
from cli.output import console, emit_json
from conveyor.errors import BadInput, ExternalServiceError
from conveyor.settings import Settings

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "attribution"
UserOption = Annotated[str | None, typer.Option("--user", help="Act as this user (default: the local user).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

hubspot_app = typer.Typer(help="HubSpot portals: connect one to you.", no_args_is_help=True)
ads_app = typer.Typer(help="Ads: import them from a JSON file.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Webhooks: re-post recorded HubSpot deliveries.", no_args_is_help=True)
attribution_app = typer.Typer(help="Attribution: revenue per ad.", no_args_is_help=True)
sampler_app = typer.Typer(help="Campaign samplers: posteriors and allocations.", no_args_is_help=True)
approvals_app = typer.Typer(help="Fatigue approvals: list, approve, reject.", no_args_is_help=True)


def _print(data: Any, as_json: bool, human: str) -> None:
    if as_json:
        emit_json(data)
    else:
        console.print(human)


# --- hubspot connect ----------------------------------------------------------------------------------------------


async def _connect(settings: Settings, portal_id: int, user: str | None) -> dict[str, Any]:
    from api.services import attribution as service

    async with cli_context(settings, user) as cli, cli.caller() as caller:
        portal, created = await service.connect_portal(caller, portal_id)
        return {"portal_id": portal.portal_id, "owner": cli.user.name, "created": created}


@hubspot_app.command("connect")
def hubspot_connect(
    portal_id: Annotated[int, typer.Argument(help="The HubSpot account id its webhooks carry as portalId.")],
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Connect a HubSpot portal to you: its events, conversions and approvals are yours."""
    done = run_command(_connect(cli_settings(), portal_id, user), as_json=as_json)
    verb = "connected" if done["created"] else "already connected"
    _print(done, as_json, f"portal {done['portal_id']} {verb} to {done['owner']}")


# --- ads import ---------------------------------------------------------------------------------------------------


def read_ads(path: Path) -> list[Any]:
    """The ads of a JSON file: a list of ``{ad_id, campaign_id, name, …}`` (BadInput naming the problem)."""
    from api.services.attribution import AdIn

    try:
        raw = json.loads(path.read_text())
    except OSError as err:
        raise BadInput(f"cannot read {path}: {err.strerror}", code="FILE_UNREADABLE") from None
    except ValueError as err:
        raise BadInput(f"{path} is not JSON: {err}", code="MALFORMED_JSON") from None
    if not isinstance(raw, list):
        raise BadInput(f"{path} must hold a JSON list of ads", code="NOT_A_LIST")
    try:
        return TypeAdapter(list[AdIn]).validate_python(raw)
    except ValidationError as err:
        raise bad_option(err) from None


async def _import(settings: Settings, path: Path, user: str | None) -> dict[str, Any]:
    from api.services import attribution as service

    ads = read_ads(path)
    async with cli_context(settings, user) as cli, cli.caller() as caller:
        created, updated = await service.import_ads(caller, ads)
        return {"created": created, "updated": updated, "owner": cli.user.name}


@ads_app.command("import")
def ads_import(
    file: Annotated[Path, typer.Argument(help="A JSON list of {ad_id, campaign_id, name, hook, script, offer, tags}.")],
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create or update ads from a JSON file (they belong to the CLI's user)."""
    done = run_command(_import(cli_settings(), file, user), as_json=as_json)
    _print(done, as_json, f"ads: {done['created']} created, {done['updated']} updated ({done['owner']})")


# --- webhooks replay ----------------------------------------------------------------------------------------------


def read_deliveries(path: Path) -> list[bytes]:
    """Delivery bodies from a file: a JSON array of deliveries (each an array of events), or one delivery per line."""
    try:
        text = path.read_text()
    except OSError as err:
        raise BadInput(f"cannot read {path}: {err.strerror}", code="FILE_UNREADABLE") from None
    try:
        whole = json.loads(text)
    except ValueError:
        whole = None
    if isinstance(whole, list) and whole and all(isinstance(d, list) for d in whole):
        items: list[Any] = whole
    elif isinstance(whole, (list, dict)):
        items = [whole]
    else:
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except ValueError as err:
                raise BadInput(f"{path}:{number}: not JSON: {err}", code="MALFORMED_JSON") from None
    if not items:
        raise BadInput(f"{path} holds no deliveries", code="EMPTY_FILE")
    return [json.dumps(d, separators=(",", ":")).encode() for d in items]


async def post_signed(http: httpx.AsyncClient, settings: Settings, body: bytes) -> httpx.Response:
    """POST one delivery to ``/webhooks/hubspot``, signed (v3) the way HubSpot signs it, now."""
    from activities.attribution.signatures import signed_headers
    from api.services.attribution import client_secret

    secret = client_secret(settings)
    if secret is None:
        raise BadInput("no HubSpot client secret: set CONVEYOR_HUBSPOT_CLIENT_SECRET", code="NO_CLIENT_SECRET")
    path = "/webhooks/hubspot"
    signed_url = (settings.public_url.rstrip("/") if settings.public_url else str(http.base_url).rstrip("/")) + path
    headers = signed_headers(secret, "POST", signed_url, body, datetime.now(UTC))
    return await http.post(path, content=body, headers=headers)


async def replay(settings: Settings, path: Path, url: str | None) -> dict[str, Any]:
    """Post every delivery of ``path`` in order; totals of what the API accepted, and the refusals."""
    bodies = read_deliveries(path)
    totals: dict[str, Any] = {"deliveries": len(bodies), "accepted": 0, "duplicates": 0, "ignored": 0, "refused": []}
    async with httpx.AsyncClient(base_url=url or settings.api_url, timeout=30) as http:
        for index, body in enumerate(bodies):
            try:
                answer = await post_signed(http, settings, body)
            except httpx.TransportError as err:
                raise ExternalServiceError(
                    f"the API at {http.base_url} is unreachable: {err}", code="API_DOWN"
                ) from None
            if answer.status_code == 200:
                for name in ("accepted", "duplicates", "ignored"):
                    totals[name] += answer.json()[name]
            else:
                error = answer.json().get("error", {}) if answer.content else {}
                totals["refused"].append({"index": index, "status": answer.status_code, **error})
    return totals


@webhooks_app.command("replay")
def webhooks_replay(
    file: Annotated[Path, typer.Argument(help="Recorded deliveries: one JSON array of events per line.")],
    url: Annotated[str | None, typer.Option("--url", help="The API to post to (default: CONVEYOR_API_URL's).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-post recorded HubSpot deliveries, signed with the client secret; events already accepted are not
    counted again."""
    done = run_command(replay(cli_settings(), file, url), as_json=as_json)
    refused = done["refused"]
    human = (
        f"{done['deliveries']} deliveries: {done['accepted']} events accepted, {done['duplicates']} duplicates, "
        f"{done['ignored']} ignored, {len(refused)} refused"
    )
    for r in refused:
        human += f"\n  delivery {r['index']}: {r['status']} {r.get('code', '')} {r.get('message', '')}"
    _print(done, as_json, human)
    if refused:
        raise typer.Exit(1)


# --- attribution report -------------------------------------------------------------------------------------------


async def _report(settings: Settings, user: str | None) -> dict[str, Any]:
    from api.services import attribution as service

    async with cli_context(settings, user) as cli, cli.caller() as caller:
        return await service.report(caller.session, cli.user.id)


def print_report(report: dict[str, Any]) -> None:
    """Totals and a table of revenue per ad."""
    console.print(
        f"[bold]attribution[/bold]: {report['conversions']} conversions · attributed "
        f"{report['attributed_revenue']:,.2f} · unattributed {report['unattributed_revenue']:,.2f} "
        f"({report['unattributed_conversions']} conversions)"
    )
    table = Table("ad", "campaign", "conversions", "revenue", title="revenue per ad")
    for row in report["by_ad"]:
        table.add_row(row["ad_id"], row["campaign_id"] or "", str(row["conversions"]), f"{row['revenue']:,.2f}")
    console.print(table)


@attribution_app.command("report")
def attribution_report(user: UserOption = None, as_json: JsonOption = False) -> None:
    """Conversions and revenue, attributed and not, and per ad."""
    report = run_command(_report(cli_settings(), user), as_json=as_json)
    if as_json:
        emit_json(report)
    else:
        print_report(report)


# --- sampler show -------------------------------------------------------------------------------------------------


async def _sampler(settings: Settings, campaign: str, user: str | None) -> dict[str, Any]:
    from api.services import attribution as service

    async with cli_context(settings, user) as cli, cli.caller() as caller:
        view = await service.sampler_of(caller, campaign)
        return view.model_dump(mode="json")


def print_sampler(view: dict[str, Any]) -> None:
    """Each ad's posterior, lower bound, probability of being best and budget share."""
    allocation = view.get("allocation") or {"p_best": {}, "shares": {}}
    table = Table(
        "ad", "alpha", "beta", "mean", "lower bound", "P(best)", "share", title=f"sampler {view['campaign_id']}"
    )
    for arm in view["arms"]:
        ad = arm["ad_id"]
        table.add_row(
            ad,
            f"{arm['alpha']:g}",
            f"{arm['beta']:g}",
            f"{arm['mean']:.3f}",
            f"{arm['lower_bound']:.3f}",
            f"{allocation['p_best'].get(ad, 0):.3f}",
            f"{allocation['shares'].get(ad, 0):.1%}",
        )
    console.print(table)
    console.print(f"{view['rewards_applied']} rewards applied, {view['duplicates_ignored']} repeats ignored")


@sampler_app.command("show")
def sampler_show(
    campaign: Annotated[str, typer.Argument(help="The campaign id (utm_campaign).")],
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """A campaign's Thompson sampler: posteriors per ad and the budget allocation last drawn."""
    view = run_command(_sampler(cli_settings(), campaign, user), as_json=as_json)
    if as_json:
        emit_json(view)
    else:
        print_sampler(view)


# --- approvals ----------------------------------------------------------------------------------------------------


async def _approvals(settings: Settings, status: str | None, user: str | None) -> list[dict[str, Any]]:
    from api.pages import PageParams, paginate
    from api.services import attribution as service

    async with cli_context(settings, user) as cli, cli.caller() as caller:
        rows, _ = await paginate(caller.session, service.approvals_query(caller, status), PageParams(200, 0))
        return [
            {
                "id": a.id,
                "ad_id": a.ad_id,
                "action": a.action,
                "status": a.status,
                "reasons": a.reasons,
                "requested_at": a.requested_at.isoformat(),
                "decided_by": a.decided_by,
            }
            for a in rows
        ]


@approvals_app.command("list")
def approvals_list(
    status: Annotated[str | None, typer.Option("--status", help="Only this status (pending, executed…).")] = None,
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Your fatigue approvals, newest first."""
    rows = run_command(_approvals(cli_settings(), status, user), as_json=as_json)
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "ad", "action", "status", "requested", "decided by", "why", title="approvals")
    for r in rows:
        reasons = "; ".join(r["reasons"])[:80]
        table.add_row(
            str(r["id"]), r["ad_id"], r["action"], r["status"], r["requested_at"][:16], r["decided_by"] or "", reasons
        )
    console.print(table)


async def _decide(settings: Settings, approval_id: int, approve: bool, note: str, user: str | None) -> dict[str, Any]:
    from api.services import attribution as service

    async with cli_context(settings, user) as cli, cli.caller() as caller:
        outcome = await service.decide(caller, approval_id, approve, note)
        return outcome.model_dump(mode="json")


def _decision(approval_id: int, approve: bool, note: str, user: str | None, as_json: bool) -> None:
    outcome = run_command(_decide(cli_settings(), approval_id, approve, note, user), as_json=as_json)
    _print(outcome, as_json, f"approval {approval_id}: {outcome['status']} ({outcome['action']} {outcome['ad_id']})")


NoteOption = Annotated[str, typer.Option("--note", help="A note kept in the audit trail.")]


@approvals_app.command("approve")
def approvals_approve(
    approval_id: Annotated[int, typer.Argument(help="The approval's id.")],
    note: NoteOption = "",
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve: the action (pause or rotate) runs once and is audited with your name."""
    _decision(approval_id, True, note, user, as_json)


@approvals_app.command("reject")
def approvals_reject(
    approval_id: Annotated[int, typer.Argument(help="The approval's id.")],
    note: NoteOption = "",
    user: UserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reject: nothing runs; the rejection is audited with your name."""
    _decision(approval_id, False, note, user, as_json)


def register(app: typer.Typer) -> None:
    """Add ``conveyor hubspot|ads|webhooks|attribution|sampler|approvals``."""
    app.add_typer(hubspot_app, name="hubspot")
    app.add_typer(ads_app, name="ads")
    app.add_typer(webhooks_app, name="webhooks")
    app.add_typer(attribution_app, name="attribution")
    app.add_typer(sampler_app, name="sampler")
    app.add_typer(approvals_app, name="approvals")


# --- the demo's part ----------------------------------------------------------------------------------------------

DEMO_PORTAL = 9001
#: The sample ad whose metrics the demo makes fatigue (frequency up, CTR down over ten days).
DEMO_TIRED_AD = "spring-static-03"
DEMO_QUERY = "a quick smoothie demo filmed by a customer"


def demo_metrics(today: date, ads: list[str]) -> list[dict[str, Any]]:
    """Ten days of delivery per ad: steady for most, saturating for :data:`DEMO_TIRED_AD`."""
    rows = []
    for ad in ads:
        tired = ad == DEMO_TIRED_AD
        for back in range(10, 0, -1):
            day = today - timedelta(days=back)
            step = 10 - back
            impressions = 10_000
            clicks = (180 - 12 * step) if tired else 150 + (step % 3)
            frequency = (1.5 + 0.4 * step) if tired else 1.6
            spend = (40 + 4 * step) if tired else 40.0
            rows.append(
                {
                    "ad_id": ad,
                    "day": day.isoformat(),
                    "impressions": impressions,
                    "clicks": clicks,
                    "spend": spend,
                    "frequency": frequency,
                }
            )
    return rows


async def _until_processed(http: httpx.AsyncClient, conversions: int, within_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while True:
        report: dict[str, Any] = (await http.get("/api/attribution/summary")).json()
        if report["conversions"] >= conversions or time.monotonic() > deadline:
            return report
        await asyncio.sleep(0.3)


async def demo(ctx: DemoContext) -> list[DemoRun]:
    """Import the sample ads, post the signed sample deliveries (one twice), run fatigue and the winner index."""
    from temporalio.common import SearchAttributePair, TypedSearchAttributes

    from activities.attribution import contract
    from activities.attribution.schemas import FatigueReport, IndexReport
    from conveyor.client import describe
    from conveyor.temporal import PIPELINE_ATTR

    http = ctx.http
    ads = json.loads((SAMPLES / "ads.json").read_text())
    for ad in ads:
        made = await http.post("/api/ads", json=ad)
        if made.status_code != 409:
            made.raise_for_status()
    connected = await http.post("/api/hubspot/portals", json={"portal_id": DEMO_PORTAL})
    if connected.status_code not in (200, 201):
        raise ExternalServiceError(f"cannot connect the demo portal: {connected.text}", code="DEMO_PORTAL")
    metrics = demo_metrics(datetime.now(UTC).date(), [a["ad_id"] for a in ads])
    (await http.post("/api/ad-metrics", json={"metrics": metrics})).raise_for_status()
    t0 = time.monotonic()
    bodies = read_deliveries(SAMPLES / "deliveries.jsonl")
    before = (await http.get("/api/attribution/summary")).json()["conversions"]
    accepted = 0
    for body in [*bodies, bodies[0]]:  # the first again: a redelivery changes nothing
        answer = await post_signed(http, ctx.settings, body)
        answer.raise_for_status()
        accepted += answer.json()["accepted"] - answer.json()["ignored"]
    report = await _until_processed(http, before + accepted)
    if ctx.show:
        print_report(report)
    ingest_id = contract.ingest_workflow_id(DEMO_PORTAL)
    ingest = await describe(ctx.client, ingest_id)
    processed = "completed" if report["conversions"] >= before + accepted else "incomplete"
    top = report["by_ad"][0] if report["by_ad"] else None
    outputs = (
        f"{len(bodies)} deliveries, {report['conversions']} conversions, attributed {report['attributed_revenue']:,.2f}"
    )
    if top:
        outputs += f"; top ad {top['ad_id']} {top['revenue']:,.2f}"
    runs = [ctx.run("attribution: webhooks", ingest, t0, processed, outputs)]

    shares = []
    for campaign in sorted({a["campaign_id"] for a in ads}):
        view = (await http.get(f"/api/campaigns/{campaign}/sampler")).json()
        if ctx.show:
            print_sampler(view)
        best = max((view.get("allocation") or {}).get("shares", {}).items(), key=lambda kv: kv[1], default=None)
        if best:
            shares.append(f"{campaign}: {best[0]} {best[1]:.0%}")

    # the runs the 6- and 12-hourly schedules make, now: findable by pipeline like theirs
    scheduled = TypedSearchAttributes([SearchAttributePair(PIPELINE_ATTR, contract.NAME)])
    t1 = time.monotonic()
    fatigue_id = f"attribution-fatigue-demo-{uuid.uuid4().hex[:8]}"
    fatigue: FatigueReport = await ctx.client.execute_workflow(
        contract.FATIGUE_WORKFLOW,
        contract.ScheduledRun(),
        id=fatigue_id,
        task_queue=contract.FATIGUE_QUEUE,
        result_type=FatigueReport,
        search_attributes=scheduled,
    )
    pending = (await http.get("/api/approvals", params={"status": "pending"})).json()["items"]
    if ctx.show and pending:
        table = Table("id", "ad", "action", "why", title="pending approvals (conveyor approvals approve ID)")
        for p in pending:
            table.add_row(str(p["id"]), p["ad_id"], p["action"], "; ".join(p["reasons"])[:90])
        console.print(table)
    waiting = ", ".join(f"#{p['id']} {p['action']} {p['ad_id']}" for p in pending) or "none"
    runs.append(
        ctx.run(
            "attribution: fatigue",
            await describe(ctx.client, fatigue_id),
            t1,
            "completed",
            f"{fatigue.assessed} ads, {fatigue.critical} critical; pending approval: {waiting}; "
            f"allocations {'; '.join(shares)}",
        )
    )

    t2 = time.monotonic()
    index_id = f"attribution-index-demo-{uuid.uuid4().hex[:8]}"
    built: IndexReport = await ctx.client.execute_workflow(
        contract.INDEX_WORKFLOW,
        contract.ScheduledRun(),
        id=index_id,
        task_queue=contract.INDEX_QUEUE,
        result_type=IndexReport,
        search_attributes=scheduled,
    )
    found = await http.get("/api/creatives/similar", params={"text": DEMO_QUERY, "k": 3})
    found.raise_for_status()
    results = found.json()["results"]
    if ctx.show and results:
        table = Table("score", "ad", "hook", title=f"similar winners: {DEMO_QUERY}")
        for r in results:
            table.add_row(f"{r['score']:.3f}", r["ad_id"], r["hook"][:80])
        console.print(table)
    vectors = sum(b.vectors for b in built.built)
    nearest = f"nearest winner {results[0]['ad_id']} ({results[0]['score']:.2f})" if results else "no winners yet"
    runs.append(
        ctx.run(
            "attribution: winner index",
            await describe(ctx.client, index_id),
            t2,
            "completed",
            f"{vectors} winners indexed; {nearest}",
        )
    )
    return runs
