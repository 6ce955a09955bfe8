"""Attribution over HTTP: the signed HubSpot webhook, portals, ads, metrics, touchpoints, conversions, the report,
campaign samplers, fatigue approvals and similar winning creatives (seed 004's ML service)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from activities.attribution.deliveries import MAX_EVENTS_PER_DELIVERY, HubSpotEvent
from activities.attribution.sampler import Allocation
from activities.attribution.schemas import ApprovalOutcome, SamplerView, SimilarResult
from api.deps import CallerDep, StateDep
from api.pages import Page, PageDep, page_of, paginate
from api.services import attribution as service
from api.services.attribution import AdIn, Delivery, Doorbell, Inbox, MetricIn, TouchpointIn
from conveyor.errors import ConveyorError

router = APIRouter(tags=["attribution"])

#: An approval's id in a path (a database integer).
ApprovalId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _doorbell(state: StateDep) -> Doorbell:
    async def send(portal_id: int, owner: int) -> None:
        await service.wake_ingest(await state.temporal(), state.settings, portal_id, owner)

    return state.shared("attribution.doorbell", lambda: Doorbell(send))


def _delivery_schema() -> dict[str, Any]:
    """The body HubSpot posts: an array of up to 100 events (one event alone is accepted too)."""
    event = HubSpotEvent.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    event.pop("title", None)
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"anyOf": [{"type": "array", "items": event, "maxItems": MAX_EVENTS_PER_DELIVERY}, event]}
            }
        },
    }


@router.post(
    "/webhooks/hubspot",
    response_model=Delivery,
    summary="HubSpot webhook (signed; no API key)",
    responses={
        401: {"description": "bad or stale signature"},
        400: {"description": "malformed delivery (nothing accepted)"},
        503: {"description": "not configured, or the ingest could not be woken: retry (nothing is lost)"},
    },
    openapi_extra={"requestBody": _delivery_schema()},
)
async def hubspot_webhook(request: Request, state: StateDep) -> Any:
    """A HubSpot delivery: up to 100 events, verified by its v3 (or v1/v2) signature, each event stored once in the
    inbox before the answer; 200 means every event is durably accepted and its portal's ingest was woken."""
    body = await request.body()
    try:
        return await service.accept_delivery(
            state.shared("attribution.inbox", lambda: Inbox(state.sessions, state.settings)),
            state.settings,
            _doorbell(state),
            method=request.method,
            url=str(request.url),
            body=body,
            headers=request.headers,
        )
    except ConveyorError as err:
        status = service.error_status(err)
        headers = {"Retry-After": "5"} if status == 503 else None
        return JSONResponse({"error": err.to_dict()}, status_code=status, headers=headers)


# --- portals ------------------------------------------------------------------------------------------------------


class PortalIn(BaseModel):
    """A HubSpot portal (account) id to connect to you."""

    portal_id: int = Field(gt=0, lt=2**63, description="The HubSpot account id its webhooks carry as portalId.")


class PortalOut(BaseModel):
    """A connected portal."""

    model_config = ConfigDict(from_attributes=True)

    portal_id: int
    created_at: datetime


@router.post("/api/hubspot/portals", response_model=PortalOut, status_code=201)
async def connect_portal(body: PortalIn, caller: CallerDep) -> Any:
    """Connect a portal: its deliveries' events, ads' conversions and approvals are yours (idempotent: 200 again)."""
    portal, created = await service.connect_portal(caller, body.portal_id)
    out = PortalOut.model_validate(portal)
    return out if created else JSONResponse(out.model_dump(mode="json"), status_code=200)


@router.get("/api/hubspot/portals", response_model=list[PortalOut])
async def list_portals(caller: CallerDep) -> list[PortalOut]:
    """Your connected portals."""
    return [PortalOut.model_validate(p) for p in await service.portals_of(caller)]


# --- ads ----------------------------------------------------------------------------------------------------------


class AdOut(BaseModel):
    """An ad with its creative, status and fatigue verdict."""

    model_config = ConfigDict(from_attributes=True)

    ad_id: str
    campaign_id: str
    name: str
    hook: str
    script: str
    offer: str
    tags: list[str]
    status: str
    fatigue_level: str
    fatigue_reasons: list[str]
    fatigue_checked_at: datetime | None
    created_at: datetime


