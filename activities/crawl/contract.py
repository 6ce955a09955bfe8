"""The crawl pipeline's light contract (seed 000, BugHive): queues, workflow ids, activity names, manifest."""

from __future__ import annotations

from datetime import timedelta

from activities.crawl.schemas import CleanupRequest
from conveyor.pipeline import Launch, Pipeline, Price, Queue, Schedule

NAME = "crawl"
#: The seed's four queues and their worker concurrency: crawl 2 (high), tickets 4, media 8, default 2 (low).
PAGES_QUEUE = "crawl.pages"
TICKETS_QUEUE = "crawl.tickets"
MEDIA_QUEUE = "crawl.media"
DEFAULT_QUEUE = "crawl.default"

SESSION_WORKFLOW = "CrawlSessionWorkflow"
CLEANUP_WORKFLOW = "CleanupCrawlSessionsWorkflow"
#: Room for winding down after the seed's hard limit before Temporal ends the run itself.
WIND_DOWN = timedelta(minutes=2)
#: A session's execution timeout is its config's hard limit plus :data:`WIND_DOWN` (given when it starts).
SESSION_START = Launch(SESSION_WORKFLOW, PAGES_QUEUE)

START_SESSION = "crawl.start_session"
VISIT_PAGE = "crawl.visit_page"
UPLOAD_SCREENSHOT = "crawl.upload_screenshot"
CREATE_TICKET = "crawl.create_ticket"
RECORD_TICKET_ERROR = "crawl.record_ticket_error"
CLEANUP_OLD_SESSIONS = "crawl.cleanup_old_sessions"
NOTE_LIMIT = "crawl.note_limit"
SPILL_FRONTIER = "crawl.spill_frontier"
LOAD_FRONTIER = "crawl.load_frontier"
#: The session's bookkeeping before the kernel's ``conveyor.record_run`` (runs started then still use it).
LEGACY_UPDATE_SESSION = "crawl.update_session"

#: The run table of a session.
SESSION_TABLE = "crawl_sessions"


def workflow_id_for(session_id: str) -> str:
    """The workflow id of a session (deterministic: a second start is refused while one runs)."""
    return f"crawl-{session_id}"


#: A crawl pays per page it visited; a start holds ``max_pages`` of them.
PAGE_PRICE = Price("page", 1, "one page visited (loaded, checked, its links followed); a start holds max_pages")


PIPELINE = Pipeline(
    name=NAME,
    description="QA crawls that file one ticket per bug, with screenshots (seed 000)",
    queues=(
        Queue(
            PAGES_QUEUE,
            2,
            "crawl sessions and page visits",
            workflows=("CrawlSessionWorkflow",),
            legacy=("crawl",),
        ),
        Queue(TICKETS_QUEUE, 4, "bug tickets (built-in tracker or Linear)", legacy=("tickets",)),
        Queue(MEDIA_QUEUE, 8, "bug screenshots", legacy=("media",)),
        Queue(
            DEFAULT_QUEUE,
            2,
            "cleanup of old sessions",
            workflows=("CleanupCrawlSessionsWorkflow",),
            legacy=("default",),
        ),
    ),
    schedules=(
        Schedule(
            id="crawl-cleanup",
            workflow=CLEANUP_WORKFLOW,
            arg=CleanupRequest(),
            queue=DEFAULT_QUEUE,
            cron="0 3 * * *",
            description="delete crawl sessions, bugs, tickets and screenshots past the retention (seed 000 cleanup)",
        ),
    ),
    legacy_bookkeeping=(LEGACY_UPDATE_SESSION,),
    prices=(PAGE_PRICE,),
    max_running=3,
)
