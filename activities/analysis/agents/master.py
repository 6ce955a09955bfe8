"""Master-my-data agents: candidate keys, entity matching across files, golden records.

The three agents run in this order; any prefix may run, and each computes what it needs when an earlier
one did not run. All heavy work is DuckDB SQL over the Parquet inputs; only candidate pairs from small
blocks reach Python (scored with rapidfuzz) and only matched pairs are clustered in Python (union-find).

``key-identifier`` (:func:`key_identifier`) - per dataset, candidate keys: single columns that are unique
(or nearly: uniqueness and null ratios are reported) and, when no column is unique, column pairs; ranked
to prefer id-like names, integer and short values, no nulls. Across datasets, join candidates: columns
with the same or similar names or overlapping (normalised, hash-sampled) value sets. Writes ``keys.json``
(the same as its summary). Params:

- ``min_uniqueness`` (number in [0, 1], default 0.95): least share of distinct values among non-null ones
  for a column (or pair) to be reported as a nearly-unique candidate key.
- ``max_null_ratio`` (number in [0, 1], default 0.05): most share of null/blank values a candidate may have.
- ``max_pair_columns`` (integer 2-30, default 10): when no single column is unique, how many of the most
  distinct columns are tried in pairs.
- ``min_overlap`` (number in [0, 1], default 0.5): least share of shared values (of the smaller value set)
  for two differently named columns to be reported as a join candidate.

``entity-matcher`` (:func:`entity_matcher`) - clusters records that describe the same entity across all
chained datasets (pairs within one dataset only when one dataset is given, unless ``within_sources`` says
otherwise). A pair matches when a normalised exact key agrees (emails lowercased and trimmed, phones as
their last ten digits, other keys lowercased; placeholder values such as "n/a" never match) or when, inside
a block of records sharing a name key (soundex of one name token + the other's initial, both soundex codes,
one token exactly + the other's first two letters, and those again with the address start), the fuzzy
score reaches ``threshold``: rapidfuzz ``token_sort_ratio`` of the names, or ``0.7 * name + 0.3 *
token_set_ratio`` of the addresses (street designators dropped) when both records have one; addresses
with different house numbers score 0. Matched pairs are clustered with union-find.
Returns the dataset ``matched``: ``source`` (dataset name), ``source_row`` (1-based row in it),
``cluster_id`` (1..clusters, in order of each cluster's first record) and the union of the input columns,
aligned by name (a data column called ``source``, ``source_row`` or ``cluster_id`` becomes
``<name>_original``). Writes ``match_report.json`` (the summary) and ``matches.csv`` (``left_source``,
``left_row``, ``right_source``, ``right_row``, ``rule`` = ``exact:<column>`` or ``fuzzy``, ``score``,
``cluster_id``; exact-key groups are listed as links to their first record). Params:

- ``match_keys`` (list of columns, default: the email-, phone- and national-id-like columns; generic ids
  such as ``id`` or ``customer_id`` are not used unless named, since files usually number rows apart).
- ``name_columns`` (list of columns joined in order, default: name-like columns; a full-name column is
  used where filled, first + last name otherwise, then a company name). An empty list turns fuzzy
  matching off.
- ``address_columns`` (list of columns, default: street-address-like columns; empty list: none).
- ``threshold`` (number in [0, 100], default 88): least fuzzy score for a match.
- ``max_block_size`` (integer 2-10000, default 50): name blocks and exact-key groups with more records
  are not compared (they are reported); a record in an oversized block is still compared in finer ones.
- ``within_sources`` (boolean, default true for one dataset, false for several): also match records of
  the same dataset with each other.

``golden-record-builder`` (:func:`golden_record_builder`) - one golden record per cluster of the matched
table (running the matcher first, with the matcher's params, when the chained data is not a matched
table). Returns the dataset ``golden_records`` (``cluster_id``, ``record_count``, ``sources`` - the
cluster's dataset names joined by "; " - and the columns) and writes ``golden_records.csv``. Text is
trimmed and blank text counts as missing; a column whose values differ within a cluster is a resolved
conflict (counted per column in the summary). Params:

- ``rule`` (one of ``most_frequent``, ``most_complete``, ``most_recent``, ``source_priority``; default
  ``source_priority`` when ``source_priority`` is given, else ``most_recent`` when ``recency_column`` is
  given, else ``most_frequent``): the survivorship rule for every column. ``most_frequent``: the most
  frequent non-null value (ties: the longest); ``most_complete``: the value of the record with the most
  filled columns; ``most_recent``: the value of the latest record by ``recency_column``;
  ``source_priority``: the value from the first dataset in ``source_priority`` that has one (datasets not
  listed come last; ties by recency when ``recency_column`` is given). Remaining ties go to the more
  frequent, then the longer, then the greater value, so results are deterministic.
- ``column_rules`` (object column -> rule): per-column overrides.
- ``recency_column`` (column): a date/time (or numeric) column; text is parsed as ISO, m/d/Y, d.m.Y dates.
- ``source_priority`` (list of dataset names, best first; a name may omit its extension).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
from rapidfuzz import fuzz, process

from activities.analysis.agents.base import AgentContext, AgentResult, Dataset
from conveyor.errors import BadInput

KEY_AGENT = "key-identifier"
MATCH_AGENT = "entity-matcher"
GOLDEN_AGENT = "golden-record-builder"

RULES = ("most_frequent", "most_complete", "most_recent", "source_priority")

Report = Callable[[float, str], None]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_NULLISH = ("", "null", "none", "n/a", "na", "nan", "nil", "-", "--", "?", "unknown")
_MATCH_COLUMNS = ("source", "source_row", "cluster_id")
_GOLDEN_COLUMNS = ("cluster_id", "record_count", "sources")
_SAMPLE_VALUES = 50_000
_SCORE_BATCH = 250_000
_ADDRESS_WEIGHT = 0.3
_MAX_LISTED = 50

# ----------------------------------------------------------------------------------------------------------
# Params
# ----------------------------------------------------------------------------------------------------------


def _bad(agent: str, message: str) -> BadInput:
    return BadInput(f"{agent}: {message}", code="BAD_PARAMS")


def _number_param(
    params: dict[str, Any], agent: str, key: str, default: float, lo: float, hi: float
) -> float:
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise _bad(agent, f"param {key!r} must be a number in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def _int_param(params: dict[str, Any], agent: str, key: str, default: int, lo: int, hi: int) -> int:
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _bad(agent, f"param {key!r} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _bool_param(params: dict[str, Any], agent: str, key: str, default: bool) -> bool:
    value = params.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _bad(agent, f"param {key!r} must be true or false, got {value!r}")
    return value


def _str_param(params: dict[str, Any], agent: str, key: str) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(agent, f"param {key!r} must be a non-empty string, got {value!r}")
    return value.strip()


def _str_list_param(params: dict[str, Any], agent: str, key: str) -> list[str] | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _bad(agent, f"param {key!r} must be a list of names, got {value!r}")
    return [v.strip() for v in value]


def _resolve_columns(agent: str, key: str, names: Sequence[str], lookup: dict[str, str]) -> list[str]:
    """Map user-given column names (case-insensitive) to actual ones; BAD_PARAMS for unknown ones."""
    resolved: list[str] = []
    for name in names:
        actual = lookup.get(name.lower())
        if actual is None:
            known = ", ".join(sorted(set(lookup.values()))[:30])
            raise _bad(agent, f"param {key!r} names unknown column {name!r}; columns: {known}")
        if actual not in resolved:
            resolved.append(actual)
    return resolved


# ----------------------------------------------------------------------------------------------------------
# SQL helpers
# ----------------------------------------------------------------------------------------------------------


def _q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    """A quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _parquet(path: Path, *, row_numbers: bool = False) -> str:
    extra = ", file_row_number = true" if row_numbers else ""
    return f"read_parquet({_lit(str(path))}{extra})"


def _schema(con: duckdb.DuckDBPyConnection, path: Path) -> list[tuple[str, str]]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {_parquet(path)}").fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    rows = con.execute(sql).fetchall()  # fetchall, not fetchone: it leaves no unfinished result behind
    if not rows:  # aggregate queries always return a row
        raise RuntimeError("query returned no row")
    return tuple(rows[0])


def _present(col_sql: str) -> str:
    """SQL predicate: the value is neither null nor blank."""
    return f"({col_sql} IS NOT NULL AND trim(CAST({col_sql} AS VARCHAR)) <> '')"


def _drop(con: duckdb.DuckDBPyConnection, tables: Sequence[str]) -> None:
    for table in tables:
        con.execute(f"DROP TABLE IF EXISTS {_q(table)}")


