"""The ``type-fixer`` agent: text columns holding booleans, numbers or dates converted to those types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from activities.analysis.agents.base import AgentContext, AgentResult
from activities.analysis.agents.clean.dates import _ISO_SHAPE, _SEPARATORS, _date_build, _date_prep
from activities.analysis.agents.clean.numbers import (
    _NUMBER_SHAPE,
    _number_stages,
    _number_stats,
    _number_style,
    _reaches,
)
from activities.analysis.agents.clean.params import TypeFixerParams, _missing, check_columns, known_columns
from activities.analysis.agents.clean.running import _Job, _run, _schemas
from activities.analysis.agents.clean.sampling import _frame
from activities.analysis.agents.clean.sql import (
    Col,
    Stage,
    _aggregate,
    _by_column,
    _layered,
    _one_of,
    _pairs,
    _rx,
    _values,
    clean_text,
    null_like,
    write_parquet,
)
from activities.analysis.agents.params import parse_params
from activities.analysis.sql import qident, qstr

_TRUE = ("true", "yes", "y", "t", "1")


_FALSE = ("false", "no", "n", "f", "0")


def _to_boolean(v: str) -> str:
    low = f"lower({v})"
    return f"CASE WHEN {_one_of(low, _TRUE)} THEN true WHEN {_one_of(low, _FALSE)} THEN false END"


@dataclass(frozen=True)
class _Conversion:
    """What a text column becomes: ``kind`` (boolean, integer, double, date, timestamp) and its format."""

    kind: str
    fmt: str
    rate: float

    @property
    def sql_type(self) -> str:
        """The DuckDB type written."""
        return {"integer": "BIGINT"}.get(self.kind, self.kind.upper())

    @property
    def label(self) -> str:
        """The detected format in words."""
        if self.kind in ("integer", "double"):
            return {"us": "1,234.5", "eu": "1.234,5"}[self.fmt]
        if self.kind not in ("date", "timestamp"):
            return ""
        if len(set(self.fmt)) == 1:
            return "day first" if self.fmt[0] == "d" else "month first"
        return ", ".join(
            f"{'day' if o == 'd' else 'month'} first with '{sep}'" for sep, o in zip(_SEPARATORS, self.fmt, strict=True)
        )

    def stages(self) -> list[Stage]:
        """Stages from the raw text value to the converted value."""
        if self.kind == "boolean":
            return [clean_text, _to_boolean]
        if self.kind in ("integer", "double"):
            return [clean_text, *_number_stages(self.fmt, self.kind == "integer")]
        if self.kind == "date":
            return [clean_text, _date_prep, lambda x: f"CAST({_date_build(x, self.fmt)} AS DATE)"]
        return [clean_text, _date_prep, lambda x: _date_build(x, self.fmt)]


@dataclass(frozen=True)
class _TypeOptions:
    min_rate: float
    columns: list[str] | None
    date_order: str


def type_fixer(ctx: AgentContext) -> AgentResult:
    """Convert text columns holding numbers, dates or booleans to those types."""
    schemas = _schemas(ctx)
    p = parse_params("type-fixer", TypeFixerParams, ctx.params)
    check_columns("type-fixer", "columns", p.columns or (), known_columns(schemas))
    opts = _TypeOptions(p.min_parse_rate, p.columns, p.date_order)
    echo = {"min_parse_rate": opts.min_rate, "columns": opts.columns, "date_order": opts.date_order}
    return _run(ctx, "type-fixer", schemas, echo, lambda job: _type_dataset(job, opts))


def _type_stats(job: _Job, sample: str, cols: Sequence[Col], opts: _TypeOptions) -> dict[int, dict[str, Any]]:
    """Sample counts deciding each column's type: cheap shape counts first, parses only where they may win."""
    exprs: dict[str, str] = {}
    for i in range(len(cols)):
        v, ns, d = f"__v{i}", f"__n{i}", f"__d{i}"
        exprs |= {
            f"{i}.nn": f"count({v})",
            f"{i}.lead0": f"count(*) FILTER (WHERE {_rx(ns, '^[+-]?0[0-9]')})",
        }
        exprs[f"{i}.bool"] = f"count(*) FILTER (WHERE {_one_of(f'lower({v})', _TRUE + _FALSE)})"
        exprs[f"{i}.numeric"] = f"count(*) FILTER (WHERE {_rx(ns, _NUMBER_SHAPE, full=True)})"
        shaped = f"{d}.n.y <> '' OR {d}.t.y <> '' OR {d}.c IS NOT NULL OR {_rx(v, _ISO_SHAPE)}"
        exprs[f"{i}.dated"] = f"count(*) FILTER (WHERE {shaped})"
        exprs[f"{i}.timed"] = f"count(*) FILTER (WHERE {_rx(v, '[0-9]:[0-5][0-9]')})"
        for j, sep in enumerate(_SEPARATORS):  # a part > 12 cannot be the month
            for order, part in (("dmy", "a"), ("mdy", "b")):
                where = f"{d}.n.sep = {qstr(sep)} AND TRY_CAST({d}.n.{part} AS INTEGER) > 12 AND {d}.n.y <> ''"
                exprs[f"{i}.{order}{j}"] = f"count(*) FILTER (WHERE {where})"
    frame = _frame(sample, cols, dates=True)
    stats = _by_column(_aggregate(job.con, frame, exprs))
    exprs = {}
    for i, s in stats.items():
        if _reaches(s["numeric"], s["nn"], opts.min_rate):
            exprs |= _number_stats(i, f"__v{i}", f"__n{i}")
        if _reaches(s["dated"], s["nn"], opts.min_rate):
            s["order"] = _date_order(s, opts)
            exprs[f"{i}.dates"] = f"count({_date_build(f'__d{i}', s['order'])})"
    for i, more in _by_column(_aggregate(job.con, frame, exprs)).items():
        stats[i] |= more
    return stats


