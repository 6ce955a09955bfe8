"""Reading a reservoir sample: cleaned, number and date columns, and which text columns hold numbers."""

from __future__ import annotations

from collections.abc import Sequence

from activities.analysis.agents.clean.dates import _date_prep
from activities.analysis.agents.clean.numbers import _number_stats, _number_style, _numstr, _reaches
from activities.analysis.agents.clean.running import _Job
from activities.analysis.agents.clean.sql import Col, _aggregate, _by_column, clean_text


def _frame(sample: str, cols: Sequence[Col], dates: bool = False) -> str:
    """``sample`` with each column cleaned (``__v{i}``), as a number string (``__n{i}``) and, when
    ``dates``, prepared for date parsing (``__d{i}``)."""
    cleaned = ", ".join(f"{clean_text(c.ident)} AS __v{i}" for i, c in enumerate(cols))
    extra = [_numstr(f"__v{i}") + f" AS __n{i}" for i in range(len(cols))]
    extra += [_date_prep(f"__v{i}") + f" AS __d{i}" for i in range(len(cols)) if dates]
    return f"(SELECT *, {', '.join(extra)} FROM (SELECT *, {cleaned} FROM {sample}))"


def _numeric_text(job: _Job, cols: Sequence[Col]) -> dict[str, str]:
    """The text columns (of ``cols``) holding numbers (>= 90 % of values, no leading zeros), by style."""
    if not cols:
        return {}
    with job.sample(cols) as sample:
        exprs: dict[str, str] = {}
        for i in range(len(cols)):
            exprs |= {f"{i}.nn": f"count(__v{i})"} | _number_stats(i, f"__v{i}", f"__n{i}")
        stats = _by_column(_aggregate(job.con, _frame(sample, cols), exprs))
    out: dict[str, str] = {}
    for i, c in enumerate(cols):
        s, style = stats[i], _number_style(stats[i])
        if not s["lead0"] and _reaches(s[f"n_{style}"], s["nn"], 0.9):
            out[c.name] = style
    return out
