"""The profile-my-data agents' params (light: the API imports this module to document them)."""

from __future__ import annotations

from pydantic import Field

from activities.analysis.agents.params import AgentParams, Int


class UnifiedProfilerParams(AgentParams):
    """Params of ``unified-profiler``."""

    top_n: Int = Field(5, ge=1, le=100, description="How many top values to keep per column.")


class ScoreRiskParams(AgentParams):
    """Params of ``score-risk``."""

    pii_threshold: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Least confidence (0..1) for a column to be reported as PII of its best-scoring kind.",
    )


class DriftDetectorParams(AgentParams):
    """Params of ``drift-detector``."""

    bins: Int = Field(
        10,
        ge=2,
        le=100,
        description="Quantile bins of numeric columns, and top categories of categorical ones (plus 'other').",
    )