def _date_order(stats: dict[str, Any], opts: _TypeOptions) -> str:
    """Day (``d``) or month (``m``) first for each of :data:`_SEPARATORS`: read from the values written
    with that separator, else from all numeric dates, else day first."""
    if opts.date_order != "auto":
        return opts.date_order[0] * len(_SEPARATORS)
    seps = range(len(_SEPARATORS))
    overall = "m" if sum(stats[f"mdy{j}"] for j in seps) > sum(stats[f"dmy{j}"] for j in seps) else "d"
    return "".join(
        "m" if stats[f"mdy{j}"] > stats[f"dmy{j}"] else "d" if stats[f"dmy{j}"] > stats[f"mdy{j}"] else overall
        for j in seps
    )


def _decide(stats: dict[str, Any], opts: _TypeOptions) -> tuple[_Conversion | None, dict[str, Any] | None]:
    """The conversion for one column (or None), and a note on the best candidate when it fell short."""
    nn = int(stats["nn"])
    if not nn:
        return None, None
    style = _number_style(stats) if "us_only" in stats else "us"
    numeric = 0 if stats["lead0"] else 1
    candidates = [
        ("boolean", "", int(stats["bool"])),
        ("integer", style, numeric * int(stats.get(f"i_{style}", 0))),
        ("double", style, numeric * int(stats.get(f"n_{style}", 0))),
        ("timestamp" if stats["timed"] else "date", stats.get("order", "ddd"), int(stats.get("dates", 0))),
    ]
    kind, fmt, count = max(candidates, key=lambda c: c[2])  # the first of equals wins
    if _reaches(count, nn, opts.min_rate):
        return _Conversion(kind, fmt, round(count / nn, 4)), None
    shapes = [  # parses were only tried where the shapes reached the rate: else the shapes estimate them
        ("boolean", int(stats["bool"])),
        ("number", int(stats.get("n_us", stats["numeric"])) if "us_only" in stats else int(stats["numeric"])),
        ("date", int(stats.get("dates", stats["dated"]))),
    ]
    best, count = max(shapes, key=lambda c: c[1])
    note: dict[str, Any] = {"best": best, "parse_rate": round(count / nn, 4)}
    if stats["lead0"]:
        note["leading_zeros"] = int(stats["lead0"])
    return None, (note if count else None)


