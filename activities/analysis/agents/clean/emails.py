"""The ``email-validator`` agent: e-mail columns validated, domains lower-cased, disposable domains flagged."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from activities.analysis.agents.base import AgentContext, AgentResult
from activities.analysis.agents.clean.params import EmailValidatorParams, _missing, check_columns, known_columns
from activities.analysis.agents.clean.running import _Job, _run, _schemas, _select_with
from activities.analysis.agents.clean.sql import (
    Col,
    _aggregate,
    _by_column,
    _pairs,
    _rx,
    _values,
    clean_text,
    write_parquet,
)
from activities.analysis.agents.params import parse_params
from activities.analysis.sql import qident

#: Built-in disposable e-mail domains (a subdomain of one counts too).
DISPOSABLE_DOMAINS: frozenset[str] = frozenset(
    """10minutemail.com 20minutemail.com burnermail.io discard.email dispostable.com emailondeck.com
    fakeinbox.com getairmail.com getnada.com guerrillamail.com guerrillamail.net guerrillamailblock.com
    mailcatch.com maildrop.cc mailinator.com mailnesia.com mintemail.com mohmal.com moakt.com mytemp.email
    sharklasers.com spamgourmet.com temp-mail.org tempail.com tempmail.com tempmailo.com tempr.email
    throwawaymail.com trashmail.com yopmail.com""".split()
)


_EMAIL = (
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


_EMAIL_SHAPE = r"[^@\s]+@[^@\s]+\.[^@\s]+"


_EMAIL_NAME = re.compile(r"e[-_ ]?mail", re.IGNORECASE)


@dataclass(frozen=True)
class _EmailOptions:
    columns: list[str] | None
    action: str
    disposable: frozenset[str]


def email_validator(ctx: AgentContext) -> AgentResult:
    """Validate e-mail columns, lower-case their domains and flag disposable domains."""
    schemas = _schemas(ctx)
    p = parse_params("email-validator", EmailValidatorParams, ctx.params)
    check_columns("email-validator", "columns", p.columns or (), known_columns(schemas))
    extra, columns, action = p.disposable_domains, p.columns, p.action
    opts = _EmailOptions(columns, action, DISPOSABLE_DOMAINS | {d.strip().lower() for d in extra})
    echo = {"columns": columns, "action": action, "disposable_domains": extra or None}
    return _run(ctx, "email-validator", schemas, echo, lambda job: _email_dataset(job, opts))


def _email_targets(job: _Job, opts: _EmailOptions) -> tuple[list[Col], dict[str, str]]:
    """The e-mail columns, and why named columns were skipped."""
    if opts.columns is not None:
        chosen = [c for c in job.cols if c.name in opts.columns]
        return [c for c in chosen if c.is_text], {c.name: f"not text ({c.type})" for c in chosen if not c.is_text}
    text = [c for c in job.cols if c.is_text]
    others = [c for c in text if not _EMAIL_NAME.search(c.name)]
    if not others:
        return text, {}
    with job.sample(others) as sample:
        exprs = {f"{i}.nn": f"count({clean_text(c.ident)})" for i, c in enumerate(others)}
        exprs |= {
            f"{i}.shaped": f"count(*) FILTER (WHERE {_rx(f'trim({c.ident})', _EMAIL_SHAPE, full=True)})"
            for i, c in enumerate(others)
        }
        stats = _by_column(_aggregate(job.con, sample, exprs))
    shaped = {c.name for i, c in enumerate(others) if stats[i]["nn"] and stats[i]["shaped"] * 2 >= stats[i]["nn"]}
    return [c for c in text if c not in others or c.name in shaped], {}


def _email_frame(job: _Job, cols: Sequence[Col], disposable: frozenset[str]) -> str:
    """The input plus, per e-mail column ``i``: trimmed value ``__t{i}``, validity ``__v{i}``, local part
    ``__l{i}``, domain as written ``__r{i}`` and lower-cased ``__d{i}``, and disposability ``__x{i}``."""
    cleaned = ", ".join(f"{clean_text(c.ident)} AS __t{i}" for i, c in enumerate(cols))
    parts, checks = [], []
    for i in range(len(cols)):
        t, at = f"__t{i}", f"strpos(__t{i}, '@')"
        parts += [f"left({t}, {at} - 1) AS __l{i}", f"substr({t}, {at} + 1) AS __r{i}"]
        ok = f"{_rx(t, _EMAIL, full=True)} AND strlen({t}) <= 254 AND {at} <= 65"
        checks += [f"CASE WHEN {t} IS NULL THEN NULL ELSE {ok} END AS __v{i}", f"lower(__r{i}) AS __d{i}"]
    # one regular expression, not a long IN list: DuckDB would plan that as a join, which loses row order
    listed = r"(?:[^@]*\.)?(?:" + "|".join(re.escape(d) for d in sorted(disposable)) + ")"
    flags = [f"CASE WHEN __v{i} THEN {_rx(f'__d{i}', listed, full=True)} END AS __x{i}" for i in range(len(cols))]
    inner = f"SELECT *, {', '.join(parts)} FROM (SELECT *, {cleaned} FROM {job.src})"
    return f"(SELECT *, {', '.join(flags)} FROM (SELECT *, {', '.join(checks)} FROM ({inner})))"


def _email_dataset(job: _Job, opts: _EmailOptions) -> dict[str, Any]:
    job.report(0.0, "finding e-mail columns")
    targets, notes = _email_targets(job, opts)
    added: dict[str, str] = {}
    for i, c in enumerate(targets):
        otherwise = f"WHEN NOT __v{i} THEN NULL " if opts.action == "null_invalid" else ""
        rewrite = f"__v{i} AND (__t{i} <> {c.ident} OR __r{i} <> __d{i})"  # else keep the value as it is
        added[c.name] = f"CASE WHEN {rewrite} THEN __l{i} || '@' || __d{i} {otherwise}ELSE {c.ident} END"
        added |= {f"{c.name}_valid": f"__v{i}", f"{c.name}_disposable": f"__x{i}"}
    job.report(0.2, "writing")
    source = _email_frame(job, targets, opts.disposable) if targets else job.src
    rows = write_parquet(job.con, f"SELECT {', '.join(_select_with(job.cols, added))} FROM {source}", job.out)
    job.report(0.6, "counting")
    out: dict[str, Any] = {"rows": rows, "columns": _email_counts(job, targets)}
    out["columns_added"] = [n for c in targets for n in (f"{c.name}_valid", f"{c.name}_disposable")]
    if notes:
        out["skipped"] = notes
    if opts.columns is not None:
        out["missing_columns"] = _missing(job.cols, opts.columns)
    return out


def _email_refs(col: Col) -> tuple[str, str, str, str]:
    """The raw value, the written value, validity and disposability of a column in :attr:`_Job.paired`."""
    flag = f"o.{qident(col.name + '_valid')}", f"o.{qident(col.name + '_disposable')}"
    return f"i.{col.ident}", f"o.{col.ident}", *flag


def _email_counts(job: _Job, cols: Sequence[Col]) -> dict[str, Any]:
    """Per e-mail column: values checked, valid, invalid, disposable and rewritten, with examples."""
    exprs: dict[str, str] = {}
    for i, c in enumerate(cols):
        raw, value, valid, disp = _email_refs(c)
        exprs |= {f"{i}.checked": f"count({valid})", f"{i}.valid": f"count(*) FILTER (WHERE {valid})"}
        exprs[f"{i}.invalid"] = f"count(*) FILTER (WHERE NOT {valid})"
        exprs[f"{i}.disposable"] = f"count(*) FILTER (WHERE {disp})"
        exprs[f"{i}.normalised"] = f"count(*) FILTER (WHERE {valid} AND {value} <> {raw})"
    stats = _by_column(_aggregate(job.con, job.paired, exprs))
    out: dict[str, Any] = {}
    for i, c in enumerate(cols):
        s: dict[str, Any] = {k: int(v) for k, v in stats[i].items()}
        raw, value, valid, disp = _email_refs(c)
        if s["invalid"]:
            s["invalid_examples"] = _values(job.con, f"SELECT {raw} FROM {job.paired} WHERE NOT {valid}")
        if s["normalised"]:
            changed = f"SELECT {raw}, {value} FROM {job.paired} WHERE {valid} AND {value} <> {raw}"
            s["normalised_examples"] = _pairs(job.con, changed)
        if s["disposable"]:
            domain = f"lower(split_part({value}, '@', 2))"
            top = f"SELECT {domain}, count(*) FROM {job.paired} WHERE {disp} GROUP BY 1"
            rows = job.con.execute(f"{top} ORDER BY 2 DESC, 1 LIMIT 5").fetchall()
            s["disposable_domains"] = {str(d): int(n) for d, n in rows}
        out[c.name] = s
    return out
