"""The master-my-data agents' params, and column names resolved case-insensitively against the data.

The models are light (the API imports them to document the params); column names depend on the data, so the
agents resolve them once the datasets are known. Every failure is ``BadInput(code="BAD_PARAMS")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from activities.analysis.agents.params import AgentParams, Folded, Int, Name, Names, bad_param, needs

RULES = ("most_frequent", "most_complete", "most_recent", "source_priority")

Rule = Annotated[Literal["most_frequent", "most_complete", "most_recent", "source_priority"], Folded]


class KeyIdentifierParams(AgentParams):
    """Params of ``key-identifier``: candidate keys per dataset and join candidates across datasets."""

    min_uniqueness: float = Field(
        0.95,
        ge=0.0,
        le=1.0,
        description="Least share of distinct values among non-null ones for a column (or pair) to be reported as "
        "a nearly-unique candidate key.",
    )
    max_null_ratio: float = Field(
        0.05, ge=0.0, le=1.0, description="Most share of null or blank values a candidate key may have."
    )
    max_pair_columns: Int = Field(
        10,
        ge=2,
        le=30,
        description="When no single column is unique, how many of the most distinct columns are tried in pairs.",
    )
    min_overlap: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Least share of shared values (of the smaller value set) for two differently named columns to "
        "be reported as a join candidate.",
    )


class EntityMatcherParams(AgentParams):
    """Params of ``entity-matcher``: records of the same entity clustered on exact keys and fuzzy names."""

    match_keys: Names | None = Field(
        None,
        description="Columns matched exactly once normalised; default: the email-, phone- and national-id-like "
        "columns (generic ids such as customer_id only when named).",
    )
    name_columns: Names | None = Field(
        None,
        description="Columns joined in order into the fuzzy-matched name; default: name-like columns. An empty "
        "list turns fuzzy matching off.",
    )
    address_columns: Names | None = Field(
        None, description="Address columns scored with the names; default: street-address-like columns; [] for none."
    )
    threshold: float = Field(88.0, ge=0.0, le=100.0, description="Least fuzzy score (0..100) for a match.")
    max_block_size: Int = Field(
        50,
        ge=2,
        le=10_000,
        description="Name blocks and exact-key groups with more records are not compared (they are reported).",
    )
    within_sources: bool | None = Field(
        None,
        description="Also match records of the same dataset with each other; default: true for one dataset, "
        "false for several.",
    )


class GoldenRecordBuilderParams(EntityMatcherParams):
    """Params of ``golden-record-builder``: one record per matched cluster, each column by a survivorship rule.

    When the chained data is not a matched table the matcher runs first, with the matcher's params given here.
    """

    rule: Rule | None = Field(
        None,
        description="The survivorship rule of every column; default: source_priority when `source_priority` is "
        "given, else most_recent when `recency_column` is, else most_frequent.",
    )
    column_rules: dict[str, Rule] = Field(default_factory=dict, description="Per-column rules {column: rule}.")
    recency_column: Name | None = Field(
        None,
        description="A date/time (or numeric) column ordering records for most_recent; text is parsed as ISO, "
        "m/d/Y or d.m.Y dates.",
    )
    source_priority: Names = Field(
        default_factory=list,
        description="Dataset names, best first, for source_priority (a name may omit its extension).",
    )

    def default_rule(self) -> str:
        """The rule of columns without one of their own."""
        if self.rule is not None:
            return self.rule
        return "source_priority" if self.source_priority else "most_recent" if self.recency_column else "most_frequent"

    @model_validator(mode="after")
    def _rules_have_their_params(self) -> Self:
        used = {self.default_rule(), *self.column_rules.values()}
        if "most_recent" in used and self.recency_column is None:
            raise needs("recency_column", "rule 'most_recent' needs param 'recency_column'")
        if "source_priority" in used and not self.source_priority:
            raise needs("source_priority", "rule 'source_priority' needs param 'source_priority' (dataset names)")
        return self


def _resolve_columns(agent: str, key: str, names: Sequence[str], lookup: dict[str, str]) -> list[str]:
    """Map user-given column names (case-insensitive) to actual ones; BAD_PARAMS for unknown ones."""
    resolved: list[str] = []
    for name in names:
        actual = lookup.get(name.strip().lower())
        if actual is None:
            known = ", ".join(sorted(set(lookup.values()))[:30])
            raise bad_param(agent, key, name, f"names no column of the data (columns: {known})")
        if actual not in resolved:
            resolved.append(actual)
    return resolved