def _collapse_runs(expr: str, digits: str = "0123456") -> str:
    for d in digits:
        expr = f"regexp_replace({expr}, '{d}+', '{d}', 'g')"
    return expr


#: Street designators, dropped from addresses so that "12 Oak Street" and "12 oak st." compare equal.
_DESIGNATORS = (
    "street|st|avenue|ave|av|road|rd|drive|dr|boulevard|blvd|lane|ln|court|ct|place|pl|way|terrace|ter|"
    "highway|hwy|parkway|pkwy|circle|cir|square|sq"
)


_NULLISH_SQL = ", ".join(_lit(v) for v in _NULLISH)
_SOUNDEX_MAP = ("aeiouybfpvcgjkqsxzdtlmnrhw", "000000111122222222334556")
_MACROS = (
    f"__mm_nullish(s) AS CASE WHEN lower(trim(CAST(s AS VARCHAR))) IN ({_NULLISH_SQL}) THEN NULL "
    "ELSE trim(CAST(s AS VARCHAR)) END",
    # no nullif() in these: it repeats its argument, and nested macros would repeat the regexes many times
    "__mm_text(s) AS trim(regexp_replace(regexp_replace(lower(strip_accents(__mm_nullish(s))), "
    "'[''.`]', '', 'g'), '[^\\pL\\pN]+', ' ', 'g'))",
    "__mm_key(s) AS lower(__mm_nullish(s))",
    "__mm_email(s) AS CASE WHEN regexp_full_match(__mm_key(s), '[^@\\s]+@[^@\\s]+\\.[^@\\s]+') "
    "THEN __mm_key(s) END",
    "__mm_digits(s) AS regexp_replace(regexp_replace(lower(CAST(s AS VARCHAR)), "
    "'(x|ext|extension)\\.?\\s*[0-9]+\\s*$', ''), '[^0-9]', '', 'g')",
    "__mm_phone10(d) AS CASE WHEN length(replace(d, left(d, 1), '')) = 0 THEN NULL "
    "WHEN length(d) >= 10 THEN right(d, 10) WHEN length(d) >= 7 THEN d END",
    "__mm_phone(s) AS __mm_phone10(__mm_digits(s))",
    "__mm_address(s) AS trim(regexp_replace(regexp_replace(__mm_text(s), "
    f"'\\b({_DESIGNATORS})\\b', '', 'g'), ' +', ' ', 'g'))",
    "__mm_letters(w) AS regexp_replace(lower(strip_accents(w)), '[^a-z]', '', 'g')",
    "__mm_sxcode(w) AS "
    + _collapse_runs(
        f"(CASE WHEN left(w, 1) IN ('h', 'w') THEN '0' ELSE '' END"
        f" || translate(w, '{_SOUNDEX_MAP[0]}', '{_SOUNDEX_MAP[1]}'))"
    ),
    "__mm_soundex0(w) AS CASE WHEN w <> '' THEN upper(left(w, 1)) "
    "|| rpad(left(replace(substr(__mm_sxcode(w), 2), '0', ''), 3), 3, '0') END",
    "__mm_soundex(s) AS __mm_soundex0(__mm_letters(s))",
)