@router.post("/api/ads", response_model=AdOut, status_code=201)
async def create_ad(body: AdIn, caller: CallerDep) -> AdOut:
    """Create an ad (409 if its id is taken); its campaign's sampler learns of it."""
    return AdOut.model_validate(await service.create_ad(caller, body))


@router.get("/api/ads", response_model=Page[AdOut])
async def list_ads(caller: CallerDep, window: PageDep, campaign_id: str | None = None) -> Page[AdOut]:
    """Your ads (of one campaign with ``?campaign_id=``), newest first."""
    rows, total = await paginate(caller.session, service.ads_query(caller, campaign_id), window)
    return page_of([AdOut.model_validate(r) for r in rows], total, window)


@router.get("/api/ads/{ad_id}", response_model=AdOut)
async def get_ad(ad_id: str, caller: CallerDep) -> AdOut:
    """One of your ads."""
    return AdOut.model_validate(await service.get_ad(caller, ad_id))


class ModelRevenue(BaseModel):
    """Revenue credited to an ad under one attribution model."""

    revenue_cents: int
    revenue: float
    deals: int


class AdAttributionOut(BaseModel):
    """An ad's conversions and revenue (its primary model's), per model, and its fatigue verdict."""

    ad_id: str
    campaign_id: str
    status: str
    conversions: int
    revenue_cents: int
    revenue: float
    models: dict[str, ModelRevenue] = Field(description="utm, last_touch and linear (multi-touch) credits.")
    fatigue: dict[str, Any]


@router.get("/api/ads/{ad_id}/attribution", response_model=AdAttributionOut)
async def ad_attribution(ad_id: str, caller: CallerDep) -> Any:
    """An ad's conversions and the revenue credited to it under each attribution model."""
    return await service.ad_attribution(caller, ad_id)


class MetricsIn(BaseModel):
    """Daily delivery metrics of your ads (a day posted again replaces it)."""

    metrics: list[MetricIn] = Field(min_length=1, max_length=1000)


class MetricsOut(BaseModel):
    """How many ad-days were stored."""

    stored: int


@router.post("/api/ad-metrics", response_model=MetricsOut)
async def post_metrics(body: MetricsIn, caller: CallerDep) -> MetricsOut:
    """Store daily impressions, clicks, spend and frequency per ad (what fatigue and the samplers read)."""
    return MetricsOut(stored=await service.record_metrics(caller, body.metrics))


class MetricOut(BaseModel):
    """One ad's delivery on one day."""

    model_config = ConfigDict(from_attributes=True)

    ad_id: str
    day: date
    impressions: int
    clicks: int
    spend: float
    frequency: float


@router.get("/api/ad-metrics", response_model=Page[MetricOut])
async def list_metrics(caller: CallerDep, window: PageDep, ad_id: str | None = None) -> Page[MetricOut]:
    """Your ads' daily metrics (of one ad with ``?ad_id=``), latest day first."""
    from sqlalchemy import select

    from activities.attribution.models import AdMetric

    query = select(AdMetric).where(AdMetric.user_id == caller.user.id)
    if ad_id:
        query = query.where(AdMetric.ad_id == ad_id)
    rows, total = await paginate(caller.session, query.order_by(AdMetric.day.desc(), AdMetric.id.desc()), window)
    return page_of([MetricOut.model_validate(r) for r in rows], total, window)


class TouchpointOut(BaseModel):
    """A stored touchpoint."""

    model_config = ConfigDict(from_attributes=True)

    contact_id: str
    ad_id: str
    campaign_id: str | None
    at: datetime


@router.post("/api/touchpoints", response_model=TouchpointOut, status_code=201)
async def post_touchpoint(body: TouchpointIn, caller: CallerDep) -> TouchpointOut:
    """Record that a CRM contact interacted with one of your ads (multi-touch attribution of its deals)."""
    return TouchpointOut.model_validate(await service.record_touchpoint(caller, body))


# --- conversions and the report -----------------------------------------------------------------------------------


class ConversionOut(BaseModel):
    """One deal event applied: the ad credited (none: unattributed) and the deal's revenue after it."""

    model_config = ConfigDict(from_attributes=True)

    deal_id: str
    portal_id: int
    ad_id: str | None
    campaign_id: str | None
    utm_content: str | None
    model: str
    stage: str
    revenue_cents: int
    delta_cents: int
    occurred_at: datetime
    processed_at: datetime


