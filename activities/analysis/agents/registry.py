"""Analysis agents by id (see :mod:`activities.analysis.catalog` for the tools that use them)."""

from __future__ import annotations

from activities.analysis.agents.base import AgentContext, AgentFn, AgentResult, Dataset
from activities.analysis.agents.clean.conversions import type_fixer
from activities.analysis.agents.clean.duplicates import duplicate_resolver
from activities.analysis.agents.clean.emails import email_validator
from activities.analysis.agents.clean.nulls import null_handler
from activities.analysis.agents.clean.outliers import outlier_flagger
from activities.analysis.agents.clean.standardize import field_standardizer
from activities.analysis.agents.master.golden import golden_record_builder
from activities.analysis.agents.master.keys import key_identifier
from activities.analysis.agents.master.matching import entity_matcher
from activities.analysis.agents.profile.drift import drift_detector
from activities.analysis.agents.profile.profiler import unified_profiler
from activities.analysis.agents.profile.risk import score_risk

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