def _install_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Normalisation macros (text, email, phone, address, soundex) on this connection."""
    for macro in _MACROS:
        con.execute(f"CREATE OR REPLACE TEMP MACRO {macro}")


# ----------------------------------------------------------------------------------------------------------
# Column kinds (from names)
# ----------------------------------------------------------------------------------------------------------

_PHONE_TOKENS = {"phone", "telephone", "tel", "mobile", "cell", "cellphone", "fax", "msisdn"}
_NATURAL_ID_TOKENS = {"ssn", "tin", "vat", "ein", "npi", "passport", "uuid", "guid", "nino"}
_NATURAL_ID_PARTS = ("nationalid", "taxid", "socialsecurity", "taxnumber", "vatnumber")
_ID_TOKENS = {"id", "key", "code", "no", "num", "number", "uuid", "guid", "ref", "sku", "pk"}
_ID_ENTITIES = {"customer", "user", "client", "account", "order", "person", "contact", "member", "employee"}
_FIRST_NAMES = {"firstname", "fname", "givenname", "forename", "first"}
_LAST_NAMES = {"lastname", "lname", "surname", "familyname", "last"}
_FULL_NAMES = {
    "name",
    "fullname",
    "customername",
    "contactname",
    "clientname",
    "personname",
    "displayname",
    "membername",
    "accountname",
}
_ORG_NAMES = {"companyname", "company", "organization", "organisation", "businessname"}
_ADDRESS_TOKENS = {"address", "addr", "street", "address1", "address2", "addr1", "addr2", "line1", "line2"}
_NOT_ADDRESS_TOKENS = {"email", "mail", "ip", "mac", "web", "url"}


def _name_tokens(column: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", column)
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def _key_kind(column: str) -> str | None:
    """``email``, ``phone`` or ``natural_id`` when the column name says so."""
    tokens = _name_tokens(column)
    joined = "".join(tokens)
    if "email" in joined or "mail" in tokens:
        return "email"
    if "phone" in joined or _PHONE_TOKENS.intersection(tokens):
        return "phone"
    if _NATURAL_ID_TOKENS.intersection(tokens) or any(p in joined for p in _NATURAL_ID_PARTS):
        return "natural_id"
    return None


def _is_id_like(column: str) -> bool:
    tokens = _name_tokens(column)
    if not tokens:
        return False
    joined = "".join(tokens)
    entity_id = joined.endswith("id") and joined[:-2] in _ID_ENTITIES
    return tokens[-1] in _ID_TOKENS or entity_id


def _name_groups(columns: Sequence[str]) -> list[list[str]]:
    """Name-like columns as groups, best first: full names, first + last name together, company names."""

    def named(kinds: set[str]) -> list[str]:
        return [c for c in columns if "".join(_name_tokens(c)) in kinds]

    parts = named(_FIRST_NAMES) + named(_LAST_NAMES)
    return [[c] for c in named(_FULL_NAMES)] + ([parts] if parts else []) + [[c] for c in named(_ORG_NAMES)]


def _address_columns(columns: Sequence[str]) -> list[str]:
    found: list[str] = []
    for c in columns:
        tokens = set(_name_tokens(c))
        if tokens & _ADDRESS_TOKENS and not tokens & _NOT_ADDRESS_TOKENS and _key_kind(c) is None:
            found.append(c)
    return found


def _normalised(column_sql: str, kind: str | None) -> str:
    """SQL for the normalised key of a column of this kind."""
    if kind == "email":
        return f"__mm_email({column_sql})"
    if kind == "phone":
        return f"__mm_phone({column_sql})"
    return f"__mm_key({column_sql})"


def _labels(datasets: Sequence[Dataset]) -> list[str]:
    """Dataset names, made unique (``name#2`` for a repeated name)."""
    labels: list[str] = []
    for ds in datasets:
        label, n = ds.name, 1
        while label in labels:
            n += 1
            label = f"{ds.name}#{n}"
        labels.append(label)
    return labels


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


# ----------------------------------------------------------------------------------------------------------
# key-identifier
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _KeyParams:
    min_uniqueness: float
    max_null_ratio: float
    max_pair_columns: int
    min_overlap: float

    @classmethod
    def parse(cls, params: dict[str, Any]) -> _KeyParams:
        return cls(
            min_uniqueness=_number_param(params, KEY_AGENT, "min_uniqueness", 0.95, 0.0, 1.0),
            max_null_ratio=_number_param(params, KEY_AGENT, "max_null_ratio", 0.05, 0.0, 1.0),
            max_pair_columns=_int_param(params, KEY_AGENT, "max_pair_columns", 10, 2, 30),
            min_overlap=_number_param(params, KEY_AGENT, "min_overlap", 0.5, 0.0, 1.0),
        )


@dataclass(frozen=True)
class _ColumnStats:
    name: str
    type: str
    rows: int
    present: int
    distinct: int
    avg_len: float
    integer_like: bool

    @property
    def null_ratio(self) -> float:
        return 1.0 - self.present / self.rows if self.rows else 0.0

    @property
    def uniqueness(self) -> float:
        return self.distinct / self.present if self.present else 0.0

    @property
    def unique(self) -> bool:
        return self.rows > 0 and self.distinct == self.rows

    @property
    def short(self) -> float:
        return 1.0 if self.avg_len <= 12 else 12.0 / self.avg_len

    @property
    def joinable(self) -> bool:
        numeric = self.type.upper().startswith(("DOUBLE", "FLOAT", "REAL", "BOOLEAN"))
        return self.present > 0 and not numeric and self.avg_len <= 100


def _column_stats(con: duckdb.DuckDBPyConnection, ds: Dataset) -> list[_ColumnStats]:
    schema = _schema(con, ds.path)
    parts = ["count(*)"]
    for col, _ in schema:
        c, ok = _q(col), _present(_q(col))
        text = f"trim(CAST({c} AS VARCHAR))"
        parts += [
            f"count(*) FILTER (WHERE {ok})",
            f"count(DISTINCT {c}) FILTER (WHERE {ok})",
            f"coalesce(avg(length({text})) FILTER (WHERE {ok}), 0)",
            f"count(*) FILTER (WHERE {ok} AND regexp_full_match({text}, '[+-]?[0-9]{{1,18}}'))",
        ]
    row = _one(con, f"SELECT {', '.join(parts)} FROM {_parquet(ds.path)}")
    rows = int(row[0])
    stats: list[_ColumnStats] = []
    for i, (col, typ) in enumerate(schema):
        present, distinct, avg_len, ints = row[1 + 4 * i : 5 + 4 * i]
        stats.append(
            _ColumnStats(col, typ, rows, int(present), int(distinct), float(avg_len), 0 < present == ints)
        )
    return stats


def _single_candidate(s: _ColumnStats) -> dict[str, Any]:
    reasons = ["unique" if s.unique else "nearly_unique"]
    reasons += ["no_nulls"] if s.present == s.rows else []
    reasons += ["id_like_name"] if _is_id_like(s.name) else []
    reasons += ["integer_values"] if s.integer_like else []
    reasons += ["short_values"] if s.avg_len <= 12 else []
    score = (
        0.6 * s.uniqueness * (1 - s.null_ratio)
        + 0.2 * _is_id_like(s.name)
        + 0.1 * s.integer_like
        + 0.1 * s.short
    )
    return {
        "columns": [s.name],
        "unique": s.unique,
        "uniqueness": round(s.uniqueness, 4),
        "null_ratio": round(s.null_ratio, 4),
        "distinct": s.distinct,
        "score": round(score, 4),
        "reasons": reasons,
    }


def _pair_candidates(
    con: duckdb.DuckDBPyConnection, ds: Dataset, stats: list[_ColumnStats], p: _KeyParams
) -> list[dict[str, Any]]:
    """The smallest keys: column pairs, tried among the most distinct short columns."""
    rows = stats[0].rows if stats else 0
    usable = sorted((s for s in stats if s.joinable and s.distinct > 1), key=lambda s: -s.distinct)
    pairs = [
        (a, b) for a, b in combinations(usable[: p.max_pair_columns], 2) if a.distinct * b.distinct >= rows
    ]
    if not pairs:
        return []
    parts: list[str] = []
    for a, b in pairs:
        both = f"{_present(_q(a.name))} AND {_present(_q(b.name))}"
        parts += [
            f"count(DISTINCT ({_q(a.name)}, {_q(b.name)})) FILTER (WHERE {both})",
            f"count(*) FILTER (WHERE {both})",
        ]
    row = _one(con, f"SELECT {', '.join(parts)} FROM {_parquet(ds.path)}")
    found: list[dict[str, Any]] = []
    for i, (a, b) in enumerate(pairs):
        distinct, present = int(row[2 * i]), int(row[2 * i + 1])
        uniqueness = distinct / present if present else 0.0
        null_ratio = 1 - present / rows if rows else 0.0
        if uniqueness < p.min_uniqueness or null_ratio > p.max_null_ratio:
            continue
        id_like = (_is_id_like(a.name) + _is_id_like(b.name)) / 2
        score = 0.6 * uniqueness * (1 - null_ratio) + 0.2 * id_like + 0.05 * (a.integer_like + b.integer_like)
        score += 0.05 * (a.short + b.short) - 0.05
        unique = distinct == rows
        found.append(
            {
                "columns": [a.name, b.name],
                "unique": unique,
                "uniqueness": round(uniqueness, 4),
                "null_ratio": round(null_ratio, 4),
                "distinct": distinct,
                "score": round(score, 4),
                "reasons": ["unique" if unique else "nearly_unique", "column_pair"],
            }
        )
    return found


def _dataset_keys(
    con: duckdb.DuckDBPyConnection, label: str, ds: Dataset, stats: list[_ColumnStats], p: _KeyParams
) -> dict[str, Any]:
    singles = [
        _single_candidate(s)
        for s in stats
        if s.present and s.uniqueness >= p.min_uniqueness and s.null_ratio <= p.max_null_ratio
    ]
    pairs_checked = not any(s.unique for s in stats)
    pairs = _pair_candidates(con, ds, stats, p) if pairs_checked else []
    ranked = sorted(singles + pairs, key=lambda c: (-c["score"], len(c["columns"]), c["columns"]))[:10]
    return {
        "dataset": label,
        "rows": stats[0].rows if stats else 0,
        "columns": len(stats),
        "candidate_keys": ranked,
        "best_key": ranked[0]["columns"] if ranked else None,
        "pairs_checked": pairs_checked,
        "unique_columns": [s.name for s in stats if s.unique],
    }


def _value_samples(
    con: duckdb.DuckDBPyConnection, datasets: Sequence[Dataset], stats: list[list[_ColumnStats]]
) -> int:
    """Fill ``__mm_kv`` with a consistent hash sample of each column's normalised distinct values."""
    biggest = max((s.distinct for ss in stats for s in ss), default=0)
    modulus = max(1, math.ceil(biggest / _SAMPLE_VALUES))
    selects: list[str] = []
    for i, (ds, ss) in enumerate(zip(datasets, stats, strict=True)):
        cols = [(j, s) for j, s in enumerate(ss) if s.joinable]
        if not cols:
            continue
        exprs = ", ".join(f"{_normalised(_q(s.name), _key_kind(s.name))} AS {_q(str(j))}" for j, s in cols)
        names = ", ".join(_q(str(j)) for j, _ in cols)
        selects.append(
            f"SELECT {i} AS ds, CAST(col AS INTEGER) AS col, v "
            f"FROM (SELECT {exprs} FROM {_parquet(ds.path)}) UNPIVOT (v FOR col IN ({names}))"
        )
    con.execute("CREATE OR REPLACE TEMP TABLE __mm_kv (ds INTEGER, col INTEGER, v VARCHAR)")
    if selects:
        union = " UNION ALL ".join(selects)
        con.execute(
            f"INSERT INTO __mm_kv SELECT DISTINCT ds, col, v FROM ({union}) WHERE hash(v) % {modulus} = 0"
        )
    return modulus


def _same_name(a: str, b: str) -> bool:
    return "".join(_name_tokens(a)) == "".join(_name_tokens(b))


def _column_similarity(a: str, b: str) -> float:
    """How alike two column names are, 0-100 (``customer_email`` and ``email`` are alike)."""
    if _same_name(a, b):
        return 100.0
    ta, tb = " ".join(_name_tokens(a)), " ".join(_name_tokens(b))
    return max(fuzz.ratio(ta, tb), fuzz.token_set_ratio(ta, tb) if min(len(ta), len(tb)) >= 4 else 0.0)


def _relationship(a: _ColumnStats, b: _ColumnStats) -> str:
    left = "one" if a.distinct == a.present else "many"
    right = "one" if b.distinct == b.present else "many"
    return f"{left}-to-{right}"


def _join_candidates(
    con: duckdb.DuckDBPyConnection, labels: list[str], stats: list[list[_ColumnStats]], p: _KeyParams
) -> list[dict[str, Any]]:
    sizes = {
        (int(d), int(c)): int(n)
        for d, c, n in con.execute("SELECT ds, col, count(*) FROM __mm_kv GROUP BY ALL").fetchall()
    }
    shared = {
        (int(a), int(ac), int(b), int(bc)): int(n)
        for a, ac, b, bc, n in con.execute(
            "SELECT x.ds, x.col, y.ds, y.col, count(*) "
            "FROM __mm_kv x JOIN __mm_kv y ON x.v = y.v AND x.ds < y.ds GROUP BY ALL"
        ).fetchall()
    }
    found: list[dict[str, Any]] = []
    for i, j in combinations(range(len(labels)), 2):
        for ci, a in enumerate(stats[i]):
            for cj, b in enumerate(stats[j]):
                candidate = _join_candidate(
                    a, b, sizes.get((i, ci), 0), sizes.get((j, cj), 0), shared.get((i, ci, j, cj), 0), p
                )
                if candidate is not None:
                    found.append({"left_dataset": labels[i], "right_dataset": labels[j], **candidate})
    return sorted(found, key=lambda c: -c["score"])[:_MAX_LISTED]


def _join_candidate(
    a: _ColumnStats, b: _ColumnStats, size_a: int, size_b: int, shared: int, p: _KeyParams
) -> dict[str, Any] | None:
    similarity = _column_similarity(a.name, b.name)
    overlap = shared / min(size_a, size_b) if min(size_a, size_b) else 0.0
    same_name = _same_name(a.name, b.name)
    by_name = same_name or (similarity >= 80 and overlap > 0)
    by_values = overlap >= p.min_overlap and min(a.distinct, b.distinct) >= 20
    if not (by_name or by_values):
        return None
    reasons = (["same_name"] if same_name else ["similar_name"] if similarity >= 80 else []) + (
        ["value_overlap"] if overlap > 0 else []
    )
    return {
        "left_column": a.name,
        "right_column": b.name,
        "name_similarity": round(similarity, 1),
        "value_overlap": round(overlap, 4),
        "relationship": _relationship(a, b),
        "score": round(0.4 * similarity / 100 + 0.6 * overlap, 4),
        "reasons": reasons,
    }


def key_identifier(ctx: AgentContext) -> AgentResult:
    """Candidate keys (single columns, else pairs) per dataset, and columns shared across datasets."""
    started = time.monotonic()
    params = _KeyParams.parse(ctx.params)
    labels = _labels(ctx.current)
    _install_macros(ctx.con)
    stats: list[list[_ColumnStats]] = []
    datasets: list[dict[str, Any]] = []
    for i, (label, ds) in enumerate(zip(labels, ctx.current, strict=True)):
        ctx.report(0.8 * i / max(1, len(labels)), f"profiling columns of {label}")
        stats.append(_column_stats(ctx.con, ds))
        datasets.append(_dataset_keys(ctx.con, label, ds, stats[-1], params))
    joins: list[dict[str, Any]] = []
    sample_modulus = 1
    if len(labels) > 1:
        ctx.report(0.8, "comparing value sets across datasets")
        try:
            sample_modulus = _value_samples(ctx.con, ctx.current, stats)
            joins = _join_candidates(ctx.con, labels, stats, params)
        finally:
            _drop(ctx.con, ["__mm_kv"])
    summary: dict[str, Any] = {
        "datasets_count": len(labels),
        "keys_found": sum(1 for d in datasets if d["best_key"]),
        "join_candidates_count": len(joins),
        "datasets": datasets,
        "join_candidates": joins,
        "value_sample_rate": round(1 / sample_modulus, 4),
        "seconds": round(time.monotonic() - started, 3),
    }
    ctx.report(1.0, "keys identified")
    return AgentResult(summary=summary, files={"keys.json": _write_json(ctx.workdir / "keys.json", summary)})


# ----------------------------------------------------------------------------------------------------------
# entity-matcher: the union of the datasets
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Union:
    """The input datasets' columns aligned by name (case-insensitive), with their output names."""

    datasets: list[Dataset]
    labels: list[str]
    rows: list[int]
    columns: list[tuple[str, str]]
    """Output column name and type; differing types across datasets become VARCHAR."""
    sources: list[dict[str, tuple[str, str]]]
    """Per dataset: output name -> (actual column name, its type)."""
    lookup: dict[str, str]
    """Lowercased user-facing name (original or output) -> output name."""
    renamed: dict[str, str]

    @property
    def names(self) -> list[str]:
        return [c for c, _ in self.columns]


def _fresh_name(base: str, taken: set[str]) -> str:
    name, n = f"{base}_original", 1
    while name.lower() in taken:
        n += 1
        name = f"{base}_original{n}"
    return name


def _union(con: duckdb.DuckDBPyConnection, datasets: Sequence[Dataset]) -> _Union:
    """Align the datasets' columns by name; reserved output names in the data get an ``_original`` suffix."""
    out_of: dict[str, str] = {}
    types: dict[str, list[str]] = {}
    taken = set(_MATCH_COLUMNS)
    renamed: dict[str, str] = {}
    sources: list[dict[str, tuple[str, str]]] = []
    rows: list[int] = []
    for ds in datasets:
        mapping: dict[str, tuple[str, str]] = {}
        for col, typ in _schema(con, ds.path):
            low = col.lower()
            if low in out_of and out_of[low] in mapping:  # the same name twice in one file
                low = f"{low}\0{len(mapping)}"
            if low not in out_of:
                reserved = low in _MATCH_COLUMNS or low.startswith("__mm_") or low == "file_row_number"
                out = _fresh_name(col, taken | set(out_of)) if reserved or col.lower() in taken else col
                out_of[low], types[out] = out, []
                taken.add(out.lower())
                if out != col:
                    renamed[col] = out
            mapping[out_of[low]] = (col, typ)
            types[out_of[low]].append(typ)
        sources.append(mapping)
        rows.append(int(_one(con, f"SELECT count(*) FROM {_parquet(ds.path)}")[0]))
    columns = [(o, t[0] if len(set(t)) == 1 else "VARCHAR") for o, t in types.items()]
    lookup = {o.lower(): o for o, _ in columns}
    lookup.update({orig.lower(): out for orig, out in renamed.items()})
    return _Union(list(datasets), _labels(datasets), rows, columns, sources, lookup, renamed)


def _load_records(con: duckdb.DuckDBPyConnection, u: _Union) -> None:
    """``__mm_records``: every record with a global ``__mm_rid``, its dataset, source, row and columns."""
    selects: list[str] = []
    offset = 0
    for i, ds in enumerate(u.datasets):
        cols: list[str] = []
        for out, typ in u.columns:
            actual = u.sources[i].get(out)
            if actual is None:
                expr = f"CAST(NULL AS {typ})"
            else:
                expr = _q(actual[0]) if actual[1] == typ else f"CAST({_q(actual[0])} AS {typ})"
            cols.append(f"{expr} AS {_q(out)}")
        selects.append(
            f"SELECT CAST({offset} + file_row_number AS BIGINT) AS __mm_rid, {i} AS __mm_src, "
            f"{_lit(u.labels[i])} AS {_q('source')}, CAST(file_row_number + 1 AS BIGINT) AS source_row"
            + "".join(f", {c}" for c in cols)
            + f" FROM {_parquet(ds.path, row_numbers=True)}"
        )
        offset += u.rows[i]
    con.execute(f"CREATE OR REPLACE TEMP TABLE __mm_records AS {' UNION ALL '.join(selects)}")


# ----------------------------------------------------------------------------------------------------------
# entity-matcher: params
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MatchParams:
    match_keys: list[str]
    name_groups: list[list[str]]
    address_columns: list[str]
    threshold: float
    max_block_size: int
    within_sources: bool

    @property
    def name_columns(self) -> list[str]:
        return [c for g in self.name_groups for c in g]


def _match_params(params: dict[str, Any], u: _Union, agent: str) -> _MatchParams:
    keys = _str_list_param(params, agent, "match_keys")
    names = _str_list_param(params, agent, "name_columns")
    addresses = _str_list_param(params, agent, "address_columns")
    cols = u.names
    return _MatchParams(
        match_keys=(
            _resolve_columns(agent, "match_keys", keys, u.lookup)
            if keys is not None
            else [c for c in cols if _key_kind(c) is not None]
        ),
        name_groups=(
            ([_resolve_columns(agent, "name_columns", names, u.lookup)] if names else [])
            if names is not None
            else _name_groups(cols)
        ),
        address_columns=(
            _resolve_columns(agent, "address_columns", addresses, u.lookup)
            if addresses is not None
            else _address_columns(cols)
        ),
        threshold=_number_param(params, agent, "threshold", 88.0, 0.0, 100.0),
        max_block_size=_int_param(params, agent, "max_block_size", 50, 2, 10_000),
        within_sources=_bool_param(params, agent, "within_sources", len(u.datasets) == 1),
    )


# ----------------------------------------------------------------------------------------------------------
# entity-matcher: exact keys
# ----------------------------------------------------------------------------------------------------------


def _exact_pairs(
    con: duckdb.DuckDBPyConnection, column: str, priority: int, p: _MatchParams
) -> dict[str, Any]:
    """Link records whose normalised key agrees: each to its group's first record (of another dataset).

    Groups larger than ``max_block_size`` are skipped (usually placeholder values) and reported.
    """
    norm = _normalised(_q(column), _key_kind(column))
    sources = "" if p.within_sources else " AND mixed"
    con.execute(
        # no WHERE on the key: the filter would normalise every value twice (null keys never join anyway)
        f"CREATE OR REPLACE TEMP TABLE __mm_k AS SELECT __mm_rid AS rid, __mm_src AS src, {norm} AS key "
        "FROM __mm_records"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __mm_kg AS SELECT key, count(*) AS n, min(src) <> max(src) AS mixed, "
        "min(rid) AS a FROM __mm_k WHERE key IS NOT NULL GROUP BY key"
    )
    anchor = "g.a" if p.within_sources else "CASE WHEN k.src <> g.a_src THEN g.a ELSE g.a2 END"
    con.execute(
        f"""
        INSERT INTO __mm_pairs
        WITH ok AS (
            SELECT kg.key, kg.a, ka.src AS a_src FROM __mm_kg kg JOIN __mm_k ka ON ka.rid = kg.a
            WHERE kg.n BETWEEN 2 AND {p.max_block_size}{sources}
        ), g AS (
            SELECT ok.key, any_value(ok.a) AS a, any_value(ok.a_src) AS a_src,
                   min(k.rid) FILTER (WHERE k.src <> ok.a_src) AS a2
            FROM ok JOIN __mm_k k USING (key) GROUP BY ok.key
        )
        SELECT least({anchor}, k.rid), greatest({anchor}, k.rid), {_lit("exact:" + column)}, 100.0, {priority}
        FROM __mm_k k JOIN g USING (key) WHERE k.rid <> g.a
        """
    )
    big = con.execute(
        f"SELECT CAST(key AS VARCHAR), n FROM __mm_kg WHERE n > {p.max_block_size}{sources} "
        "ORDER BY n DESC, key"
    ).fetchall()
    _drop(con, ["__mm_k", "__mm_kg"])
    return {
        "oversized_groups": len(big),
        "records_in_oversized_groups": sum(int(n) for _, n in big),
        "oversized_samples": [{"value": str(v)[:60], "records": int(n)} for v, n in big[:3]],
    }


# ----------------------------------------------------------------------------------------------------------
# entity-matcher: blocking and fuzzy scoring
# ----------------------------------------------------------------------------------------------------------


def _name_sql(groups: list[list[str]]) -> str:
    """SQL for a record's normalised name: the first name group that is not blank ('' when none is)."""
    parts = [f"trim(concat_ws(' ', {', '.join(f'__mm_text({_q(c)})' for c in g)}))" for g in groups]
    return (
        parts[0]
        if len(parts) == 1
        else f"coalesce(list_filter([{', '.join(parts)}], lambda v: v <> '')[1], '')"
    )


def _address_sql(columns: list[str]) -> str:
    """SQL for a record's normalised address ('' when it has none)."""
    if not columns:
        return "''"
    return f"trim(concat_ws(' ', {', '.join(f'__mm_address({_q(c)})' for c in columns)}))"


def _block_keys(p: _MatchParams) -> str:
    """SQL list of a record's block keys, coarse to fine, from its first (``f``) and last (``l``) name tokens.

    ``a``: soundex of one token + the other's initial; ``b``: both soundex codes; ``d``: one token exactly +
    the other's first two letters (so one typo anywhere but the start still meets); with an address, the
    ``b``/``d`` keys again with the address start, for common names whose coarser blocks are too large.
    """
    keys = [
        "'a' || sl || left(f, 1)",
        "'a' || sf || left(l, 1)",
        "'b' || least(sf, sl) || greatest(sf, sl)",
        "'d' || f || '|' || left(l, 2)",
        "'d' || l || '|' || left(f, 2)",
    ]
    if p.address_columns:
        keys += [f"CASE WHEN ad <> '' THEN '+' || {k} || '|' || left(ad, 4) END" for k in keys[2:]]
    return f"list_distinct([{', '.join(keys)}])"


def _build_blocks(con: duckdb.DuckDBPyConnection, p: _MatchParams) -> dict[str, Any]:
    """Blocks of records sharing a name key; candidate pairs inside the small ones (``__mm_cand``).

    A record is in several blocks (see :func:`_block_keys`), so an oversized coarse block is covered by
    finer ones; blocks above ``max_block_size`` are not compared and are reported.
    """
    # two steps: a filter or a reused alias in the same SELECT would normalise the names twice
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __mm_names AS "
        f"SELECT __mm_rid AS rid, __mm_src AS src, {_name_sql(p.name_groups)} AS nm, "
        f"{_address_sql(p.address_columns)} AS ad FROM __mm_records"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __mm_names AS SELECT rid, src, nm, ad, "
        "regexp_extract(ad, '[0-9]+') AS an, string_split(nm, ' ')[1] AS f, string_split(nm, ' ')[-1] AS l "
        "FROM __mm_names WHERE nm <> ''"
    )
    # soundex once per distinct token: names repeat, and the code is the costly part
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __mm_sx AS SELECT tok, __mm_soundex(tok) AS sx FROM "
        "(SELECT f AS tok FROM __mm_names UNION SELECT l FROM __mm_names)"
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE __mm_bk AS
        SELECT * FROM (
            SELECT rid, src, unnest({_block_keys(p)}) AS bkey FROM (
                SELECT n.rid, n.src, n.f, n.l, n.ad, a.sx AS sf, b.sx AS sl
                FROM __mm_names n JOIN __mm_sx a ON a.tok = n.f JOIN __mm_sx b ON b.tok = n.l
            )
        ) WHERE bkey IS NOT NULL
        """
    )
    sources = "" if p.within_sources else " AND mixed"
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __mm_bs AS SELECT bkey, count(*) AS n, min(src) <> max(src) AS mixed "
        f"FROM __mm_bk GROUP BY bkey HAVING n >= 2{sources}"
    )
    cross = "" if p.within_sources else " AND x.src <> y.src"
    cap = p.max_block_size
    # pairs whose name lengths alone keep them under the threshold are dropped here (Indel bound), and so
    # are pairs whose house numbers differ when the name alone cannot reach it; a pair sharing several
    # blocks appears once per block (cheaper than DISTINCT; matches are grouped later)
    conflict = "x.an <> '' AND y.an <> '' AND x.an <> y.an"
    hopeless = f" AND NOT ({conflict})" if p.threshold > 100 * (1 - _ADDRESS_WEIGHT) else ""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE __mm_cand AS
        WITH b AS (
            SELECT rid, src, bkey FROM __mm_bk WHERE bkey IN (SELECT bkey FROM __mm_bs WHERE n <= {cap})
        ), pairs AS (
            SELECT x.rid AS l, y.rid AS r FROM b x JOIN b y ON x.bkey = y.bkey AND x.rid < y.rid{cross}
        )
        SELECT p.l, p.r, x.nm AS nl, y.nm AS nr, x.ad AS al, y.ad AS ar, x.ad <> '' AND y.ad <> '' AS ad2,
               {conflict} AS an_x
        FROM pairs p JOIN __mm_names x ON x.rid = p.l JOIN __mm_names y ON y.rid = p.r
        WHERE 200.0 * least(length(x.nm), length(y.nm)) / (length(x.nm) + length(y.nm)) >= CASE
            WHEN x.ad <> '' AND y.ad <> '' THEN {_name_floor(p.threshold)} ELSE {p.threshold} END{hopeless}
        """
    )
    return _block_stats(con, p)


