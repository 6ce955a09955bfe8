"""The ``field-standardizer`` agent: whitespace, mappings, case and merged category spellings."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz

from activities.analysis.agents.base import AgentContext, AgentResult
from activities.analysis.agents.clean.emails import _EMAIL_NAME
from activities.analysis.agents.clean.params import FieldStandardizerParams, _missing, check_columns, known_columns
from activities.analysis.agents.clean.running import _Job, _run, _schemas
from activities.analysis.agents.clean.sql import (
    Col,
    Stage,
    _aggregate,
    _by_column,
    _layered,
    _nest,
    _pairs,
    _rx,
    write_parquet,
)
from activities.analysis.agents.params import parse_params
from activities.analysis.sql import qstr

_ODD_WS = r"[\t\n\r\x{0B}\x{0C}\x{A0}]"


_ANY_WS = r"[\s\x{0B}\x{A0}]+"


@dataclass(frozen=True)
class _StdOptions:
    columns: list[str] | None
    case: dict[str, str]
    case_all: str | None
    max_categories: int
    threshold: float
    mappings: dict[str, dict[str, str]]

    def case_for(self, name: str) -> str:
        """The case mode of a column: its own, ``lower`` for e-mail names, else the global one."""
        if name in self.case:
            return self.case[name]
        if _EMAIL_NAME.search(name):
            return "lower"
        return self.case_all or "keep"


def field_standardizer(ctx: AgentContext) -> AgentResult:
    """Trim and collapse whitespace, apply mappings and case, merge category spellings."""
    schemas = _schemas(ctx)
    p = parse_params("field-standardizer", FieldStandardizerParams, ctx.params)
    known = known_columns(schemas)
    check_columns("field-standardizer", "case", p.case if isinstance(p.case, dict) else (), known)
    check_columns("field-standardizer", "columns", p.columns or (), known)
    check_columns("field-standardizer", "mappings", p.mappings, known)
    case: dict[str, str] = dict(p.case) if isinstance(p.case, dict) else {}
    case_all = None if isinstance(p.case, dict) else p.case
    max_categories, threshold = p.max_categories, p.threshold
    opts = _StdOptions(p.columns, case, case_all, max_categories, threshold, p.mappings)
    echo: dict[str, Any] = {
        "columns": opts.columns,
        "case": case or case_all or "keep",
        "max_categories": max_categories,
    }
    echo |= {"threshold": threshold, "mappings": opts.mappings or None}
    return _run(ctx, "field-standardizer", schemas, echo, lambda job: _std_dataset(job, opts))


def _collapse_ws(e: str) -> str:
    needs = f"strpos({e}, '  ') > 0 OR {_rx(e, _ODD_WS)}"
    return f"CASE WHEN {needs} THEN trim(regexp_replace({e}, {qstr(_ANY_WS)}, ' ', 'g')) ELSE trim({e}) END"


def _case_stage(mode: str) -> Stage:
    if mode == "lower":
        return lambda e: f"lower({e})"
    if mode == "upper":
        return lambda e: f"upper({e})"
    if mode == "title":
        word = "upper(left(__w, 1)) || lower(substr(__w, 2))"
        return lambda e: f"array_to_string(list_transform(string_split({e}, ' '), lambda __w: {word}), ' ')"
    return lambda e: e


def _python_case(value: str, mode: str) -> str:
    if mode == "lower":
        return value.lower()
    if mode == "upper":
        return value.upper()
    if mode == "title":
        return " ".join(w[:1].upper() + w[1:].lower() for w in value.split(" "))
    return value


def _map_stage(mapping: dict[str, str], on_lower: bool = False) -> Stage:
    """A ``CASE`` rewriting the listed values (compared lower-cased when ``on_lower``)."""
    if not mapping:
        return lambda e: e
    whens = " ".join(f"WHEN {qstr(k)} THEN {qstr(v)}" for k, v in mapping.items())
    return lambda e: f"CASE {f'lower({e})' if on_lower else e} {whens} ELSE {e} END"


def _explicit(mapping: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in mapping.items():
        out.setdefault(" ".join(k.split()).lower(), v)
    return out


def _std_stages(col: Col, opts: _StdOptions, categories: dict[str, str]) -> list[Stage]:
    """Whitespace, explicit mapping, case, category merge."""
    explicit = _map_stage(_explicit(opts.mappings.get(col.name, {})), on_lower=True)
    return [_collapse_ws, explicit, _case_stage(opts.case_for(col.name)), _map_stage(categories)]


def _category_key(value: str) -> str:
    text = "".join(ch for ch in unicodedata.normalize("NFKD", value) if not unicodedata.combining(ch)).casefold()
    return "".join(ch for ch in text if not (ch.isspace() or unicodedata.category(ch).startswith("P")))


def _close(a: str, b: str, threshold: float) -> bool:
    same_digits = [ch for ch in a if ch.isdigit()] == [ch for ch in b if ch.isdigit()]
    return same_digits and fuzz.ratio(a, b) >= threshold


def category_map(values: Sequence[tuple[str, int]], threshold: float, fuzzy: bool, prefer: set[str]) -> dict[str, str]:
    """Spelling → canonical spelling, for values equal after normalising (or close, when ``fuzzy``)."""
    by_key: dict[str, list[tuple[str, int]]] = {}
    for value, n in values:
        if any(ch.isalpha() for ch in value):
            by_key.setdefault(_category_key(value), []).append((value, n))
    clusters: list[list[str]] = []
    for key in sorted(by_key, key=lambda k: (-sum(n for _, n in by_key[k]), k)):
        home = next((c for c in clusters if fuzzy and _close(c[0], key, threshold)), None)
        if home is None:
            clusters.append([key])
        else:
            home.append(key)
    mapping: dict[str, str] = {}
    for cluster in clusters:
        members = [m for key in cluster for m in by_key[key]]
        canonical = min(members, key=lambda m: (m[0] not in prefer, -m[1], m[0]))[0]
        mapping |= {v: canonical for v, _ in members if v != canonical}
    return mapping


def _spellings(job: _Job, col: Col, opts: _StdOptions) -> list[tuple[str, int]]:
    """Distinct values after whitespace, mapping and case, with counts (at most max_categories + 1)."""
    value = _nest("__clean_r", _std_stages(col, opts, {})[:3])
    grouped = f"SELECT {col.ident} AS __clean_r, count(*) AS __clean_n FROM {job.src} GROUP BY 1"
    spelled = f"SELECT {value} AS __clean_v, __clean_n FROM ({grouped})"
    rows = job.con.execute(
        f"SELECT __clean_v, sum(__clean_n)::BIGINT FROM ({spelled}) WHERE __clean_v IS NOT NULL "
        f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {opts.max_categories + 1}"
    ).fetchall()
    return [(str(v), int(n)) for v, n in rows]


def _categories(job: _Job, cols: Sequence[Col], opts: _StdOptions) -> dict[str, dict[str, str]]:
    """Category merges per low-cardinality column."""
    if not opts.max_categories or not cols:
        return {}
    exprs = {f"{i}.approx": f"approx_count_distinct({c.ident})" for i, c in enumerate(cols)}
    exprs |= {f"{i}.nn": f"count({c.ident})" for i, c in enumerate(cols)}
    stats = _by_column(_aggregate(job.con, job.src, exprs))
    out: dict[str, dict[str, str]] = {}
    for i, c in enumerate(cols):
        if stats[i]["approx"] > max(20 * opts.max_categories, 1000) or _EMAIL_NAME.search(c.name):
            continue
        values = _spellings(job, c, opts)
        if len(values) > opts.max_categories or sum("@" in v for v, _ in values) * 2 > len(values):
            continue
        prefer = {_python_case(v, opts.case_for(c.name)) for v in opts.mappings.get(c.name, {}).values()}
        fuzzy = len({_category_key(v) for v, _ in values}) * 2 <= int(stats[i]["nn"])
        merged = category_map(values, opts.threshold, fuzzy, prefer)
        if merged:
            out[c.name] = merged
    return out


def _std_dataset(job: _Job, opts: _StdOptions) -> dict[str, Any]:
    targets = [c for c in job.cols if c.is_text and (opts.columns is None or c.name in opts.columns)]
    job.report(0.0, "finding categories")
    categories = _categories(job, targets, opts)
    stages = {c.name: _std_stages(c, opts, categories.get(c.name, {})) for c in targets}
    job.report(0.3, "writing")
    rows = write_parquet(job.con, _layered(job.src, stages), job.out)
    job.report(0.7, "counting changes")
    columns = _std_counts(job, targets, categories, opts)
    out: dict[str, Any] = {"rows": rows, "values_changed": sum(v["changed"] for v in columns.values())}
    out["columns"] = columns
    if opts.columns is not None:
        out["missing_columns"] = _missing(job.cols, opts.columns)
    return out


def _std_counts(
    job: _Job, cols: Sequence[Col], categories: dict[str, dict[str, str]], opts: _StdOptions
) -> dict[str, Any]:
    """Per changed column: values changed, case mode, category mapping and a few examples."""
    changed = {f"{i}.n": f"count(*) FILTER (WHERE i.{c.ident} <> o.{c.ident})" for i, c in enumerate(cols)}
    stats = _by_column(_aggregate(job.con, job.paired, changed))
    out: dict[str, Any] = {}
    for i, c in enumerate(cols):
        if not stats[i]["n"]:
            continue
        entry: dict[str, Any] = {"changed": int(stats[i]["n"]), "case": opts.case_for(c.name)}
        if c.name in categories:
            entry["mapping"] = dict(list(categories[c.name].items())[:20])
        pairs = f"SELECT i.{c.ident}, o.{c.ident} FROM {job.paired} WHERE i.{c.ident} <> o.{c.ident}"
        out[c.name] = entry | {"examples": _pairs(job.con, pairs)}
    return out