@router.get("/api/conversions", response_model=Page[ConversionOut])
async def list_conversions(caller: CallerDep, window: PageDep, ad_id: str | None = None) -> Page[ConversionOut]:
    """Your conversions (of one ad with ``?ad_id=``), newest first."""
    rows, total = await paginate(caller.session, service.conversions_query(caller, ad_id), window)
    return page_of([ConversionOut.model_validate(r) for r in rows], total, window)


class AdTotal(BaseModel):
    """One ad's conversions and credited revenue."""

    ad_id: str
    campaign_id: str | None
    conversions: int
    revenue: float
    revenue_cents: int


class SummaryOut(BaseModel):
    """Conversions (distinct deal events applied) and revenue, attributed to ads or not, and per ad."""

    conversions: int
    attributed_revenue: float
    unattributed_revenue: float
    unattributed_conversions: int
    attributed_revenue_cents: int
    unattributed_revenue_cents: int
    by_ad: list[AdTotal]


@router.get("/api/attribution/summary", response_model=SummaryOut)
async def summary(caller: CallerDep) -> Any:
    """What ``conveyor attribution report`` prints: totals and per-ad conversions and revenue."""
    return await service.report(caller.session, caller.user.id)


# --- samplers, approvals, similar creatives ---------------------------------------------------------------------


@router.get("/api/campaigns/{campaign_id}/sampler", response_model=SamplerView)
async def campaign_sampler(campaign_id: str, caller: CallerDep) -> SamplerView:
    """A campaign's Thompson sampler: each ad's Beta posterior, lower credible bound and the allocation last drawn."""
    return await service.sampler_of(caller, campaign_id)


@router.get("/api/campaigns/{campaign_id}/allocations", response_model=Allocation | None)
async def campaign_allocations(campaign_id: str, caller: CallerDep) -> Allocation | None:
    """The budget allocation the campaign's sampler last drew (probability each ad is best, and its share)."""
    return await service.allocations_of(caller, campaign_id)


class ApprovalOut(BaseModel):
    """A fatigue action waiting for (or past) a human decision."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    ad_id: str
    action: str
    reasons: list[str]
    status: str
    workflow_id: str | None
    requested_at: datetime
    deadline: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    executed_at: datetime | None


@router.get("/api/approvals", response_model=Page[ApprovalOut])
async def list_approvals(caller: CallerDep, window: PageDep, status: str | None = None) -> Page[ApprovalOut]:
    """Your approvals (``?status=pending`` for those waiting), newest first."""
    rows, total = await paginate(caller.session, service.approvals_query(caller, status), window)
    return page_of([ApprovalOut.model_validate(r) for r in rows], total, window)


@router.get("/api/approvals/{approval_id}", response_model=ApprovalOut)
async def get_approval(approval_id: ApprovalId, caller: CallerDep) -> ApprovalOut:
    """One of your approvals."""
    return ApprovalOut.model_validate(await service.get_approval(caller, approval_id))


class DecisionIn(BaseModel):
    """An optional note kept in the audit trail."""

    note: str = Field("", max_length=500)


@router.post("/api/approvals/{approval_id}/approve", response_model=ApprovalOutcome)
async def approve(approval_id: ApprovalId, caller: CallerDep, body: DecisionIn | None = None) -> ApprovalOutcome:
    """Approve: the action (pause or rotate the ad) runs once and is audited with your name; 409 once decided."""
    return await service.decide(caller, approval_id, True, body.note if body else "")


@router.post("/api/approvals/{approval_id}/reject", response_model=ApprovalOutcome)
async def reject(approval_id: ApprovalId, caller: CallerDep, body: DecisionIn | None = None) -> ApprovalOutcome:
    """Reject: nothing runs; the rejection is audited with your name; 409 once decided."""
    return await service.decide(caller, approval_id, False, body.note if body else "")


@router.get("/api/creatives/similar", response_model=SimilarResult)
async def similar_creatives(
    caller: CallerDep,
    text: Annotated[str, Query(min_length=1, max_length=2000)],
    k: Annotated[int, Query(ge=1, le=50)] = 5,
) -> SimilarResult:
    """Your winning ads whose creatives (hook, script, offer, tags) are nearest ``text``, from your latest index."""
    return await service.similar(caller, text, k)