def _block_stats(con: duckdb.DuckDBPyConnection, p: _MatchParams) -> dict[str, Any]:
    """Block counts; ``records_in_oversized_finest_blocks`` counts records some of whose possible partners
    went uncompared: they share a block of the finest kind (no finer fallback) that was too large."""
    cap = p.max_block_size
    finest = "bkey[1] = '+'" if p.address_columns else "bkey[1] IN ('b', 'd')"
    blocks, small, oversized, biggest = _one(
        con,
        f"SELECT count(*), count(*) FILTER (WHERE n <= {cap}), count(*) FILTER (WHERE n > {cap}), "
        "coalesce(max(n), 0) FROM __mm_bs",
    )
    (uncompared,) = _one(
        con,
        "SELECT count(DISTINCT rid) FROM __mm_bk "
        f"WHERE bkey IN (SELECT bkey FROM __mm_bs WHERE n > {cap} AND {finest})",
    )
    samples = con.execute(
        f"SELECT bkey, n FROM __mm_bs WHERE n > {cap} ORDER BY n DESC, bkey LIMIT 5"
    ).fetchall()
    (named,) = _one(con, "SELECT count(*) FROM __mm_names")
    (pairs,) = _one(con, "SELECT count(*) FROM __mm_cand")
    return {
        "records_with_names": int(named),
        "shared_blocks": int(blocks),
        "blocks_compared": int(small),
        "oversized_blocks": int(oversized),
        "largest_block": int(biggest),
        "records_in_oversized_finest_blocks": int(uncompared),
        "oversized_block_samples": [{"block": str(k), "records": int(n)} for k, n in samples],
        "candidate_pairs": int(pairs),
    }


