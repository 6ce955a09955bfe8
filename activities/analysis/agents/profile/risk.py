"""The ``score-risk`` agent: PII columns by name and value patterns, and a quality score; writes ``risk.json``."""

from __future__ import annotations

import re
from typing import Any

from activities.analysis.agents.base import AgentContext, AgentResult
from activities.analysis.agents.common import jsonable
from activities.analysis.agents.common import unique_names as _unique_names
from activities.analysis.agents.params import parse_params
from activities.analysis.agents.profile.common import _scaled, _write_json
from activities.analysis.agents.profile.params import ScoreRiskParams
from activities.analysis.agents.profile.profiler import _profile_dataset

NAME_HINT_SCORE = 0.6

#: PII kinds by column-name hint: a regex over the name's lower-case tokens joined by "_".
_NAME_HINTS: tuple[tuple[str, str], ...] = (
    ("email", r"(^|_)(e_?mail|mail)(_|$)|email"),
    ("phone", r"(^|_)(phone|mobile|cell|tel|telephone|fax|msisdn)(_|$)|phone"),
    ("ssn", r"(^|_)(ssn|sin|nino|social_security|national_id|tax_id|tin)(_|$)|socialsecurity"),
    ("credit_card", r"(^|_)(cc|card|pan|ccnum|cc_number|card_number)(_|$)|creditcard"),
    ("ip_address", r"(^|_)ip(_|$)|(^|_)ip_?addr|ipaddress"),
    ("date_of_birth", r"(^|_)(dob|born|birthday|birthdate)(_|$)|birth"),
    ("passport", r"passport"),
    ("postal_code", r"(^|_)(zip|zipcode|zip_code|postcode|post_code|postal|postal_code)(_|$)"),
    ("address", r"(^|_)(address|addr|street|address_line)(_|$)|address"),
    ("person_name", r"(^|_)(name|first_name|last_name|full_name|given_name|family_name|middle_name)(_|$)"),
    ("person_name", r"(^|_)(firstname|lastname|fullname|surname|forename|givenname|maiden_name)(_|$)"),
)
#: Name qualifiers that make a "*_name" column something other than a person's name.
_NOT_PERSON = frozenset(
    "product company file table column host domain brand item category city country street business org "
    "organization organisation store shop app project display model device dataset event team group "
    "account bank field server campaign database schema class type tag sheet".split()
)
#: Value pattern that evidences each PII kind.
_KIND_PATTERN: dict[str, str] = {
    "email": "email", "phone": "phone", "ssn": "ssn", "credit_card": "credit_card",
    "ip_address": "ip_address", "postal_code": "postal_code",
}  # fmt: skip
#: Weight of value evidence for kinds whose pattern alone is weak (any 5-digit code looks like a ZIP code).
_VALUE_WEIGHT: dict[str, float] = {"postal_code": 0.4}


