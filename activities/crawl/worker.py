"""The crawl pipeline's worker side: one Chromium and one set of activities per process, split by queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.crawl.activities import CrawlActivities, crawl_activities
from activities.crawl.browser import BrowserPool
from conveyor.netpolicy import NetPolicy
from conveyor.resources import WorkerResources


def _crawl(resources: WorkerResources) -> CrawlActivities:
    s = resources.settings
    browser = resources.shared(
        "crawl.browser",
        lambda: BrowserPool(
            s.chromium_path,
            s.chromium_args,
            s.crawl_user_agent,
            policy=NetPolicy.from_settings(s),
            sandbox=s.chromium_sandbox,
        ),
        BrowserPool.close,
    )
    return resources.shared(
        "crawl.activities", lambda: CrawlActivities(resources.sessions, resources.blobs, s, browser)
    )


def activities(resources: WorkerResources, queue: str) -> list[Callable[..., Any]]:
    """The crawl activities served on ``queue`` (the browser is launched on first use)."""
    return crawl_activities(_crawl(resources), queue)