def _name_floor(threshold: float) -> float:
    """The least name score that can still reach ``threshold`` once blended with an address score."""
    return max(0.0, (threshold - 100 * _ADDRESS_WEIGHT) / (1 - _ADDRESS_WEIGHT))


def _score_batch(got: dict[str, Any], threshold: float) -> FloatArray:
    """Fuzzy scores: name token_sort_ratio, blended with address token_set_ratio where both have one.

    Addresses whose house numbers differ score 0: same-named neighbours are not the same person.
    """
    floor = _name_floor(threshold)
    names: FloatArray = np.asarray(
        process.cpdist(
            got["nl"].tolist(),
            got["nr"].tolist(),
            scorer=fuzz.token_sort_ratio,
            score_cutoff=floor,
            workers=-1,
        ),
        dtype=np.float64,
    )
    both = np.asarray(got["ad2"], dtype=bool)
    score: FloatArray = np.where(both, 0.0, names)
    conflict = np.asarray(got["an_x"], dtype=bool)
    score[both & conflict] = (1 - _ADDRESS_WEIGHT) * names[both & conflict]
    need = both & ~conflict & (names >= floor)
    if need.any():
        left, right = got["al"][need].tolist(), got["ar"][need].tolist()
        addresses = np.asarray(
            process.cpdist(left, right, scorer=fuzz.token_set_ratio, workers=-1), dtype=np.float64
        )
        score[need] = (1 - _ADDRESS_WEIGHT) * names[need] + _ADDRESS_WEIGHT * addresses
    return score


