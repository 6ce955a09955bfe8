"""Analysis agents by id (see :mod:`activities.analysis.catalog` for the tools that use them)."""

from __future__ import annotations

from activities.analysis.agents.base import AgentContext, AgentFn, AgentResult, Dataset
from activities.analysis.agents.clean import (
    duplicate_resolver,
    email_validator,
    field_standardizer,
    null_handler,
    outlier_flagger,
    type_fixer,
)
from activities.analysis.agents.master import entity_matcher, golden_record_builder, key_identifier
from activities.analysis.agents.profile import drift_detector, score_risk, unified_profiler

AGENTS: dict[str, AgentFn] = {
    "unified-profiler": unified_profiler,
    "score-risk": score_risk,
    "drift-detector": drift_detector,
    "null-handler": null_handler,
    "type-fixer": type_fixer,
    "field-standardizer": field_standardizer,
    "duplicate-resolver": duplicate_resolver,
    "outlier-flagger": outlier_flagger,
    "email-validator": email_validator,
    "key-identifier": key_identifier,
    "entity-matcher": entity_matcher,
    "golden-record-builder": golden_record_builder,
}

__all__ = ["AGENTS", "AgentContext", "AgentFn", "AgentResult", "Dataset"]