def _before_after(src: str, col: Col, stages: list[Stage]) -> str:
    """``__before`` (the raw value) and ``__after`` (rewritten by ``stages``) of one column of ``src``."""
    inner = f"(SELECT {col.ident} AS __before, {col.ident} FROM {src})"
    return f"SELECT __before, {col.ident} AS __after FROM ({_layered(inner, {col.name: stages})})"


def _failures_sql(src: str, col: Col, conv: _Conversion) -> str:
    """Values that are not null-like yet do not convert."""
    both = _before_after(src, col, conv.stages())
    return f"SELECT __before FROM ({both}) WHERE __after IS NULL AND {clean_text('__before')} IS NOT NULL"


def _type_examples(job: _Job, sample: str, col: Col, conv: _Conversion) -> dict[str, Any]:
    both = _before_after(sample, col, conv.stages())
    changed = f"SELECT * FROM ({both}) WHERE __after IS NOT NULL AND __before <> CAST(__after AS VARCHAR)"
    return {
        "examples": _pairs(job.con, changed),
        "failed_examples": _values(job.con, _failures_sql(sample, col, conv)),
    }


def _type_dataset(job: _Job, opts: _TypeOptions) -> dict[str, Any]:
    targets = [c for c in job.cols if c.is_text and (opts.columns is None or c.name in opts.columns)]
    decided: dict[str, _Conversion] = {}
    notes: dict[str, Any] = {}
    examples: dict[str, Any] = {}
    if targets:
        job.report(0.0, "sampling")
        with job.sample(targets) as sample:
            stats = _type_stats(job, sample, targets, opts)
            for i, c in enumerate(targets):
                conv, note = _decide(stats[i], opts)
                if conv is not None:
                    decided[c.name] = conv
                    examples[c.name] = _type_examples(job, sample, c, conv)
                elif note is not None:
                    notes[c.name] = note
    job.report(0.3, "writing")
    rows = write_parquet(job.con, _layered(job.src, {n: conv.stages() for n, conv in decided.items()}), job.out)
    job.report(0.8, "counting")
    out: dict[str, Any] = {
        "rows": rows,
        "converted": _type_counts(job, decided, examples),
        "not_converted": notes,
    }
    if opts.columns is not None:
        out["missing_columns"] = _missing(job.cols, opts.columns)
    return out


def _type_counts(job: _Job, decided: dict[str, _Conversion], examples: dict[str, Any]) -> dict[str, Any]:
    """Per converted column: values converted, failed and null-like (input and output side by side)."""
    exprs: dict[str, str] = {}
    for i, name in enumerate(decided):
        before, after = f"i.{qident(name)}", f"o.{qident(name)}"
        exprs |= {
            f"{i}.all": f"count({before})",
            f"{i}.null_like": f"count(*) FILTER (WHERE {null_like(before)})",
        }
        exprs[f"{i}.converted"] = f"count({after})"
    stats = _by_column(_aggregate(job.con, job.paired, exprs))
    result: dict[str, Any] = {}
    for i, (name, conv) in enumerate(decided.items()):
        nn, converted = int(stats[i]["all"]) - int(stats[i]["null_like"]), int(stats[i]["converted"])
        entry: dict[str, Any] = {"from": "VARCHAR", "to": conv.sql_type, "format": conv.label}
        entry |= {"parse_rate": conv.rate, "converted": converted, "failed": nn - converted}
        entry |= {"null_like_to_null": int(stats[i]["null_like"]), "examples": examples[name]["examples"]}
        if nn > converted:  # the first few from the file when the sample had none
            col = Col(name, "VARCHAR")
            fails = examples[name]["failed_examples"] or _values(job.con, _failures_sql(job.src, col, conv))
            entry["failed_examples"] = fails
        result[name] = entry
    return result