def _fuzzy_pairs(con: duckdb.DuckDBPyConnection, p: _MatchParams, priority: int, report: Report) -> int:
    """Score the candidate pairs batch by batch; matches go to ``__mm_pairs``. Returns how many matched."""
    (pairs,) = _one(con, "SELECT count(*) FROM __mm_cand")
    batches = math.ceil(int(pairs) / _SCORE_BATCH)
    lefts: list[IntArray] = []
    rights: list[IntArray] = []
    scores: list[FloatArray] = []
    for batch in range(batches):
        report(batch / batches, f"scoring candidate pairs, batch {batch + 1} of {batches}")
        got = con.execute(
            "SELECT l, r, nl, nr, al, ar, ad2, an_x FROM __mm_cand "
            f"WHERE rowid >= {batch * _SCORE_BATCH} AND rowid < {(batch + 1) * _SCORE_BATCH}"
        ).fetchnumpy()
        score = _score_batch(got, p.threshold)
        keep = score >= p.threshold
        lefts.append(np.asarray(got["l"], dtype=np.int64)[keep])
        rights.append(np.asarray(got["r"], dtype=np.int64)[keep])
        scores.append(score[keep])
    if not lefts:
        return 0
    found = {"l": np.concatenate(lefts), "r": np.concatenate(rights), "score": np.concatenate(scores)}
    con.register("__mm_fuzzy", found)
    try:
        con.execute(
            f"INSERT INTO __mm_pairs SELECT l, r, 'fuzzy', round(score, 2), {priority} FROM __mm_fuzzy"
        )
        (matched,) = _one(con, "SELECT count(*) FROM (SELECT DISTINCT l, r FROM __mm_fuzzy)")
    finally:
        con.unregister("__mm_fuzzy")
    return int(matched)


# ----------------------------------------------------------------------------------------------------------
# entity-matcher: clusters and outputs
# ----------------------------------------------------------------------------------------------------------


def _components(lefts: list[int], rights: list[int]) -> dict[int, int]:
    """Union-find over the pairs: each linked record -> the smallest record id of its cluster."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for a, b in zip(lefts, rights, strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in list(parent)}


def _assign_clusters(con: duckdb.DuckDBPyConnection) -> None:
    """``__mm_cid``: a dense ``cluster_id`` per record, in order of each cluster's first record."""
    pairs = con.execute("SELECT l, r FROM __mm_final").fetchnumpy()
    reps = _components(pairs["l"].tolist(), pairs["r"].tolist())
    mapping = {
        "rid": np.fromiter(reps.keys(), dtype=np.int64, count=len(reps)),
        "rep": np.fromiter(reps.values(), dtype=np.int64, count=len(reps)),
    }
    con.register("__mm_map", mapping)
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE __mm_cid AS SELECT r.__mm_rid AS rid, "
            "CAST(dense_rank() OVER (ORDER BY coalesce(m.rep, r.__mm_rid)) AS BIGINT) AS cluster_id "
            "FROM __mm_records r LEFT JOIN __mm_map m ON m.rid = r.__mm_rid"
        )
    finally:
        con.unregister("__mm_map")


def _cluster_stats(con: duckdb.DuckDBPyConnection, p: _MatchParams) -> dict[str, Any]:
    clusters, multi, records, biggest = _one(
        con,
        "SELECT count(*), count(*) FILTER (WHERE n > 1), coalesce(sum(n) FILTER (WHERE n > 1), 0), "
        "coalesce(max(n), 0) FROM (SELECT cluster_id, count(*) AS n FROM __mm_cid GROUP BY cluster_id)",
    )
    shown = list(dict.fromkeys(p.match_keys + p.name_columns + p.address_columns))[:6]
    values = "".join(f", left(CAST({_q(c)} AS VARCHAR), 60) AS {_q(c)}" for c in shown)
    rows = con.execute(
        f"""
        WITH top AS (
            SELECT cluster_id, count(*) AS n FROM __mm_cid GROUP BY cluster_id HAVING n > 1
            ORDER BY n DESC, cluster_id LIMIT 5
        )
        SELECT c.cluster_id, r."source", r.source_row{values}
        FROM __mm_cid c JOIN top USING (cluster_id) JOIN __mm_records r ON r.__mm_rid = c.rid
        QUALIFY row_number() OVER (PARTITION BY c.cluster_id ORDER BY r.__mm_rid) <= 10
        ORDER BY top.n DESC, c.cluster_id, r.__mm_rid
        """
    ).fetchall()
    samples: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        record = {"source": row[1], "source_row": int(row[2]), **dict(zip(shown, row[3:], strict=True))}
        samples.setdefault(int(row[0]), []).append(record)
    return {
        "clusters": int(clusters),
        "multi_record_clusters": int(multi),
        "records_in_multi_record_clusters": int(records),
        "largest_cluster": int(biggest),
        "sample_clusters": [{"cluster_id": k, "records": v} for k, v in samples.items()],
    }


def _write_matched(con: duckdb.DuckDBPyConnection, u: _Union, workdir: Path) -> tuple[Path, Path]:
    matched, matches = workdir / "matched.parquet", workdir / "matches.csv"
    cols = "".join(f", r.{_q(c)}" for c in u.names)
    con.execute(
        f"COPY (SELECT r.{_q('source')}, r.source_row, c.cluster_id{cols} FROM __mm_records r "
        "JOIN __mm_cid c ON c.rid = r.__mm_rid ORDER BY c.cluster_id, r.__mm_rid) "
        f"TO {_lit(str(matched))} (FORMAT parquet)"
    )
    con.execute(
        f"""
        COPY (
            SELECT a."source" AS left_source, a.source_row AS left_row, b."source" AS right_source,
                   b.source_row AS right_row, p.rule, p.score, c.cluster_id
            FROM __mm_final p JOIN __mm_records a ON a.__mm_rid = p.l JOIN __mm_records b ON b.__mm_rid = p.r
            JOIN __mm_cid c ON c.rid = p.l ORDER BY c.cluster_id, p.l, p.r
        ) TO {_lit(str(matches))} (HEADER, DELIMITER ',')
        """
    )
    return matched, matches


_MATCH_TABLES = (
    "__mm_records",
    "__mm_sx",
    "__mm_pairs",
    "__mm_final",
    "__mm_names",
    "__mm_bk",
    "__mm_bs",
    "__mm_cand",
    "__mm_cid",
)


@dataclass(frozen=True)
class _Matched:
    summary: dict[str, Any]
    dataset: Dataset
    files: dict[str, Path]


