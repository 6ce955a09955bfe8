"""What work costs: every pipeline's price list, read from the manifests."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import CurrentUser, SettingsDep
from conveyor.quotas import running_cap
from workers.pipelines import PIPELINES

router = APIRouter(prefix="/api", tags=["kernel"])


class PriceOut(BaseModel):
    """One priced unit of a pipeline's work."""

    pipeline: str = Field(description="The pipeline (analysis, attribution, chat, crawl, persona, video).")
    unit: str = Field(description="What is counted: a page, a chunk, an output second, an analysis tool/agent run.")
    credits: int = Field(description="Credits charged per unit delivered.")
    description: str
    max_running: int | None = Field(
        description="The cap on one user's runs of the pipeline under way at once (429 above); null where the work is "
        "metered, not started as runs (chat: a conversation is never capped by number, its messages are by rate)."
    )


class PricingOut(BaseModel):
    """Every pipeline's prices; a start holds the run's most, its end charges what was delivered."""

    prices: list[PriceOut]
    available_credits: int = Field(description="Your balance minus credits held by your runs under way.")


@router.get("/pricing", response_model=PricingOut, summary="Prices of every pipeline")
async def pricing(user: CurrentUser, settings: SettingsDep) -> PricingOut:
    """Credits per unit for every pipeline (page, chunk, output second, agent run) and your available credits."""
    prices = [
        PriceOut(
            pipeline=p.name,
            unit=x.unit,
            credits=x.credits,
            description=x.description,
            max_running=None if p.max_running is None else running_cap(settings, p),
        )
        for p in PIPELINES
        for x in p.prices
    ]
    return PricingOut(prices=prices, available_credits=user.credits - user.credits_held)
