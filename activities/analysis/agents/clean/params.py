"""The clean-my-data agents' params, and the checks of the column names they give against the data.

The models are light (the API imports them to document the params); the column checks depend on the data, so the
agents run them once the datasets are known. Every failure is ``BadInput(code="BAD_PARAMS")``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from activities.analysis.agents.params import AgentParams, Folded, Int, Names, bad_param

if TYPE_CHECKING:
    from activities.analysis.agents.clean.sql import Col

CaseMode = Annotated[Literal["lower", "upper", "title", "keep"], Folded]

_COLUMNS = "Columns to work on (one name is a list of one); default: {default}. Each must be a column of some dataset."


class NullHandlerParams(AgentParams):
    """Params of ``null-handler``: null-like values always become NULL; then keep, drop or fill nulls."""

    strategy: Annotated[Literal["keep", "drop_rows", "fill", "drop_columns_over"], Folded] = Field(
        "keep",
        description=(
            "keep: only normalise null-likes; drop_rows: drop rows with a null in `columns`; fill: fill the nulls "
            "of `columns` with `fill_numeric` (numeric columns and mostly-numeric text) or `fill_text` (other text); "
            "drop_columns_over: only drop columns whose null share exceeds `drop_columns_over` (0.5 unless given)."
        ),
    )
    columns: Names | None = Field(None, description=_COLUMNS.format(default="all columns"))
    drop_columns_over: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="With any strategy: drop columns (of `columns`) whose null share after normalising exceeds "
        "this (never every column).",
    )
    fill_numeric: Annotated[Literal["mean", "median", "zero"] | float, Folded] = Field(
        "median",
        description="With strategy fill: the fill of numeric columns, written in the column's number style.",
    )
    fill_text: str = Field("unknown", description="With strategy fill: the fill of other text columns.")


class TypeFixerParams(AgentParams):
    """Params of ``type-fixer``: text columns holding booleans, numbers or dates converted to those types."""

    min_parse_rate: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="Least share of a column's non-null-like (sampled) values that must parse for it to be converted.",
    )
    columns: Names | None = Field(None, description=_COLUMNS.format(default="every text column"))
    date_order: Annotated[Literal["auto", "dmy", "mdy"], Folded] = Field(
        "auto",
        description="How numeric dates are read: auto (day or month first from the column's values, per "
        "separator), dmy (day first) or mdy (month first).",
    )


class FieldStandardizerParams(AgentParams):
    """Params of ``field-standardizer``: trim, map, case and merge the spellings of text values."""

    columns: Names | None = Field(None, description=_COLUMNS.format(default="every text column"))
    case: CaseMode | dict[str, CaseMode] | None = Field(
        None,
        description="A mode for every column, or an object {column: mode} for some. Columns named like e-mail are "
        "lower-cased unless the object names them; the rest default to keep.",
    )
    max_categories: Int = Field(
        50,
        ge=0,
        le=1000,
        description="Spellings are merged in columns with at most this many distinct values; 0 disables merging.",
    )
    threshold: float = Field(
        90.0,
        ge=0.0,
        le=100.0,
        description="Least rapidfuzz ratio of two normalised spellings (with the same digits) for them to merge.",
    )
    mappings: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Explicit replacements {column: {from: to}}; `from` matches ignoring case and surrounding "
        "whitespace, and a mapping target wins when spellings merge.",
    )


class DuplicateResolverParams(AgentParams):
    """Params of ``duplicate-resolver``: exact, then normalised (near) duplicate rows removed."""

    key_columns: Names | None = Field(
        None,
        description="Rows equal on these columns (after normalising text) are near-duplicates; default all columns.",
    )
    keep: Annotated[Literal["first", "most_complete"], Folded] = Field(
        "first", description="Which row of a duplicate group stays: the first, or the one with the fewest nulls."
    )
    near: bool = Field(True, description="Also remove near-duplicates; false removes exact duplicates only.")


class OutlierFlaggerParams(AgentParams):
    """Params of ``outlier-flagger``: numeric outliers by IQR or z-score, flagged or dropped."""

    columns: Names | None = Field(
        None, description=_COLUMNS.format(default="every numeric or mostly-numeric column, except id-like ones")
    )
    method: Annotated[Literal["iqr", "zscore"], Folded] = Field(
        "iqr", description="iqr: outside q1 - k*iqr .. q3 + k*iqr; zscore: |x - mean| / stddev > threshold."
    )
    k: float = Field(1.5, gt=0.0, le=100.0, description="The IQR multiplier (method iqr).")
    threshold: float = Field(3.0, gt=0.0, le=100.0, description="The z-score limit (method zscore).")
    action: Annotated[Literal["flag", "drop"], Folded] = Field(
        "flag", description="flag: add a BOOLEAN <column>_is_outlier; drop: remove the flagged rows."
    )


class EmailValidatorParams(AgentParams):
    """Params of ``email-validator``: e-mail columns validated, domains lower-cased, disposable domains flagged."""

    columns: Names | None = Field(
        None, description=_COLUMNS.format(default="columns named like e-mail or holding mostly e-mail addresses")
    )
    action: Annotated[Literal["flag", "null_invalid"], Folded] = Field(
        "flag",
        description="flag: add BOOLEAN <column>_valid and <column>_disposable; null_invalid: also set invalid "
        "values to NULL.",
    )
    disposable_domains: Names = Field(
        default_factory=list, description="Extra disposable domains (their subdomains count too)."
    )


def known_columns(schemas: Sequence[Sequence[Col]]) -> set[str]:
    """The names of every column of some current dataset."""
    return {c.name for cols in schemas for c in cols}


def check_columns(agent: str, param: str, names: Iterable[str], known: Collection[str]) -> None:
    """BAD_PARAMS unless every name is a column of some current dataset."""
    missing = [n for n in names if n not in known]
    if missing:
        raise bad_param(agent, param, missing if len(missing) > 1 else missing[0], "names no column of the data")


def _missing(cols: Sequence[Col], wanted: Iterable[str] | None) -> list[str]:
    names = {c.name for c in cols}
    return [w for w in wanted or () if w not in names]
