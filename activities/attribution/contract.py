"""The attribution pipeline's light contract (seed 004's ML service): queues, workflow ids, activity names, manifest.

Three queues replace the seed's three Celery queues, each at the seed's ML-worker concurrency of 4:
``attribution.webhooks`` (``hubspot-webhook-events``: the per-portal ingest and the per-campaign samplers),
``attribution.fatigue`` (``fatigue-monitoring``: the 6-hourly monitor and the approvals it asks for) and
``attribution.index`` (``budget-optimization``: the 12-hourly winner index and searches over it).
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from pydantic import BaseModel

from conveyor.errors import BadInput
from conveyor.pipeline import Launch, Pipeline, Price, Queue, Schedule

NAME = "attribution"
WEBHOOK_QUEUE = "attribution.webhooks"
FATIGUE_QUEUE = "attribution.fatigue"
INDEX_QUEUE = "attribution.index"
#: The seed's ML worker: ``--concurrency=4`` (I/O-bound: HTTP and the database).
CONCURRENCY = 4

INGEST_WORKFLOW = "HubSpotIngestWorkflow"
SAMPLER_WORKFLOW = "CampaignSamplerWorkflow"
FATIGUE_WORKFLOW = "FatigueMonitorWorkflow"
APPROVAL_WORKFLOW = "ApprovalWorkflow"
INDEX_WORKFLOW = "WinnerIndexWorkflow"
SIMILAR_WORKFLOW = "CreativeSearchWorkflow"

#: Activities (called by these names; the worker side registers them).
APPLY_BATCH = "attribution.apply_batch"
REWARD_SAMPLERS = "attribution.reward_samplers"
ASSESS_FATIGUE = "attribution.assess_fatigue"
EXECUTE_ACTION = "attribution.execute_action"
CLOSE_APPROVAL = "attribution.close_approval"
COLLECT_WINNERS = "attribution.collect_winners"
BUILD_INDEX = "attribution.build_index"
SEARCH_CREATIVES = "attribution.search_creatives"

#: Signals, updates and queries of the workflows.
WAKE_SIGNAL = "wake"
REWARD_SIGNAL = "reward"
REWARD_UPDATE = "apply_rewards"
ALLOCATIONS_QUERY = "allocations"
SAMPLER_QUERY = "sampler"
APPROVE_SIGNAL = "approve"
REJECT_SIGNAL = "reject"
DECIDE_UPDATE = "decide"
APPROVAL_QUERY = "approval"

SIMILAR_TIMEOUT = timedelta(seconds=60)
SIMILAR_START = Launch(SIMILAR_WORKFLOW, INDEX_QUEUE, SIMILAR_TIMEOUT)

#: An ad or campaign id as HubSpot's ``utm_content`` / ``utm_campaign`` carry it: 1-100 printable characters.
AD_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:~-]{0,99}\Z")
#: The longest ad name and creative text fields.
NAME_LENGTH = 200
CREATIVE_LENGTH = 4000


def check_ad_id(value: str, field: str = "ad_id") -> str:
    """``value`` if it is a valid ad or campaign id (BadInput naming ``field`` otherwise)."""
    if not AD_ID.match(value):
        raise BadInput(
            f"{field} {value!r} must be 1-100 letters, digits, '.', '_', ':', '~' or '-', starting with a letter "
            "or digit",
            code="BAD_AD_ID",
            details={"field": field},
        )
    return value


def ingest_workflow_id(portal_id: int) -> str:
    """The one long-running ingest workflow of a HubSpot portal."""
    return f"hubspot-ingest-{int(portal_id)}"


def sampler_workflow_id(owner: int, campaign_id: str) -> str:
    """The one sampler workflow of an owner's campaign (an id-safe digest keeps any campaign id short)."""
    digest = hashlib.sha256(campaign_id.encode()).hexdigest()[:16]
    return f"attribution-sampler-{int(owner)}-{digest}"


def approval_workflow_id(approval_id: int) -> str:
    """The workflow that waits for a human's decision on one approval."""
    return f"attribution-approval-{int(approval_id)}"


class ScheduledRun(BaseModel):
    """The input of a scheduled run (nothing: a run looks at every owner's ads)."""


FATIGUE_SCHEDULE = Schedule(
    id="attribution-fatigue",
    workflow=FATIGUE_WORKFLOW,
    arg=ScheduledRun(),
    queue=FATIGUE_QUEUE,
    cron="0 */6 * * *",
    description="every 6 h: flag fatiguing ads from their frequency, CPM and CTR trends; ask approval for critical "
    "ones (seed 004 monitor_fatigue)",
    execution_timeout=timedelta(hours=1),
)
INDEX_SCHEDULE = Schedule(
    id="attribution-winner-index",
    workflow=INDEX_WORKFLOW,
    arg=ScheduledRun(),
    queue=INDEX_QUEUE,
    cron="30 */12 * * *",
    description="every 12 h: embed winning ads' creatives and switch each owner's FAISS index to a new version "
    "(seed 004 auto_index_winner)",
    execution_timeout=timedelta(hours=1),
)

#: What an owner pays: each deal event its portals' deliveries change revenue with, and each similar-creative search.
EVENT_PRICE = Price("event", 1, "one deal event applied to revenue, attribution and the sampler (ignored events free)")
SEARCH_PRICE = Price("search", 1, "one similar-creative search over the owner's winner index")

PIPELINE = Pipeline(
    name=NAME,
    description="HubSpot deal webhooks into revenue, attribution and a Thompson sampler per campaign; fatigue "
    "approvals; a FAISS index of winners (seed 004's ML service)",
    queues=(
        Queue(
            WEBHOOK_QUEUE,
            CONCURRENCY,
            "accepted HubSpot events applied in batches per portal; a Thompson sampler per campaign",
            workflows=(INGEST_WORKFLOW, SAMPLER_WORKFLOW),
        ),
        Queue(
            FATIGUE_QUEUE,
            CONCURRENCY,
            "the 6-hourly fatigue monitor and the approvals it asks for",
            workflows=(FATIGUE_WORKFLOW, APPROVAL_WORKFLOW),
        ),
        Queue(
            INDEX_QUEUE,
            CONCURRENCY,
            "the 12-hourly winner index (MiniLM + FAISS) and searches over it",
            workflows=(INDEX_WORKFLOW, SIMILAR_WORKFLOW),
        ),
    ),
    schedules=(FATIGUE_SCHEDULE, INDEX_SCHEDULE),
    prices=(EVENT_PRICE, SEARCH_PRICE),
    max_running=5,
)
