"""Master-my-data agents: candidate keys, entity matching across files, golden records.

The three agents run in this order; any prefix may run, and each computes what it needs when an earlier
one did not run. All heavy work is DuckDB SQL over the Parquet inputs; only candidate pairs from small
blocks reach Python (scored with rapidfuzz) and only matched pairs are clustered in Python (union-find).

``key-identifier`` (:func:`key_identifier`) - per dataset, candidate keys: single columns that are unique
(or nearly: uniqueness and null ratios are reported) and, when no column is unique, column pairs; ranked
to prefer id-like names, integer and short values, no nulls. Across datasets, join candidates: columns
with the same or similar names or overlapping (normalised, hash-sampled) value sets. Writes ``keys.json``
(the same as its summary). Params (the models in ``params`` are the reference, served by ``GET /api/tools``;
a bad or unknown one raises ``BadInput(code="BAD_PARAMS")``):

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
