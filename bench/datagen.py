"""Generate large, messy customer CSV files for benchmarks and the ingest stress test.

Everything happens inside DuckDB: rows come from ``range(rows)`` and every "random" choice is a hash of
the row number, a per-column salt and the seed, so the output is deterministic and a million rows take a
few seconds. The mess mirrors ``samples/analysis/customers.csv``: names with case/spacing variations and
``Last, First`` forms (quoted, as they hold the delimiter), emails that are mixed case or invalid, phones
in several formats, dates in mixed formats, amounts with thousands separators and currency signs, country
spelling variants, null-likes (``''``, ``N/A``, ``-``, ``null``), exact and near-duplicate rows, rare outlier
amounts and, now and then, a note with an embedded quote or line break.

Usage: ``python -m bench.datagen OUT.csv --rows 1000000 [--seed 7]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

_FIRST = [
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Carlos",
    "Karen",
    "Ana",
    "Luis",
    "Sofia",
    "Mateo",
    "Chloe",
    "Lucas",
    "Emma",
    "Noah",
    "Olivia",
    "Liam",
    "Aisha",
    "Wei",
]
_LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
]
_DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "example.com", "hotmail.com", "acme.io"]
_COUNTRIES = [
    "USA",
    "United States",
    "U.S.",
    "us",
    "United States of America",
    "Germany",
    "DE",
    "Deutschland",
    "germany ",
    "France",
    "FR",
    "france",
    "United Kingdom",
    "UK",
    "U.K.",
    "Great Britain",
    "Spain",
    "España",
    "Canada",
    "CA",
    "canada",
    "Mexico",
    "México",
]
_STATUSES = ["active", "Active", "ACTIVE", "inactive", "churned", "Churned", "trial", "pending", "N/A", ""]
_NOTES = [
    "",
    "",
    "",
    "VIP",
    "call back",
    "prefers email",
    "moved, new address pending",
    "N/A",
    "-",
    'said "no thanks"',
    "duplicate?",
    "check spelling",
]


def _sql_list(values: list[str]) -> str:
    """A DuckDB list literal of strings."""
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def _pick(values: list[str], salt: str, row: str = "src") -> str:
    """A SQL expression choosing one of ``values`` by a hash of the row and a salt."""
    return f"{_sql_list(values)}[1 + (hash({row}, '{salt}', $seed) % {len(values)})::INTEGER]"


def _h(salt: str, mod: int, row: str = "src") -> str:
    """A SQL expression for a pseudo-random integer in ``[0, mod)``."""
    return f"(hash({row}, '{salt}', $seed) % {mod})::BIGINT"


def _query() -> str:
    """The SELECT producing the messy rows (parameter ``$rows`` and ``$seed``)."""
    first, last = _pick(_FIRST, "first"), _pick(_LAST, "last")
    nullish = f"{_sql_list(['', 'N/A', '-', 'null'])}[1 + {_h('nullkind', 4)}::INTEGER]"
    return f"""
    WITH base AS (
        SELECT i,
               CASE WHEN i > 0 AND {_h("dup", 40, "i")} < 2 THEN i - 1 ELSE i END AS src,
               CASE WHEN {_h("dup", 40, "i")} = 1 THEN i ELSE src END AS fmt
        FROM range($rows) t(i)
    ), parts AS (
        SELECT i, src, fmt, {first} AS fn, {last} AS ln,
               {_h("day", 1800)} AS dd, {_h("amt", 500000)} AS cents,
               {_h("ph", 10000000)} AS ph, ({_h("area", 800)} + 200)::VARCHAR AS area,
               lpad((ph // 10000)::VARCHAR, 3, '0') AS p3, lpad((ph % 10000)::VARCHAR, 4, '0') AS p4,
               {_pick(_DOMAINS, "dom")} AS dom
        FROM base
    )
    SELECT
        CASE WHEN {_h("idfmt", 10)} = 0 THEN 'C-' || lpad(src::VARCHAR, 7, '0')
             ELSE (100000 + src)::VARCHAR END AS customer_id,
        CASE {_h("namefmt", 8, "fmt")}
            WHEN 0 THEN upper(fn || ' ' || ln)
            WHEN 1 THEN lower(fn || ' ' || ln)
            WHEN 2 THEN '  ' || fn || '  ' || ln || ' '
            WHEN 3 THEN ln || ', ' || fn
            WHEN 4 THEN fn || ' ' || left(ln, -1)
            ELSE fn || ' ' || ln END AS full_name,
        CASE {_h("mailfmt", 20)}
            WHEN 0 THEN lower(fn) || '.' || lower(ln) || '@@' || dom
            WHEN 1 THEN lower(fn) || lower(ln) || '.' || dom
            WHEN 2 THEN {nullish}
            WHEN 3 THEN fn || '.' || ln || '@' || upper(dom)
            ELSE lower(fn) || '.' || lower(ln) || src::VARCHAR || '@' || dom END AS email,
        CASE {_h("phfmt", 6)}
            WHEN 0 THEN '(' || area || ') ' || p3 || '-' || p4
            WHEN 1 THEN area || '-' || p3 || '-' || p4
            WHEN 2 THEN '+1 ' || area || ' ' || p3 || p4
            WHEN 3 THEN area || p3 || p4
            WHEN 4 THEN area || '.' || p3 || '.' || p4
            ELSE {nullish} END AS phone,
        CASE {_h("datefmt", 6)}
            WHEN 0 THEN strftime(DATE '2020-01-01' + dd::INTEGER, '%m/%d/%Y')
            WHEN 1 THEN strftime(DATE '2020-01-01' + dd::INTEGER, '%d.%m.%Y')
            WHEN 2 THEN strftime(DATE '2020-01-01' + dd::INTEGER, '%b %-d, %Y')
            WHEN 3 THEN strftime(DATE '2020-01-01' + dd::INTEGER, '%Y%m%d')
            ELSE strftime(DATE '2020-01-01' + dd::INTEGER, '%Y-%m-%d') END AS signup_date,
        {_pick(_COUNTRIES, "country")} AS country,
        CASE WHEN {_h("outlier", 5000)} = 0 THEN '9,999,999.00'
             ELSE CASE {_h("amtfmt", 6)}
                 WHEN 0 THEN '$' || format('{{:,.2f}}', cents / 100.0)
                 WHEN 1 THEN format('{{:,.2f}}', cents / 100.0)
                 WHEN 2 THEN 'USD ' || printf('%.2f', cents / 100.0)
                 WHEN 3 THEN {nullish}
                 ELSE printf('%.2f', cents / 100.0) END END AS amount,
        ({_h("orders", 40)})::VARCHAR AS orders,
        {_pick(_STATUSES, "status")} AS status,
        CASE WHEN {_h("nl", 2000, "fmt")} = 0 THEN 'line one' || chr(10) || 'line two'
             ELSE {_pick(_NOTES, "note", "fmt")} END AS notes
    FROM parts
    ORDER BY i
    """


def write_messy_csv(path: Path, rows: int, seed: int = 7) -> None:
    """Write ``rows`` rows of messy customer data to ``path`` as a comma-delimited CSV with a header."""
    if rows < 0:
        raise ValueError("rows must be >= 0")
    target = "'" + str(path).replace("'", "''") + "'"
    with duckdb.connect() as con:
        con.execute(
            f"COPY ({_query()}) TO {target} (FORMAT csv, HEADER, DELIMITER ',')",
            {"rows": rows, "seed": seed},
        )


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: ``python -m bench.datagen OUT.csv --rows N``."""
    parser = argparse.ArgumentParser(description="Generate a large messy customer CSV.")
    parser.add_argument("out", type=Path, help="the CSV file to write")
    parser.add_argument("--rows", type=int, default=1_000_000, help="number of data rows")
    parser.add_argument("--seed", type=int, default=7, help="seed of the pseudo-random choices")
    args = parser.parse_args(argv)
    write_messy_csv(args.out, args.rows, args.seed)
    sys.stdout.write(f"wrote {args.rows} rows to {args.out} ({args.out.stat().st_size} bytes)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