class _Laps:
    """Seconds spent per stage, for the summary."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, stage: str) -> None:
        now = time.monotonic()
        self.seconds[stage] = round(now - self._last, 3)
        self._last = now


def _match(ctx: AgentContext, agent: str, report: Report) -> _Matched:
    """Run the whole matcher over ``ctx.current``; params are read (and reported) as ``agent``'s."""
    con = ctx.con
    u = _union(con, ctx.current)
    p = _match_params(ctx.params, u, agent)
    if not p.match_keys and not p.name_groups:
        raise BadInput(
            f"{agent}: found no email/phone/id-like or name-like columns to match on; "
            "pass match_keys or name_columns",
            code="NO_MATCH_COLUMNS",
        )
    _install_macros(con)
    try:
        return _match_steps(ctx, u, p, report)
    finally:
        _drop(con, _MATCH_TABLES)


def _find_pairs(
    con: duckdb.DuckDBPyConnection, p: _MatchParams, report: Report, laps: _Laps
) -> dict[str, Any]:
    """Fill ``__mm_pairs`` from the exact keys, then from fuzzy names in blocks; returns what was seen."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __mm_pairs "
        "(l BIGINT, r BIGINT, rule VARCHAR, score DOUBLE, prio INTEGER)"
    )
    exact: dict[str, Any] = {}
    for i, key in enumerate(p.match_keys):
        report(0.1 + 0.15 * i / len(p.match_keys), f"matching exact {key}")
        exact[key] = _exact_pairs(con, key, i, p)
    laps.lap("exact_keys")
    found: dict[str, Any] = {"exact_keys": exact, "blocking": {}, "fuzzy_pairs_matched": 0}
    if p.name_groups:
        report(0.25, "blocking on phonetic name keys")
        found["blocking"] = _build_blocks(con, p)
        laps.lap("blocking")
        scored = _fuzzy_pairs(con, p, len(p.match_keys), lambda f, m: report(0.3 + 0.5 * f, m))
        found["fuzzy_pairs_matched"] = scored
        laps.lap("fuzzy_scoring")
    return found


def _final_pairs(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """``__mm_final``: each matched pair once, under its first rule (exact keys in order, then fuzzy)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __mm_final AS SELECT l, r, arg_min(rule, prio) AS rule, "
        "arg_min(score, prio) AS score FROM __mm_pairs GROUP BY l, r"
    )
    rows = con.execute("SELECT rule, count(*) FROM __mm_final GROUP BY rule ORDER BY rule").fetchall()
    return {str(rule): int(n) for rule, n in rows}


def _match_steps(ctx: AgentContext, u: _Union, p: _MatchParams, report: Report) -> _Matched:
    laps = _Laps()
    report(0.02, f"loading {sum(u.rows)} records from {len(u.datasets)} datasets")
    _load_records(ctx.con, u)
    laps.lap("load")
    found = _find_pairs(ctx.con, p, report, laps)
    report(0.8, "clustering matched pairs")
    by_rule = _final_pairs(ctx.con)
    _assign_clusters(ctx.con)
    laps.lap("clustering")
    report(0.9, "writing the matched table")
    clusters = _cluster_stats(ctx.con, p)
    matched, matches = _write_matched(ctx.con, u, ctx.workdir)
    laps.lap("write")
    summary: dict[str, Any] = {
        "records": sum(u.rows),
        "datasets": dict(zip(u.labels, u.rows, strict=True)),
        "clusters": clusters.pop("clusters"),
        "matched_pairs": sum(by_rule.values()),
        **clusters,
        "pairs_by_rule": by_rule,
        "fuzzy_pairs_matched": found.pop("fuzzy_pairs_matched"),
        "match_keys": p.match_keys,
        "name_columns": p.name_columns,
        "address_columns": p.address_columns,
        "threshold": p.threshold,
        "max_block_size": p.max_block_size,
        "within_sources": p.within_sources,
        "renamed_columns": u.renamed,
        **found,
        "seconds": laps.seconds,
    }
    files = {
        "match_report.json": _write_json(ctx.workdir / "match_report.json", summary),
        "matches.csv": matches,
    }
    return _Matched(summary, Dataset("matched", matched), files)


def entity_matcher(ctx: AgentContext) -> AgentResult:
    """Cluster records describing the same entity (exact normalised keys, fuzzy names within blocks)."""
    result = _match(ctx, MATCH_AGENT, ctx.report)
    ctx.report(1.0, f"{result.summary['clusters']} clusters from {result.summary['records']} records")
    return AgentResult(summary=result.summary, current=[result.dataset], files=result.files)


# ----------------------------------------------------------------------------------------------------------
# golden-record-builder
# ----------------------------------------------------------------------------------------------------------

_ORDERINGS = {
    "most_frequent": "f, len, sv",
    "most_complete": "filled, len, f, sv",
    "most_recent": "rec, f, len, sv",
    "source_priority": "-pr, rec, f, len, sv",
}
_DATE_FORMATS = (
    "%Y-%m-%d",
    "%m/%d/%Y",
    "%d.%m.%Y",
    "%Y/%m/%d",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%d %b %Y",
)
_NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "DOUBLE",
    "DECIMAL",
)


@dataclass(frozen=True)
class _GoldenParams:
    rules: dict[str, str]
    recency_column: str | None
    source_priority: list[str]


def _rule_value(value: Any, key: str) -> str:
    if value not in RULES:
        raise _bad(GOLDEN_AGENT, f"param {key!r} must be one of {', '.join(RULES)}, got {value!r}")
    return str(value)


def _golden_params(params: dict[str, Any], columns: list[str]) -> _GoldenParams:
    lookup = {c.lower(): c for c in columns}
    recency = _str_param(params, GOLDEN_AGENT, "recency_column")
    recency_column = (
        _resolve_columns(GOLDEN_AGENT, "recency_column", [recency], lookup)[0] if recency else None
    )
    priority = _str_list_param(params, GOLDEN_AGENT, "source_priority") or []
    default = "source_priority" if priority else "most_recent" if recency_column else "most_frequent"
    rule = _rule_value(params["rule"], "rule") if params.get("rule") is not None else default
    overrides = params.get("column_rules") or {}
    if not isinstance(overrides, dict):
        raise _bad(
            GOLDEN_AGENT, f"param 'column_rules' must be an object of column -> rule, got {overrides!r}"
        )
    rules = dict.fromkeys(columns, rule)
    for name, value in overrides.items():
        (column,) = _resolve_columns(GOLDEN_AGENT, "column_rules", [str(name)], lookup)
        rules[column] = _rule_value(value, f"column_rules.{name}")
    if "most_recent" in rules.values() and recency_column is None:
        raise _bad(GOLDEN_AGENT, "rule 'most_recent' needs param 'recency_column'")
    if "source_priority" in rules.values() and not priority:
        raise _bad(GOLDEN_AGENT, "rule 'source_priority' needs param 'source_priority' (dataset names)")
    return _GoldenParams(rules, recency_column, priority)


def _resolve_sources(names: list[str], sources: list[str]) -> list[str]:
    """Match ``source_priority`` names to the datasets (exact, case-insensitive, or without extension)."""
    resolved: list[str] = []
    for name in names:
        low = name.lower()
        hits = [s for s in sources if s == name] or [
            s for s in sources if low in (s.lower(), Path(s).stem.lower(), s.split("#")[0].lower())
        ]
        if not hits:
            raise _bad(
                GOLDEN_AGENT,
                f"param 'source_priority' names unknown dataset {name!r}; datasets: {', '.join(sources)}",
            )
        resolved += [h for h in hits if h not in resolved]
    return resolved


def _is_matched(con: duckdb.DuckDBPyConnection, current: list[Dataset]) -> bool:
    if len(current) != 1:
        return False
    names = {c.lower() for c, _ in _schema(con, current[0].path)}
    return set(_MATCH_COLUMNS) <= names


def _recency_sql(column: str | None, typ: str) -> str:
    if column is None:
        return "CAST(NULL AS DOUBLE)"
    c = _q(column)
    upper = typ.upper()
    if upper.startswith(("DATE", "TIMESTAMP")):
        return f"epoch(CAST({c} AS TIMESTAMP))"
    if upper.startswith(_NUMERIC_TYPES):
        return f"CAST({c} AS DOUBLE)"
    formats = ", ".join(_lit(f) for f in _DATE_FORMATS)
    text = f"trim(CAST({c} AS VARCHAR))"
    return f"epoch(coalesce(TRY_CAST({text} AS TIMESTAMP), try_strptime({text}, [{formats}])))"


def _golden_value(column: str, typ: str) -> str:
    """A column as it enters survivorship: text trimmed, blank text as null."""
    c = _q(column)
    return f"nullif(trim({c}), '') AS {c}" if typ.upper() == "VARCHAR" else c


