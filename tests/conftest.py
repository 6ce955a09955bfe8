"""Suite-wide set-up: offline model settings, the fixtures of ``tests.helpers.fixtures``, and tier markers."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings as hypothesis_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# Property tests draw the same examples on every run, so the suite cannot pass or fail by luck; set
# HYPOTHESIS_PROFILE=explore to search with fresh random examples instead.
hypothesis_settings.register_profile("repeatable", derandomize=True, deadline=None)
hypothesis_settings.register_profile("explore", deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

pytest_plugins = ["tests.helpers.fixtures"]

#: Fixtures that put a test in a tier: it needs the time-skipping (or local) server, or the whole stack.
_TIER_OF_FIXTURE = {"env": "workflow", "client": "workflow", "new_worker": "workflow", "stack": "stack"}


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--workflow-environment``: ``time-skipping`` (default) or ``local`` (the real dev server)."""
    parser.addoption("--workflow-environment", default="time-skipping", choices=["time-skipping", "local"])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier: ``stack``/``process`` when it needs them, ``workflow``, else ``unit``."""
    for item in items:
        marks = {m.name for m in item.iter_markers()}
        fixtures = set(getattr(item, "fixturenames", ()))
        tiers = {tier for name, tier in _TIER_OF_FIXTURE.items() if name in fixtures}
        if "dev_server" in fixtures and "stack" not in tiers:
            tiers.add("stack")
        if "stack" in tiers:
            tiers.discard("workflow")
        if not tiers and "process" not in marks:
            tiers.add("unit")
        for tier in tiers - marks:
            item.add_marker(getattr(pytest.mark, tier))
