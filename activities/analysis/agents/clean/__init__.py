"""The clean-my-data agents: six transforming agents that rewrite the chained datasets.

Each agent reads every dataset of ``ctx.current`` with DuckDB (``read_parquet``), writes one new Parquet file
per dataset under ``ctx.workdir`` with a single ``COPY (SELECT ...) TO`` (the dataset keeps its name and its
row order) and returns the new files as ``AgentResult.current``. Only aggregates, a reservoir sample of at
most :data:`running.SAMPLE_ROWS` rows (to detect types, number styles, date orders and e-mail columns), the distinct
values of low-cardinality columns and a few example rows reach Python, so million-row files take seconds.
Counts of what changed are read by a ``POSITIONAL JOIN`` of the input and the output file, which relies on
DuckDB's default ``preserve_insertion_order = true`` (and on never planning a join in the writing query).

Summaries are JSON-safe: ``{"agent", "params", "datasets": {name: {...}}}`` with per-column counts and a few
``[before, after]`` examples (strings clipped to :data:`summaries.VALUE_CHARS` characters). "Text" means a ``VARCHAR``
column (what CSV input gives). "Null-like" means a text value that, trimmed of whitespace and lower-cased,
is one of :data:`sql.NULL_LIKE` (``''`` included, so whitespace-only too); only values of up to 12 characters
or starting with whitespace are tested, so a long value padded at its end only is not seen as null-like.

Each agent's params are a model in ``params`` (its field descriptions are the reference, served by
``GET /api/tools``). Bad or unknown params raise ``BadInput(code="BAD_PARAMS")`` naming the agent, the param and
the value. A column param naming a column that no current dataset has is a bad param too; a dataset that lacks a
column another dataset has lists it under ``missing_columns``.

``null-handler``
    Null-like text values (and NaN in float columns) become NULL. Params: ``strategy``: ``keep``
    (default), ``drop_rows`` (drop rows with a null in ``columns``, default all), ``fill`` (fill the nulls
    of ``columns``: numeric columns, and text columns whose values (>= 90 %) are numbers, with
    ``fill_numeric``: ``mean``, ``median`` (default), ``zero`` or a number, written in the column's number
    style; other text columns with ``fill_text``, default ``"unknown"``; other types are left alone) or
    ``drop_columns_over`` (only drop columns, threshold 0.5 unless given). ``drop_columns_over``: number
    0..1, with any strategy: drop columns (of ``columns``) whose null share after normalising exceeds it
    (never every column). Summary: rows in/out/dropped, null-likes normalised, values filled, columns
    dropped, and per column with nulls: SQL nulls, null-likes (with the commonest spellings), fill value.

``type-fixer``
    Converts text columns where at least ``min_parse_rate`` (number in (0, 1], default 0.9) of the
    non-null-like values parse: booleans (``true/false yes/no y/n t/f 1/0``, any case) to BOOLEAN; numbers
    with thousands separators (``,`` ``'`` or space; ``.`` or space in European style, chosen only when some
    values are European-only and none US-only), currency symbols/codes and ``(1.5)`` negatives to BIGINT
    (all integral) or DOUBLE; dates to DATE, or TIMESTAMP when any value has a time (``10:30``,
    ``10:30:15.5``, ``3:04 PM``; a zone suffix is dropped, keeping the local time). Dates: ISO
    (``2024-01-31``, ``2024/01/31``, ``2024.01.31``), ``d/m/Y`` or ``m/d/Y`` with ``/ - .`` and 2- or
    4-digit years, ``12 Jan 2024``, ``12-Jan-24``, ``Jan 12, 2024``, ``Mon, 12th January 2024`` and
    ``20240131``. Numeric dates are read day or month first per separator, from the column's values (a first
    part > 12 means day first, a second part > 12 month first; undecided separators follow the whole column,
    then day first). The kind parsing the most values wins, ties going to the first of boolean, integer,
    double, date (so ``0``/``1`` is boolean and a column of ``20240131``-style values stays an integer).
    Integer-looking values with leading zeros (``007``) keep a column text. Null-like values become NULL;
    other values that fail become NULL and are counted, with examples. Params: ``min_parse_rate``;
    ``columns`` (default all text columns); ``date_order``: ``auto`` (default), ``dmy`` or ``mdy`` (all
    separators). Summary per converted column: from, to, format, parse rate (on the sample), values
    converted, failed (with examples) and null-like; per column left alone that looked partly parseable:
    the best kind (boolean, number or date) and its rate.

``field-standardizer``
    For text columns (``columns``, default all): trim and collapse whitespace; apply explicit ``mappings``
    ``{column: {from: to}}`` (``from`` matched ignoring case and surrounding whitespace); apply ``case``
    (``lower``, ``upper``, ``title`` or ``keep``; a string sets every column, ``{column: mode}`` some;
    columns named like e-mail are lower-cased unless the object form names them; the rest default to
    ``keep``); then, for columns with at most ``max_categories`` (int 0..1000, default 50; 0 disables)
    distinct values, merge spellings equal after normalising case, whitespace, punctuation and accents and,
    where values repeat (distinct spellings at most half the non-null values), spellings whose normalised
    forms have a rapidfuzz ratio >= ``threshold`` (0..100, default 90) and the same digits, into the group's
    most frequent spelling (an explicit mapping target wins). Values without letters and e-mail columns are
    never merged. Summary per changed column: values changed, case mode, the mapping used, examples.

``duplicate-resolver``
    Removes exact duplicate rows, then near-duplicates: rows equal on ``key_columns`` (default all columns)
    once text is lower-cased, accent- and punctuation-stripped, trimmed and whitespace-collapsed (an empty
    result counts as NULL). Params: ``key_columns``; ``keep``: ``first`` (default) or ``most_complete``
    (the row with the fewest nulls, then the first); ``near``: bool (default true; false removes exact
    duplicates only). Summary: rows in/out, exact and near duplicates removed, up to three sample groups
    (near ones first: the kept row and up to two removed ones).

``outlier-flagger``
    Numeric columns (``columns``, default every numeric column and every text column whose values
    (>= 90 %) are numbers, except id-like names (``id``, ``uuid``, ``key``, ``*_id``) and codes with leading
    zeros). ``method``: ``iqr`` (default; bounds ``q1 - k*iqr`` and ``q3 + k*iqr``, ``k`` in (0, 100],
    default 1.5) or ``zscore`` (``|x - mean| / stddev > threshold``, in (0, 100], default 3). Infinities are
    outliers, NaN and nulls are not. ``action``: ``flag`` (default: adds BOOLEAN ``<col>_is_outlier``, false
    for nulls, replacing a column of that name) or ``drop`` (removes flagged rows, adds nothing). Summary
    per column: quartiles or mean/stddev, bounds, values below/above, the flagged range.

``email-validator``
    Columns named like e-mail, text columns whose values are mostly (>= 50 %) e-mail shaped, or ``columns``.
    A value is valid when, trimmed, it matches ``local@domain.tld`` (RFC 5322 atom characters, no spaces,
    no leading/trailing/consecutive dots, labels of letters/digits/hyphens, a TLD of >= 2 letters, local
    part <= 64 and address <= 254 characters). Valid values are written trimmed with the domain
    lower-cased. Adds BOOLEAN ``<col>_valid`` and ``<col>_disposable`` (the domain, or a domain it is a
    subdomain of, in :data:`emails.DISPOSABLE_DOMAINS` or ``disposable_domains``), both NULL where the value is
    null or null-like (``_disposable`` also where invalid). Params: ``columns``; ``action``: ``flag``
    (default) or ``null_invalid`` (invalid values become NULL); ``disposable_domains``: extra domains (list
    of strings). Summary per column: values checked, valid, invalid (with examples), disposable (with the
    commonest domains) and rewritten (with examples).

Modules: ``nulls``, ``conversions``, ``standardize``, ``duplicates``, ``outliers`` and ``emails`` hold the
agents (in that order above); ``running`` the per-dataset job, progress and output files; ``params`` the
params models and column-name checks; ``sampling`` the sample frame and numeric text detection; ``numbers`` and
``dates`` parsing text as numbers and dates in SQL; ``sql`` quoting, null-like tests, layered rewrites and
aggregate queries; ``summaries`` JSON-safe, clipped summary values.
"""
