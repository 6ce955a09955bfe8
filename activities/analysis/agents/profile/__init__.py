"""The profile-my-data agents: column profiles, PII and quality risk, and drift between two files.

Every statistic is computed by DuckDB over ``read_parquet(...)``; only aggregated rows (one per query, or a
few top values) ever reach Python, so million-row files profile in seconds. Each agent writes its JSON file
under ``ctx.workdir`` and returns the same content as its summary (the profiler's summary keeps at most 5
top values per column, shortened). Each agent's params are a model in ``params`` (its field descriptions are
the reference, served by ``GET /api/tools``); a missing or null param takes its default; a bad or unknown one
raises ``BadInput(code="BAD_PARAMS")`` naming it.

``unified-profiler`` (output ``profile.json``)
    For each dataset of ``ctx.current`` and each column: storage type and inferred type, row count, SQL
    nulls, null-like strings (``''``, whitespace, ``NA``, ``N/A``, ``null``, ``None``, ``-``; compared
    case-insensitively after trimming) counted separately, unique count, top values, and the table's
    duplicate-row count (rows minus distinct rows). Numeric columns get min/max/mean/stddev (sample) and
    interpolated quantiles p05/p25/p50/p75/p95 (NaN/inf ignored); date columns get min/max; booleans their
    true/false counts. Text columns get string lengths (non-null-like values), parse rates and the share of
    values matching each pattern (email, phone, url, date, uuid, postal_code, credit_card, ip_address, ssn).
    A text column whose non-null-like values parse as boolean/integer/float/date/datetime at a rate of at
    least :data:`profiler.INFER_THRESHOLD` is reported as that type with ``parse_rate``, and its statistics are
    computed on the parsed values (integer-looking codes with leading zeros stay ``string``).
    Dates are read as ISO (``2024-01-31``) first, then day-first (``31/01/2024``), then month-first.

    Params: ``top_n`` (int, 1..100, default 5): how many top values to keep per column.

``score-risk`` (output ``risk.json``)
    Uses the ``unified-profiler`` summary from ``ctx.previous`` when it covers the dataset, else profiles.
    PII: each column gets a confidence per PII kind, ``1 - (1 - name_score) * (1 - value_share)``, where
    ``name_score`` is 0.6 when the column name hints at that kind (email, phone, ssn, person name, address,
    postal code, date of birth, ip, credit card, passport) and ``value_share`` is the share of values
    matching its pattern (times 0.4 for postal codes, whose pattern alone is weak); the best kind is
    reported when its confidence is > 0 and >= ``pii_threshold``.
    Quality: 100 minus deductions, floored at 0: per column null share (incl. null-like) >= 1% costs
    ``min(10, 20 * share)`` (all such columns together at most 40), null-like placeholders 1, a text column
    mixing numbers/dates (50%..<100% parse) and text 5 (at most 25 together), whitespace-padded values
    (>= 1%) 1, a constant column 2 (these two at most 20 together); duplicate rows cost
    ``min(20, 2 + 50 * share)``; no rows costs 100. A capped category is scaled down proportionally.
    Levels: good >= 90, fair >= 70, else poor.

    Params: ``pii_threshold`` (number, 0..1, default 0.5).

``drift-detector`` (output ``drift.json``)
    Compares the first two files of ``ctx.inputs`` (baseline, then current); fewer than two raise
    ``BadInput(code="DRIFT_NEEDS_TWO_FILES")``. Schema drift: columns added, removed, and type-changed
    (by type family: integer, float, boolean, date, datetime, string, other). For columns in both files:
    numeric and temporal (as epoch seconds) columns get PSI over the baseline's quantile bins, the exact
    two-sample KS statistic, Jensen-Shannon divergence (base 2) over the same bins, and the mean/stddev
    shift; categorical columns (text, boolean, other; null-like strings as null) get PSI and
    Jensen-Shannon over the baseline's top ``bins`` categories plus "other", and new/missing categories.
    Empty bins are floored at 0.0001 for PSI. Drift level by PSI: none < 0.1 <= low < 0.15 <= medium
    < 0.25 <= high. A type change makes a column at least medium (int/float, date/datetime) or high
    (anything else). The overall level is the highest column level; a removed column or an incompatible
    type change makes it high, an added column at least low.

    Params: ``bins`` (int, 2..100, default 10): quantile bins (numeric) and top categories (categorical).

Modules: ``profiler``, ``risk`` and ``drift`` hold the agents; ``column_stats`` the profiler's aggregate
queries; ``sql`` quoting, column types and query helpers; ``patterns`` the text patterns and null-like
values; ``params`` the params models; ``common`` progress, output files and JSON-safe values.
"""