def _load_golden_base(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    schema: list[tuple[str, str]],
    gp: _GoldenParams,
    sources: list[str],
) -> dict[str, Any]:
    """``__mm_gbase``: the matched records with recency, source rank and filled-column count."""
    types = dict(schema)
    columns = list(gp.rules)
    ranks = " ".join(f"WHEN {_lit(s)} THEN {i}" for i, s in enumerate(sources))
    priority = f"CASE {_q('source')} {ranks} ELSE {len(sources)} END" if sources else "0"
    filled = " + ".join(f"CAST({_present(_q(c))} AS INTEGER)" for c in columns) or "0"
    recency = _recency_sql(gp.recency_column, types.get(gp.recency_column or "", "VARCHAR"))
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE __mm_gbase AS SELECT cluster_id, {_q('source')} AS __mm_source, "
        f"{recency} AS __mm_rec, {priority} AS __mm_prio, {filled} AS __mm_filled"
        + "".join(f", {_golden_value(c, types.get(c, ''))}" for c in columns)
        + f" FROM {_parquet(path)}"
    )
    if gp.recency_column is None:
        return {}
    present, parsed = _one(
        con,
        f"SELECT count(*) FILTER (WHERE {_present(_q(gp.recency_column))}), count(__mm_rec) FROM __mm_gbase",
    )
    if present and not parsed:
        raise _bad(
            GOLDEN_AGENT, f"param 'recency_column' names {gp.recency_column!r}, which has no parseable dates"
        )
    return {"recency_values_unparsed": int(present) - int(parsed)}


def _golden_sql(columns: list[str], rules: dict[str, str], names: dict[str, str]) -> str:
    """Golden records: a single record's cluster keeps its values; larger ones pick each column by its rule.

    Per column of a multi-record cluster: its distinct values with their frequency, length, latest recency,
    best source rank and most filled record, then ``arg_max`` by the rule's ordering; ``__mm_nv<i>`` counts
    the distinct values (more than one is a resolved conflict).
    """
    ctes = [
        "size AS (SELECT cluster_id, count(*) AS n FROM __mm_gbase GROUP BY cluster_id)",
        "multi AS (SELECT b.* FROM __mm_gbase b JOIN size USING (cluster_id) WHERE size.n > 1)",
        "base AS (SELECT cluster_id, CAST(count(*) AS BIGINT) AS record_count, "
        "string_agg(DISTINCT __mm_source, '; ' ORDER BY __mm_source) AS sources "
        "FROM multi GROUP BY cluster_id)",
    ]
    picks = ["base.cluster_id", "base.record_count", "base.sources"]
    single = ["b.cluster_id", "CAST(1 AS BIGINT) AS record_count", "b.__mm_source AS sources"]
    joins: list[str] = []
    for i, col in enumerate(columns):
        c = _q(col)
        ctes.append(
            f"v{i} AS (SELECT cluster_id, {c} AS v, count(*) AS f, length(CAST({c} AS VARCHAR)) AS len, "
            f"CAST({c} AS VARCHAR) AS sv, coalesce(max(__mm_rec), -1e300) AS rec, min(__mm_prio) AS pr, "
            f"max(__mm_filled) AS filled FROM multi WHERE {c} IS NOT NULL GROUP BY cluster_id, {c})"
        )
        ctes.append(
            f"g{i} AS (SELECT cluster_id, arg_max(v, ({_ORDERINGS[rules[col]]})) AS v, count(*) AS nv "
            f"FROM v{i} GROUP BY cluster_id)"
        )
        picks += [f"g{i}.v AS {_q(names[col])}", f"coalesce(g{i}.nv, 0) AS __mm_nv{i}"]
        single += [f"b.{c} AS {_q(names[col])}", f"0 AS __mm_nv{i}"]
        joins.append(f"LEFT JOIN g{i} USING (cluster_id)")
    return (
        f"WITH {', '.join(ctes)} SELECT {', '.join(picks)} FROM base {' '.join(joins)} "
        f"UNION ALL BY NAME SELECT {', '.join(single)} FROM __mm_gbase b JOIN size USING (cluster_id) "
        "WHERE size.n = 1"
    )


def _output_names(columns: list[str]) -> dict[str, str]:
    """Output names of the value columns, clear of ``cluster_id``, ``record_count`` and ``sources``."""
    taken = set(_GOLDEN_COLUMNS)
    names: dict[str, str] = {}
    for col in columns:
        name = _fresh_name(col, taken) if col.lower() in taken else col
        taken.add(name.lower())
        names[col] = name
    return names


def _build_golden(
    con: duckdb.DuckDBPyConnection, gp: _GoldenParams, workdir: Path
) -> tuple[dict[str, Any], Path, Path]:
    columns = list(gp.rules)
    names = _output_names(columns)
    con.execute(f"CREATE OR REPLACE TEMP TABLE __mm_gout AS {_golden_sql(columns, gp.rules, names)}")
    conflicts: dict[str, int] = {}
    if columns:
        counts = ", ".join(f"count(*) FILTER (WHERE __mm_nv{i} > 1)" for i in range(len(columns)))
        row = _one(con, f"SELECT {counts} FROM __mm_gout")
        conflicts = {names[c]: int(n) for c, n in zip(columns, row, strict=True) if n}
    parquet, csv = workdir / "golden_records.parquet", workdir / "golden_records.csv"
    select = ", ".join(_q(c) for c in [*_GOLDEN_COLUMNS, *names.values()])
    con.execute(
        f"COPY (SELECT {select} FROM __mm_gout ORDER BY cluster_id) TO {_lit(str(parquet))} (FORMAT parquet)"
    )
    con.execute(
        f"COPY (SELECT {select} FROM {_parquet(parquet)}) TO {_lit(str(csv))} (HEADER, DELIMITER ',')"
    )
    (clusters,) = _one(con, "SELECT count(*) FROM __mm_gout")
    stats = {
        "golden_records": int(clusters),
        "conflicts_resolved": sum(conflicts.values()),
        "conflicts_by_column": conflicts,
        "renamed_columns": {c: n for c, n in names.items() if c != n},
    }
    return stats, parquet, csv


def golden_record_builder(ctx: AgentContext) -> AgentResult:
    """One golden record per matched cluster, each column chosen by a survivorship rule."""
    started = time.monotonic()
    con = ctx.con
    inline = not _is_matched(con, ctx.current)
    if inline:
        u = _union(con, ctx.current)
        _match_params(ctx.params, u, GOLDEN_AGENT)  # fail fast on the matcher's params too
        columns = u.names
    else:
        columns = [c for c, _ in _schema(con, ctx.current[0].path) if c.lower() not in _MATCH_COLUMNS]
    gp = _golden_params(ctx.params, columns)
    files: dict[str, Path] = {}
    matching: dict[str, Any] | None = None
    matched = ctx.current[0]
    if inline:
        result = _match(ctx, GOLDEN_AGENT, lambda f, m: ctx.report(0.7 * f, m))
        matched, matching, files = result.dataset, result.summary, dict(result.files)
    ctx.report(0.75, "choosing surviving values")
    schema = _schema(con, matched.path)
    sources = [
        str(r[0])
        for r in con.execute(
            f"SELECT DISTINCT {_q('source')} FROM {_parquet(matched.path)} ORDER BY 1"
        ).fetchall()
    ]
    priority = _resolve_sources(gp.source_priority, sources)
    try:
        recency = _load_golden_base(con, matched.path, schema, gp, priority)
        (records,) = _one(con, "SELECT count(*) FROM __mm_gbase")
        stats, parquet, csv = _build_golden(con, gp, ctx.workdir)
    finally:
        _drop(con, ["__mm_gbase", "__mm_gout"])
    summary: dict[str, Any] = {
        "clusters": stats["golden_records"],
        "records_in": int(records),
        "golden_records": stats["golden_records"],
        "conflicts_resolved": stats["conflicts_resolved"],
        "matched_inline": inline,
        "rules": gp.rules,
        "conflicts_by_column": stats["conflicts_by_column"],
        "recency_column": gp.recency_column,
        "source_priority": priority,
        "renamed_columns": stats["renamed_columns"],
        **recency,
        "seconds": round(time.monotonic() - started, 3),
    }
    if matching is not None:
        summary["matching"] = {
            k: matching[k] for k in ("records", "clusters", "matched_pairs", "pairs_by_rule", "seconds")
        }
    files["golden_records.csv"] = csv
    ctx.report(1.0, f"{summary['golden_records']} golden records from {summary['records_in']} records")
    return AgentResult(summary=summary, current=[Dataset("golden_records", parquet)], files=files)