def _name_tokens(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def _name_hints(name: str) -> set[str]:
    """PII kinds the column name hints at."""
    tokens = _name_tokens(name)
    joined = "_".join(tokens)
    kinds = {kind for kind, pattern in _NAME_HINTS if re.search(pattern, joined)}
    if "person_name" in kinds and _NOT_PERSON.intersection(tokens):
        kinds.discard("person_name")
    if "ip_address" in kinds:
        kinds.discard("address")
    if "email" in kinds:
        kinds.discard("address")
    return kinds


def _pii_finding(column: str, prof: dict[str, Any], threshold: float) -> dict[str, Any] | None:
    """The most likely PII kind of a column, or None when below the threshold."""
    hints = _name_hints(column)
    patterns: dict[str, float] = prof.get("patterns") or {}
    best: tuple[float, str, list[str]] | None = None
    for kind in dict.fromkeys([*_KIND_PATTERN, *sorted(hints)]):
        name_score = NAME_HINT_SCORE if kind in hints else 0.0
        value_share = float(patterns.get(_KIND_PATTERN.get(kind, ""), 0.0))
        confidence = 1 - (1 - name_score) * (1 - value_share * _VALUE_WEIGHT.get(kind, 1.0))
        evidence = []
        if name_score:
            evidence.append(f"column name suggests {kind.replace('_', ' ')}")
        if value_share:
            evidence.append(f"{value_share * 100:.1f}% of values look like {_KIND_PATTERN[kind].replace('_', ' ')}")
        if confidence > 0 and (best is None or confidence > best[0]):
            best = (confidence, kind, evidence)
    if best is None or best[0] < threshold:
        return None
    return {"column": column, "kind": best[1], "confidence": round(best[0], 3), "evidence": best[2]}


def _deduction(reason: str, points: float, column: str | None = None) -> dict[str, Any]:
    return {"reason": reason, "deduction": round(float(points), 1), "column": column}


def _null_deductions(column: str, prof: dict[str, Any], rows: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    missing = int(prof.get("null_count", 0)) + int(prof.get("null_like_count", 0))
    share = missing / rows if rows else 0.0
    if share >= 0.01:
        what = f"is empty ({share * 100:.1f}% null)" if share >= 1 else f"is {share * 100:.1f}% null"
        like = int(prof.get("null_like_count", 0))
        extra = f" (incl. {like} null-like strings)" if like else ""
        out.append(_deduction(f"column {column!r} {what}{extra}", min(10.0, 20 * share), column))
    placeholders = [v for v in (prof.get("null_like_values") or {}) if v.strip()]
    if placeholders:
        shown = ", ".join(repr(v) for v in placeholders[:3])
        out.append(_deduction(f"column {column!r} encodes missing values as text ({shown})", 1.0, column))
    return out


def _mixed_deduction(column: str, prof: dict[str, Any]) -> dict[str, Any] | None:
    rates: dict[str, float] = prof.get("parse_rates") or {}
    number = float(rates.get("number", 0.0))
    dates = float(rates.get("date", 0.0)) + float(rates.get("datetime", 0.0))
    rate, what = max((number, "numbers"), (dates, "dates"))
    if 0.5 <= rate < 1:
        label = "numeric" if what == "numbers" else "dates"
        return _deduction(f"column {column!r} mixes {what} and text ({rate * 100:.1f}% {label})", 5.0, column)
    return None


def _column_deductions(column: str, prof: dict[str, Any], rows: int) -> dict[str, list[dict[str, Any]]]:
    """This column's deductions, grouped by capped category."""
    groups: dict[str, list[dict[str, Any]]] = {"nulls": _null_deductions(column, prof, rows), "mixed": []}
    mixed = _mixed_deduction(column, prof)
    if mixed:
        groups["mixed"].append(mixed)
    other: list[dict[str, Any]] = []
    padded = int(prof.get("padded_count", 0))
    if rows and padded / rows >= 0.01:
        other.append(_deduction(f"column {column!r} has {padded} values with leading/trailing spaces", 1, column))
    if rows > 1 and int(prof.get("unique_count", 0)) == 1 and int(prof.get("null_count", 0)) == 0:
        other.append(_deduction(f"column {column!r} has a single value", 2.0, column))
    groups["other"] = other
    return groups


_CAPS: dict[str, float] = {"nulls": 40.0, "mixed": 25.0, "other": 20.0}


def _quality(ds: dict[str, Any]) -> dict[str, Any]:
    """Quality score 0..100 of a profiled dataset, with the reasons and their deductions."""
    rows = int(ds["rows"])
    if rows == 0:
        reasons = [_deduction("dataset has no rows", 100.0)]
    else:
        grouped: dict[str, list[dict[str, Any]]] = {k: [] for k in _CAPS}
        for column, prof in ds["columns"].items():
            for key, items in _column_deductions(column, prof, rows).items():
                grouped[key] += items
        reasons = []
        for key, items in grouped.items():
            total = sum(d["deduction"] for d in items)
            if total > _CAPS[key]:  # scale the category down to its cap
                for d in items:
                    d["deduction"] = round(d["deduction"] * _CAPS[key] / total, 1)
            reasons += items
        dups = int(ds.get("duplicate_rows", 0))
        if dups:
            points = min(20.0, 2 + 50 * dups / rows)
            noun = "row" if dups == 1 else "rows"
            reasons.append(_deduction(f"{dups} duplicate {noun} ({dups / rows * 100:.1f}%)", points))
    score = round(max(0.0, 100 - sum(d["deduction"] for d in reasons)), 1)
    level = "good" if score >= 90 else "fair" if score >= 70 else "poor"
    return {"quality_score": score, "quality_level": level, "reasons": reasons}


def _profiles_for_risk(ctx: AgentContext) -> tuple[dict[str, Any], str]:
    """Dataset profiles from the profiler's summary where it covers them; the rest profiled here."""
    previous = ctx.previous.get("unified-profiler") or {}
    known = previous.get("datasets") if not previous.get("truncated") else None
    known = known if isinstance(known, dict) else {}
    names = _unique_names(ctx.current)
    out: dict[str, Any] = {}
    own = 0
    for k, (name, ds) in enumerate(zip(names, ctx.current, strict=True)):
        prof = known.get(name)
        if isinstance(prof, dict) and isinstance(prof.get("columns"), dict):
            out[name] = prof
        else:
            report = _scaled(ctx.report, 0.8 * k / len(names), 0.8 * (k + 1) / len(names))
            out[name] = jsonable(_profile_dataset(ctx.con, ds, 1, report))
            own += 1
    source = "unified-profiler" if own == 0 else "own" if own == len(names) else "mixed"
    return out, source


def score_risk(ctx: AgentContext) -> AgentResult:
    """Find PII columns and score data quality per dataset; writes ``risk.json``."""
    threshold = parse_params("score-risk", ScoreRiskParams, ctx.params).pii_threshold
    ctx.report(0.0, "loading profiles")
    profiles, source = _profiles_for_risk(ctx)
    datasets: dict[str, Any] = {}
    for k, (name, ds) in enumerate(profiles.items()):
        ctx.report(0.8 + 0.15 * k / max(len(profiles), 1), f"{name}: scoring risk")
        pii = [f for col, prof in ds["columns"].items() if (f := _pii_finding(col, prof, threshold)) is not None]
        datasets[name] = {"rows": ds["rows"], **_quality(ds), "pii_columns": pii}
    result = jsonable(
        {
            "pii_threshold": threshold,
            "profile_source": source,
            "pii_column_count": sum(len(d["pii_columns"]) for d in datasets.values()),
            "datasets": datasets,
        }
    )
    path = _write_json(ctx.workdir, "risk.json", result)
    ctx.report(1.0, "risk written")
    return AgentResult(summary=result, files={"risk.json": path})
