"""The clean-my-data agents on small all-VARCHAR Parquet files with known content (and one 1M-row chain)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from activities.analysis.agents.base import AgentContext, AgentResult, Dataset
from activities.analysis.agents.clean.conversions import type_fixer
from activities.analysis.agents.clean.duplicates import duplicate_resolver
from activities.analysis.agents.clean.emails import email_validator
from activities.analysis.agents.clean.nulls import null_handler
from activities.analysis.agents.clean.outliers import outlier_flagger
from activities.analysis.agents.clean.standardize import field_standardizer
from conveyor.errors import BadInput

Agent = Callable[[AgentContext], AgentResult]
CHAIN: tuple[Agent, ...] = (
    null_handler,
    type_fixer,
    field_standardizer,
    duplicate_resolver,
    outlier_flagger,
    email_validator,
)


# ------------------------------------------------------------------------------------------- helpers
def sql_value(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def make_dataset(tmp_path: Path, name: str, header: Sequence[str], rows: Sequence[Sequence[str | None]]) -> Dataset:
    """A Parquet file of VARCHAR columns (what a CSV gives), built with CREATE TABLE ... VALUES."""
    path = tmp_path / f"{name}.parquet"
    columns = ", ".join('"' + h.replace('"', '""') + '" VARCHAR' for h in header)
    values = ", ".join("(" + ", ".join(sql_value(v) for v in row) + ")" for row in rows)
    with duckdb.connect() as con:
        con.execute(f"CREATE TABLE t ({columns})")
        if rows:
            con.execute(f"INSERT INTO t VALUES {values}")
        con.execute(f"COPY t TO {sql_value(str(path))} (FORMAT parquet)")
    return Dataset(f"{name}.csv", path)


def run(
    agent: Agent,
    tmp_path: Path,
    *datasets: Dataset,
    params: dict[str, Any] | None = None,
    progress: list[tuple[float, str]] | None = None,
) -> AgentResult:
    calls = progress if progress is not None else []
    workdir = tmp_path / f"out_{agent.__name__}"
    workdir.mkdir(parents=True, exist_ok=True)
    result = agent(
        AgentContext(
            con=duckdb.connect(),
            inputs=list(datasets),
            current=list(datasets),
            params=params or {},
            previous={},
            workdir=workdir,
            report=lambda fraction, message: calls.append((fraction, message)),
        )
    )
    json.dumps(result.summary, allow_nan=False)  # JSON-safe, always
    assert result.current is not None and len(result.current) == len(datasets)
    for before, after in zip(datasets, result.current, strict=True):
        assert after.name == before.name and after.path.parent == workdir and after.path.exists()
    return result


def rows_of(result: AgentResult, index: int = 0) -> list[tuple[Any, ...]]:
    assert result.current is not None
    with duckdb.connect() as con:
        return con.execute(f"SELECT * FROM read_parquet('{result.current[index].path}')").fetchall()


def column(result: AgentResult, name: str) -> list[Any]:
    assert result.current is not None
    with duckdb.connect() as con:
        rows = con.execute(f"SELECT \"{name}\" FROM read_parquet('{result.current[0].path}')").fetchall()
    return [r[0] for r in rows]


def types_of(result: AgentResult) -> dict[str, str]:
    assert result.current is not None
    with duckdb.connect() as con:
        rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{result.current[0].path}')").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def summary_of(result: AgentResult, dataset: str = "data.csv") -> dict[str, Any]:
    found: dict[str, Any] = result.summary["datasets"][dataset]
    return found


def one_column(tmp_path: Path, values: Sequence[str | None], name: str = "x") -> Dataset:
    return make_dataset(tmp_path, "data", [name], [(v,) for v in values])


# -------------------------------------------------------------------------------------- null-handler
NULL_LIKES = ["", "   ", "NA", "N/A", "n/a", "null", "NULL", "None", "nan", "-", "?", "\t", " n/a "]


def test_null_like_values_become_null(tmp_path: Path) -> None:
    ds = make_dataset(
        tmp_path, "data", ["a", "b"], [(v, "keep me") for v in NULL_LIKES] + [("value", None), (" x ", "-")]
    )
    result = run(null_handler, tmp_path, ds)
    assert column(result, "a") == [None] * len(NULL_LIKES) + ["value", " x "]  # only null-likes change
    assert column(result, "b") == ["keep me"] * len(NULL_LIKES) + [None, None]
    s = summary_of(result)
    assert (s["rows_in"], s["rows_out"], s["rows_dropped"]) == (15, 15, 0)
    assert s["null_like_normalised"] == len(NULL_LIKES) + 1
    assert s["columns"]["a"]["null_like"] == len(NULL_LIKES)
    assert s["columns"]["a"]["nulls"] == len(NULL_LIKES)
    assert s["columns"]["b"] == {
        "sql_nulls": 1,
        "null_like": 1,
        "nulls": 2,
        "null_share": round(2 / 15, 4),
        "null_like_values": ["-"],
    }
    assert set(s["columns"]["a"]["null_like_values"]) <= set(NULL_LIKES) and s["columns"]["a"]["null_like_values"]
    assert s["values_filled"] == 0 and s["columns_dropped"] == []


def test_drop_rows_drops_rows_with_a_null_in_the_given_columns(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path, "data", ["a", "b"], [("1", "x"), ("N/A", "y"), ("3", ""), ("4", "z"), (None, "w")])
    everything = run(null_handler, tmp_path, ds, params={"strategy": "drop_rows"})
    assert rows_of(everything) == [("1", "x"), ("4", "z")]
    assert summary_of(everything)["rows_dropped"] == 3
    only_b = run(null_handler, tmp_path / "b", ds, params={"strategy": "drop_rows", "columns": ["b"]})
    assert rows_of(only_b) == [("1", "x"), (None, "y"), ("4", "z"), (None, "w")]
    assert summary_of(only_b)["rows_out"] == 4


def test_fill_uses_median_for_number_columns_and_text_for_the_rest(tmp_path: Path) -> None:
    ds = make_dataset(
        tmp_path,
        "data",
        ["amount", "city", "code"],
        [("1,000", "Paris", "007"), ("N/A", "", "008"), ("3,000", "Rome", None), ("2,000", "-", "009")],
    )
    result = run(null_handler, tmp_path, ds, params={"strategy": "fill"})
    assert rows_of(result) == [
        ("1,000", "Paris", "007"),
        ("2000", "unknown", "008"),
        ("3,000", "Rome", "unknown"),  # codes with leading zeros are not numbers
        ("2,000", "unknown", "009"),
    ]
    s = summary_of(result)
    assert s["columns"]["amount"]["fill_value"] == "2000" and s["columns"]["amount"]["filled"] == 1
    assert s["columns"]["city"]["filled"] == 2 and s["values_filled"] == 4


def test_fill_mean_zero_number_and_custom_text(tmp_path: Path) -> None:
    rows = [("1", "a"), ("2", None), ("6", "N/A"), ("", "b")]
    ds = make_dataset(tmp_path, "data", ["n", "t"], rows)
    mean = run(null_handler, tmp_path, ds, params={"strategy": "fill", "fill_numeric": "mean", "fill_text": "?!"})
    assert column(mean, "n") == ["1", "2", "6", "3"] and column(mean, "t") == ["a", "?!", "?!", "b"]
    zero = run(null_handler, tmp_path / "z", ds, params={"strategy": "fill", "fill_numeric": "zero"})
    assert column(zero, "n") == ["1", "2", "6", "0"]
    fixed = run(null_handler, tmp_path / "f", ds, params={"strategy": "fill", "fill_numeric": -1.5})
    assert column(fixed, "n") == ["1", "2", "6", "-1.5"]


def test_fill_typed_columns_keeps_their_type(tmp_path: Path) -> None:
    path = tmp_path / "typed.parquet"
    with duckdb.connect() as con:
        con.execute(
            "COPY (SELECT * FROM (VALUES (1, 1.0), (NULL, 'nan'::DOUBLE), (5, 3.0)) v(i, d)) "
            f"TO '{path}' (FORMAT parquet)"
        )
    result = run(null_handler, tmp_path, Dataset("data.csv", path), params={"strategy": "fill", "fill_numeric": "mean"})
    assert rows_of(result) == [(1, 1.0), (3, 2.0), (5, 3.0)]
    assert types_of(result) == {"i": "INTEGER", "d": "DOUBLE"}
    assert summary_of(result)["columns"]["d"]["null_like"] == 1  # NaN counts as null-like


def test_drop_columns_over_drops_mostly_empty_columns(tmp_path: Path) -> None:
    ds = make_dataset(
        tmp_path,
        "data",
        ["a", "b", "c"],
        [("1", "", "x"), ("2", "N/A", None), ("3", "ok", "y"), ("4", "-", "z")],
    )
    result = run(null_handler, tmp_path, ds, params={"drop_columns_over": 0.5})
    assert types_of(result) == {"a": "VARCHAR", "c": "VARCHAR"}
    assert summary_of(result)["columns_dropped"] == [{"column": "b", "null_share": 0.75}]
    only = run(null_handler, tmp_path / "o", ds, params={"strategy": "drop_columns_over", "columns": ["c"]})
    assert list(types_of(only)) == ["a", "b", "c"]  # c is 25 % null, under the default 0.5


# ---------------------------------------------------------------------------------------- type-fixer
def test_numbers_with_separators_and_currency_become_doubles(tmp_path: Path) -> None:
    values = ["1,234.50", "$1 234", "(12.5)", "USD 7", "-3", "1e3", " 42 ", "N/A", "€ 2,000.25", "0.5"]
    result = run(type_fixer, tmp_path, one_column(tmp_path, values))
    assert types_of(result) == {"x": "DOUBLE"}
    assert column(result, "x") == [1234.5, 1234.0, -12.5, 7.0, -3.0, 1000.0, 42.0, None, 2000.25, 0.5]
    conv = summary_of(result)["converted"]["x"]
    assert (conv["from"], conv["to"], conv["format"]) == ("VARCHAR", "DOUBLE", "1,234.5")
    assert (conv["converted"], conv["failed"], conv["null_like_to_null"]) == (9, 0, 1)
    assert conv["examples"] and all(isinstance(b, str) and isinstance(a, float) for b, a in conv["examples"])


def test_european_numbers_are_read_when_the_column_is_consistently_so(tmp_path: Path) -> None:
    result = run(type_fixer, tmp_path, one_column(tmp_path, ["1.234,50", "12,5", "1.000", "3", "2 500,75 €"]))
    assert column(result, "x") == [1234.5, 12.5, 1000.0, 3.0, 2500.75]
    assert summary_of(result)["converted"]["x"]["format"] == "1.234,5"
    us = run(type_fixer, tmp_path / "us", one_column(tmp_path / ".", ["1,234.50", "12,5", "1.000"], "y"))
    assert summary_of(us)["not_converted"]["y"]["best"] == "number"  # mixed styles: 12,5 is no US number


def test_integers_become_bigint_and_failures_are_counted(tmp_path: Path) -> None:
    values = [str(n) for n in range(1, 10)] + ["1,000", "1x", "abc", ""]
    result = run(type_fixer, tmp_path, one_column(tmp_path, values), params={"min_parse_rate": 0.8})
    assert types_of(result) == {"x": "BIGINT"}
    assert column(result, "x") == list(range(1, 10)) + [1000, None, None, None]
    conv = summary_of(result)["converted"]["x"]
    assert (conv["converted"], conv["failed"], conv["null_like_to_null"]) == (10, 2, 1)
    assert conv["parse_rate"] == round(10 / 12, 4)
    assert sorted(conv["failed_examples"]) == ["1x", "abc"]


def test_mixed_date_formats_day_first(tmp_path: Path) -> None:
    values = [
        "2024-01-15", "2024/01/16", "15/01/2024", "16-01-2024", "17.01.2024", "12 Jan 2024", "Jan 13, 2024",
        "January 14 2024", "Mon, 15th January 2024", "12-Jan-24", "31/12/99", "20240118", None, "n/a",
    ]  # fmt: skip
    result = run(type_fixer, tmp_path, one_column(tmp_path, values))
    assert types_of(result) == {"x": "DATE"}
    assert column(result, "x") == [
        date(2024, 1, 15), date(2024, 1, 16), date(2024, 1, 15), date(2024, 1, 16), date(2024, 1, 17),
        date(2024, 1, 12), date(2024, 1, 13), date(2024, 1, 14), date(2024, 1, 15), date(2024, 1, 12),
        date(1999, 12, 31), date(2024, 1, 18), None, None,
    ]  # fmt: skip
    conv = summary_of(result)["converted"]["x"]
    assert (conv["to"], conv["format"], conv["converted"], conv["failed"]) == ("DATE", "day first", 12, 0)
    assert all(isinstance(after, str) and len(after) == 10 for _, after in conv["examples"])  # ISO strings


def test_month_first_dates_are_recognised_from_the_values(tmp_path: Path) -> None:
    result = run(type_fixer, tmp_path, one_column(tmp_path, ["01/31/2024", "02/01/2024", "12/25/2023", "2024-03-01"]))
    assert column(result, "x") == [date(2024, 1, 31), date(2024, 2, 1), date(2023, 12, 25), date(2024, 3, 1)]
    assert summary_of(result)["converted"]["x"]["format"] == "month first"
    forced = run(
        type_fixer,
        tmp_path / "f",
        one_column(tmp_path / ".", ["01/02/2024", "03/04/2024"], "y"),
        params={"date_order": "mdy"},
    )
    assert column(forced, "y") == [date(2024, 1, 2), date(2024, 3, 4)]


def test_each_separator_gets_its_own_order(tmp_path: Path) -> None:
    values = ["01/31/2024", "12/25/2023", "31.01.2024", "25.12.2023", "02/03/2024", "02.03.2024"]
    result = run(type_fixer, tmp_path, one_column(tmp_path, values))
    assert column(result, "x") == [
        date(2024, 1, 31), date(2023, 12, 25), date(2024, 1, 31), date(2023, 12, 25), date(2024, 2, 3),
        date(2024, 3, 2),
    ]  # fmt: skip


def test_date_times_become_timestamps(tmp_path: Path) -> None:
    values = [
        "2024-01-05 10:30",
        "2024-01-05T10:30:15Z",
        "12/25/2023 3:04 PM",
        "Jan 5, 2024 10:30",
        "2024-01-06",
    ]
    result = run(type_fixer, tmp_path, one_column(tmp_path, values))
    assert types_of(result) == {"x": "TIMESTAMP"}
    assert column(result, "x") == [
        datetime(2024, 1, 5, 10, 30), datetime(2024, 1, 5, 10, 30, 15), datetime(2023, 12, 25, 15, 4),
        datetime(2024, 1, 5, 10, 30), datetime(2024, 1, 6),
    ]  # fmt: skip


def test_booleans(tmp_path: Path) -> None:
    values = ["yes", "No", "Y", "n", "TRUE", "false", "t", "F", "1", "0", "", "maybe"]
    result = run(type_fixer, tmp_path, one_column(tmp_path, values))
    assert types_of(result) == {"x": "BOOLEAN"}
    assert column(result, "x") == [
        True,
        False,
        True,
        False,
        True,
        False,
        True,
        False,
        True,
        False,
        None,
        None,
    ]
    conv = summary_of(result)["converted"]["x"]
    assert (conv["converted"], conv["failed"], conv["failed_examples"]) == (10, 1, ["maybe"])
    zero_one_two = run(type_fixer, tmp_path / "n", one_column(tmp_path / ".", ["0", "1", "2", "1"], "y"))
    assert types_of(zero_one_two) == {"y": "BIGINT"}  # a 2 makes it a count, not a flag


def test_columns_stay_text_below_the_parse_rate_or_with_leading_zeros(tmp_path: Path) -> None:
    ds = make_dataset(
        tmp_path,
        "data",
        ["zip", "mixed", "name"],
        [("02134", "1", "Ann"), ("10001", "2", "Bob"), ("00501", "three", "Cy"), ("94105", "4", "Di")],
    )
    result = run(type_fixer, tmp_path, ds)
    assert types_of(result) == {"zip": "VARCHAR", "mixed": "VARCHAR", "name": "VARCHAR"}
    assert rows_of(result)[0] == ("02134", "1", "Ann")
    s = summary_of(result)
    assert s["converted"] == {}
    assert s["not_converted"]["zip"] == {"best": "number", "parse_rate": 1.0, "leading_zeros": 2}
    assert s["not_converted"]["mixed"] == {"best": "number", "parse_rate": 0.75}
    assert "name" not in s["not_converted"]
    only = run(type_fixer, tmp_path / "o", ds, params={"columns": ["mixed"], "min_parse_rate": 0.7})
    assert types_of(only)["mixed"] == "BIGINT" and types_of(only)["zip"] == "VARCHAR"


# ---------------------------------------------------------------------------------- field-standardizer
def test_whitespace_is_trimmed_and_category_spellings_merge(tmp_path: Path) -> None:
    cities = [
        "New York",
        "new york ",
        "NewYork",
        "New York",
        " New  York",
        "Boston",
        "boston",
        "Boston",
        "N.Y.C.",
    ]
    ds = make_dataset(tmp_path, "data", ["city", "note"], [(c, f"  a\tnote  {i} ") for i, c in enumerate(cities)])
    result = run(field_standardizer, tmp_path, ds)
    assert column(result, "city") == ["New York"] * 5 + ["Boston"] * 3 + ["N.Y.C."]
    assert column(result, "note")[0] == "a note 0"
    s = summary_of(result)["columns"]
    assert s["city"]["changed"] == 4
    assert s["city"]["mapping"] == {"NewYork": "New York", "new york": "New York", "boston": "Boston"}
    assert s["city"]["examples"] and all(b != a for b, a in s["city"]["examples"])
    assert s["note"]["changed"] == 9 and "mapping" not in s["note"]


def test_fuzzy_spellings_merge_only_where_values_repeat(tmp_path: Path) -> None:
    cities = ["San Francisco"] * 3 + ["San Fransisco", "Sacramento", "Sacramento"]
    result = run(field_standardizer, tmp_path, one_column(tmp_path, cities, "city"))
    assert column(result, "city") == ["San Francisco"] * 4 + ["Sacramento"] * 2
    names = ["John Smith", "Jon Smith", "Mary Jones", "Ann Lee"]  # every value distinct: no fuzzy merge
    people = run(field_standardizer, tmp_path / "p", one_column(tmp_path / ".", names, "name"))
    assert column(people, "name") == names
    loose = run(field_standardizer, tmp_path / "l", one_column(tmp_path, cities, "city"), params={"threshold": 99})
    assert column(loose, "city") == cities


def test_numbers_emails_and_high_cardinality_are_not_merged(tmp_path: Path) -> None:
    rows = [
        ("1.5", "a.b@x.com", "A1"),
        ("15", "ab@x.com", "A 1"),
        ("1.5", "a.b@x.com", "A1"),
        ("15", "ab@x.com", "A1"),
    ]
    ds = make_dataset(tmp_path, "data", ["n", "email", "code"], rows)
    result = run(field_standardizer, tmp_path, ds, params={"max_categories": 2})
    assert column(result, "n") == ["1.5", "15", "1.5", "15"]
    assert column(result, "email") == ["a.b@x.com", "ab@x.com", "a.b@x.com", "ab@x.com"]
    assert column(result, "code") == ["A1", "A1", "A1", "A1"]
    off = run(field_standardizer, tmp_path / "o", ds, params={"max_categories": 0})
    assert column(off, "code") == ["A1", "A 1", "A1", "A1"]


def test_case_param_global_per_column_and_email_default(tmp_path: Path) -> None:
    ds = make_dataset(
        tmp_path,
        "data",
        ["name", "email", "tag"],
        [("ann LEE", "Ann@Example.COM", "x1"), ("bob  o'neil", " B@X.org", "y2")],
    )
    title = run(field_standardizer, tmp_path, ds, params={"case": "title", "max_categories": 0})
    assert rows_of(title) == [("Ann Lee", "ann@example.com", "X1"), ("Bob O'neil", "b@x.org", "Y2")]
    per = run(field_standardizer, tmp_path / "p", ds, params={"case": {"tag": "upper", "email": "keep"}})
    assert rows_of(per) == [("ann LEE", "Ann@Example.COM", "X1"), ("bob o'neil", "B@X.org", "Y2")]
    assert summary_of(per)["columns"]["tag"]["case"] == "upper"


def test_explicit_mappings_win(tmp_path: Path) -> None:
    values = ["NY", "ny ", "New York", "new york", "LA", "Los Angeles"]
    result = run(
        field_standardizer,
        tmp_path,
        one_column(tmp_path, values, "city"),
        params={"mappings": {"city": {"ny": "New York", "LA": "Los Angeles"}}},
    )
    assert column(result, "city") == ["New York"] * 4 + ["Los Angeles"] * 2


# -------------------------------------------------------------------------------- duplicate-resolver
DUP_HEADER = ["id", "name", "city", "phone"]
DUP_ROWS: list[tuple[str | None, ...]] = [
    ("1", "Ann Lee", "Paris", None),
    ("2", "Bob Stone", "Rome", "555"),
    ("1", "Ann Lee", "Paris", None),  # exact duplicate of row 1
    ("3", "Cy Dee", "Oslo", "777"),
    ("2", "bob  stone.", "ROME", "555"),  # near duplicate of row 2
    ("1", "Ann Lee", "Paris", None),  # exact again
    ("4", "Dan", "Nice", None),
    ("4", "dan", "nice", "999"),  # differs in phone: not a near duplicate on all columns
]


def test_exact_then_near_duplicates_are_removed_keeping_the_first(tmp_path: Path) -> None:
    result = run(duplicate_resolver, tmp_path, make_dataset(tmp_path, "data", DUP_HEADER, DUP_ROWS))
    assert rows_of(result) == [DUP_ROWS[0], DUP_ROWS[1], DUP_ROWS[3], DUP_ROWS[6], DUP_ROWS[7]]
    s = summary_of(result)
    assert (s["rows_in"], s["rows_out"], s["exact_duplicates_removed"], s["near_duplicates_removed"]) == (
        8,
        5,
        2,
        1,
    )
    first = s["sample_groups"][0]  # near-duplicate groups come first
    assert first["kept"]["name"] == "Bob Stone" and first["removed"][0]["name"] == "bob  stone."
    assert any(g["rows"] == 3 and g["kept"]["name"] == "Ann Lee" for g in s["sample_groups"])


def test_key_columns_and_most_complete(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path, "data", DUP_HEADER, DUP_ROWS)
    by_id = run(duplicate_resolver, tmp_path, ds, params={"key_columns": ["id"], "keep": "most_complete"})
    assert rows_of(by_id) == [
        DUP_ROWS[0],
        DUP_ROWS[1],
        DUP_ROWS[3],
        DUP_ROWS[7],
    ]  # id 4: the row with a phone
    s = summary_of(by_id)
    assert (s["exact_duplicates_removed"], s["near_duplicates_removed"], s["compared_on"]) == (2, 2, ["id"])
    exact = run(duplicate_resolver, tmp_path / "e", ds, params={"near": False})
    assert summary_of(exact)["rows_out"] == 6 and summary_of(exact)["near_duplicates_removed"] == 0


# ------------------------------------------------------------------------------------ outlier-flagger
def test_iqr_flags_with_the_right_bounds(tmp_path: Path) -> None:
    ds = make_dataset(
        tmp_path,
        "data",
        ["id", "score", "label"],
        [(str(i), str(v), "x") for i, v in enumerate([*range(1, 11), 100])],
    )
    result = run(outlier_flagger, tmp_path, ds)
    assert list(types_of(result)) == ["id", "score", "label", "score_is_outlier"]  # the id is not checked
    assert column(result, "score_is_outlier") == [False] * 10 + [True]
    col = summary_of(result)["columns"]["score"]
    assert (col["q1"], col["q3"], col["iqr"], col["lower"], col["upper"]) == (3.5, 8.5, 5.0, -4.0, 16.0)
    assert (col["outliers"], col["below"], col["above"], col["max_flagged"]) == (1, 0, 1, 100.0)
    assert summary_of(result)["columns_added"] == ["score_is_outlier"]


def test_zscore_and_drop(tmp_path: Path) -> None:
    values = ["10"] * 20 + ["11"] * 20 + ["500", None, "N/A"]
    ds = one_column(tmp_path, values, "v")
    flagged = run(outlier_flagger, tmp_path, ds, params={"method": "zscore", "threshold": 3})
    assert column(flagged, "v_is_outlier") == [False] * 40 + [True, False, False]
    assert summary_of(flagged)["columns"]["v"]["outliers"] == 1
    dropped = run(outlier_flagger, tmp_path / "d", ds, params={"action": "drop", "k": 3})
    assert column(dropped, "v") == values[:40] + [None, "N/A"] and list(types_of(dropped)) == ["v"]
    assert summary_of(dropped)["rows_dropped"] == 1


def test_outlier_columns_param_and_typed_columns(tmp_path: Path) -> None:
    path = tmp_path / "typed.parquet"
    with duckdb.connect() as con:
        con.execute(
            "COPY (SELECT range AS id, CASE WHEN range = 7 THEN 1e9 ELSE range END AS amount, 'x' AS note "
            f"FROM range(20)) TO '{path}' (FORMAT parquet)"
        )
    ds = Dataset("data.csv", path)
    result = run(outlier_flagger, tmp_path, ds, params={"columns": ["amount", "note"]})
    assert column(result, "amount_is_outlier") == [i == 7 for i in range(20)]
    assert summary_of(result)["skipped"] == {"note": "not numeric (VARCHAR)"}


# ------------------------------------------------------------------------------------ email-validator
EMAILS = [
    "john@example.com",
    "JOHN.DOE@EXAMPLE.COM",
    "a..b@x.com",
    "no at sign",
    "x@y.c",
    "sp ace@x.com",
    "bob@mailinator.com",
    " padded@x.org ",
    "eve@sub.yopmail.com",
    None,
    "N/A",
    ".lead@x.com",
]


def test_emails_are_validated_normalised_and_disposable_flagged(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path, "data", ["id", "email"], [(str(i), e) for i, e in enumerate(EMAILS)])
    result = run(email_validator, tmp_path, ds)
    assert list(types_of(result)) == ["id", "email", "email_valid", "email_disposable"]
    rows = rows_of(result)
    assert [r[1] for r in rows] == [
        "john@example.com", "JOHN.DOE@example.com", "a..b@x.com", "no at sign", "x@y.c", "sp ace@x.com",
        "bob@mailinator.com", "padded@x.org", "eve@sub.yopmail.com", None, "N/A", ".lead@x.com",
    ]  # fmt: skip
    assert [r[2] for r in rows] == [
        True,
        True,
        False,
        False,
        False,
        False,
        True,
        True,
        True,
        None,
        None,
        False,
    ]
    assert [r[3] for r in rows] == [False, False, None, None, None, None, True, False, True, None, None, None]
    col = summary_of(result)["columns"]["email"]
    assert (col["checked"], col["valid"], col["invalid"], col["disposable"], col["normalised"]) == (
        10,
        5,
        5,
        2,
        2,
    )
    assert set(col["invalid_examples"]) == {
        "a..b@x.com",
        "no at sign",
        "x@y.c",
        "sp ace@x.com",
        ".lead@x.com",
    }
    assert col["disposable_domains"] == {"mailinator.com": 1, "sub.yopmail.com": 1}
    assert col["normalised_examples"] == [
        ["JOHN.DOE@EXAMPLE.COM", "JOHN.DOE@example.com"],
        [" padded@x.org ", "padded@x.org"],
    ]


def test_null_invalid_detection_by_values_and_extra_domains(tmp_path: Path) -> None:
    ds = make_dataset(
        tmp_path,
        "data",
        ["contact", "note"],
        [("a@b.io", "x"), ("bad@", "y"), ("c@trash.dev", "z"), ("d@e.fr", "w")],
    )
    result = run(email_validator, tmp_path, ds, params={"action": "null_invalid", "disposable_domains": ["trash.dev"]})
    assert rows_of(result) == [
        ("a@b.io", "x", True, False),
        (None, "y", False, None),
        ("c@trash.dev", "z", True, True),
        ("d@e.fr", "w", True, False),
    ]
    assert summary_of(result)["columns_added"] == ["contact_valid", "contact_disposable"]


# ------------------------------------------------------------------------------------------ params
@pytest.mark.parametrize(
    ("agent", "params", "param"),
    [
        (null_handler, {"strategy": "bogus"}, "strategy"),
        (null_handler, {"columns": ["nope"]}, "columns"),
        (null_handler, {"drop_columns_over": 1.5}, "drop_columns_over"),
        (null_handler, {"fill_numeric": "mode"}, "fill_numeric"),
        (type_fixer, {"min_parse_rate": 0}, "min_parse_rate"),
        (type_fixer, {"date_order": "ymd"}, "date_order"),
        (type_fixer, {"columns": "nope"}, "columns"),
        (field_standardizer, {"case": "shout"}, "case"),
        (field_standardizer, {"case": {"nope": "lower"}}, "case"),
        (field_standardizer, {"mappings": {"a": ["x"]}}, "mappings"),
        (field_standardizer, {"max_categories": -1}, "max_categories"),
        (duplicate_resolver, {"keep": "last"}, "keep"),
        (duplicate_resolver, {"key_columns": ["a", "zz"]}, "key_columns"),
        (duplicate_resolver, {"near": "yes"}, "near"),
        (outlier_flagger, {"method": "mad"}, "method"),
        (outlier_flagger, {"k": 0}, "k"),
        (outlier_flagger, {"columns": [1]}, "columns"),
        (email_validator, {"action": "delete"}, "action"),
        (email_validator, {"columns": ["nope"]}, "columns"),
    ],
)
def test_bad_params(tmp_path: Path, agent: Agent, params: dict[str, Any], param: str) -> None:
    ds = make_dataset(tmp_path, "data", ["a", "b"], [("1", "x")])
    with pytest.raises(BadInput) as err:
        run(agent, tmp_path, ds, params=params)
    assert err.value.code == "BAD_PARAMS"
    assert agent.__name__.replace("_", "-") in err.value.message and f"'{param}'" in err.value.message
    assert err.value.details["param"] == param


def test_unknown_column_message_names_it(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path, "data", ["a"], [("1",)])
    with pytest.raises(BadInput, match="key_columns.*'zz'"):
        run(duplicate_resolver, tmp_path, ds, params={"key_columns": ["a", "zz"]})


# -------------------------------------------------------------------------------- several datasets
def test_several_datasets_progress_and_missing_columns(tmp_path: Path) -> None:
    first = make_dataset(tmp_path, "first", ["a", "b"], [("1", "N/A"), ("2", "x")])
    second = make_dataset(tmp_path, "second", ["a"], [("",), ("3",)])
    progress: list[tuple[float, str]] = []
    params = {"strategy": "drop_rows", "columns": ["b"]}
    result = run(null_handler, tmp_path, first, second, params=params, progress=progress)
    assert rows_of(result, 0) == [("2", "x")] and rows_of(result, 1) == [(None,), ("3",)]
    assert result.summary["datasets"]["first.csv"]["missing_columns"] == []
    assert result.summary["datasets"]["second.csv"]["missing_columns"] == ["b"]
    fractions = [f for f, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and all(0 <= f <= 1 for f in fractions)
    assert any("first.csv" in m for _, m in progress) and any("second.csv" in m for _, m in progress)


def test_odd_column_and_file_names(tmp_path: Path) -> None:
    header = ['Full "Name"', "e-mail address", "it's", "file_row_number"]
    rows = [("Ann", "A@B.COM", "1,000", "1"), ("ann", "x@y.io", "N/A", "2"), ("Ann", "A@B.COM", "1,000", "1")]
    current = [make_dataset(tmp_path, "we'ird", header, rows)]
    for agent in CHAIN:
        result = run(agent, tmp_path, *current)
        assert result.current is not None
        current = result.current
    assert rows_of(result) == [
        ("Ann", "a@b.com", 1000, 1, False, False, True, False),
        ("Ann", "x@y.io", None, 2, False, False, True, False),
    ]
    assert list(types_of(result))[-3:] == [
        "file_row_number_is_outlier",
        "e-mail address_valid",
        "e-mail address_disposable",
    ]


def test_every_agent_copes_with_an_empty_file(tmp_path: Path) -> None:
    current = [make_dataset(tmp_path, "data", ["a", "email"], [])]
    for agent in CHAIN:
        result = run(agent, tmp_path, *current)
        assert rows_of(result) == []
        assert result.current is not None
        current = result.current


# ------------------------------------------------------------------------------------------- chain
CHAIN_HEADER = ["id", "name", "city", "phone", "amount", "joined", "active", "email"]
CHAIN_ROWS: list[tuple[str | None, ...]] = [
    ("1", " Ann  Lee ", "New York", "555-0101", "1,200.50", "2024-01-15", "yes", "Ann@Example.COM"),
    ("2", "Bob Stone", "new york ", "555-0102", "$950", "16/01/2024", "no", "bob@mailinator.com"),
    ("3", "N/A", "NewYork", "555-0103", "1,100", "17 Jan 2024", "Y", "not-an-email"),
    ("4", "Cy Dee", "Boston", "", "1,050.25", "Jan 18, 2024", "n", ""),
    ("5", "Dan Roe", "boston", "555-0105", "990", "19.01.2024", "TRUE", "dan@x.org"),
    ("2", "Bob Stone", "new york ", "555-0102", "$950", "16/01/2024", "no", "bob@mailinator.com"),  # exact
    ("6", "Eve Poe", "Boston", "555-0106", "1,000", "20/01/2024", "false", "eve@x.org"),
    ("7", "Fay Orr", "Boston", "555-0107", "250,000", "21/01/2024", "yes", "fay@x.org"),  # outlier amount
    ("6", "eve  poe", "BOSTON", "555.0106", "1000", "20-01-2024", "F", "EVE@X.ORG"),  # near duplicate
    ("8", "-", "New York", "N/A", "N/A", "?", "", "null"),
]


def test_the_whole_chain_on_one_file(tmp_path: Path) -> None:
    current = [make_dataset(tmp_path, "data", CHAIN_HEADER, CHAIN_ROWS)]
    summaries: dict[str, Any] = {}
    for agent in CHAIN:
        result = run(agent, tmp_path, *current)
        summaries[agent.__name__] = summary_of(result)
        assert result.current is not None
        current = result.current
    assert types_of(result) == {
        "id": "BIGINT", "name": "VARCHAR", "city": "VARCHAR", "phone": "VARCHAR", "amount": "DOUBLE",
        "joined": "DATE", "active": "BOOLEAN", "email": "VARCHAR", "amount_is_outlier": "BOOLEAN",
        "email_valid": "BOOLEAN", "email_disposable": "BOOLEAN",
    }  # fmt: skip
    d = date
    assert rows_of(result) == [
        (1, "Ann Lee", "New York", "555-0101", 1200.5, d(2024, 1, 15), True, "ann@example.com", False, True,
         False),
        (2, "Bob Stone", "New York", "555-0102", 950.0, d(2024, 1, 16), False, "bob@mailinator.com", False,
         True, True),
        (3, None, "New York", "555-0103", 1100.0, d(2024, 1, 17), True, "not-an-email", False, False, None),
        (4, "Cy Dee", "Boston", None, 1050.25, d(2024, 1, 18), False, None, False, None, None),
        (5, "Dan Roe", "Boston", "555-0105", 990.0, d(2024, 1, 19), True, "dan@x.org", False, True, False),
        (6, "Eve Poe", "Boston", "555-0106", 1000.0, d(2024, 1, 20), False, "eve@x.org", False, True, False),
        (7, "Fay Orr", "Boston", "555-0107", 250000.0, d(2024, 1, 21), True, "fay@x.org", True, True, False),
        (8, None, "New York", None, None, None, None, None, False, None, None),
    ]  # fmt: skip
    assert summaries["null_handler"]["null_like_normalised"] == 9
    assert summaries["type_fixer"]["converted"]["joined"]["format"] == "day first"
    assert summaries["type_fixer"]["not_converted"] == {"phone": {"best": "number", "parse_rate": 0.125}}
    assert summaries["field_standardizer"]["columns"]["city"]["changed"] == 5
    dups = summaries["duplicate_resolver"]
    assert (dups["rows_in"], dups["exact_duplicates_removed"], dups["near_duplicates_removed"]) == (10, 1, 1)
    amount = summaries["outlier_flagger"]["columns"]["amount"]
    assert (amount["q1"], amount["q3"], amount["outliers"]) == (995.0, 1150.25, 1)
    email = summaries["email_validator"]["columns"]["email"]
    assert (email["valid"], email["invalid"], email["disposable"]) == (5, 1, 1)


BIG_SQL = """
SELECT
  k::VARCHAR AS id,
  CASE WHEN k % 17 = 0 THEN 'N/A' WHEN k % 5 = 0 THEN '  customer ' || (k % 5000) || ' '
       ELSE 'Customer ' || (k % 5000) END AS name,
  ['New York', 'new york ', 'NewYork', 'New York', 'Boston', 'boston', 'Chicago', ''][k % 8 + 1] AS city,
  CASE k % 4
    WHEN 0 THEN ((k % 100000) // 1000)::VARCHAR || ',' || lpad((k % 1000)::VARCHAR, 3, '0') || '.50'
    WHEN 1 THEN '$' || (k % 9000)::VARCHAR
    WHEN 2 THEN (k % 777)::VARCHAR || '.25'
    ELSE (k % 1234)::VARCHAR END AS amount,
  CASE k % 3
    WHEN 0 THEN strftime(DATE '2020-01-01' + (k % 1500)::INTEGER, '%Y-%m-%d')
    WHEN 1 THEN strftime(DATE '2020-01-01' + (k % 1500)::INTEGER, '%d/%m/%Y')
    ELSE strftime(DATE '2020-01-01' + (k % 1500)::INTEGER, '%d %b %Y') END AS signup,
  ['yes', 'no', 'Y', 'N', 'true', 'false'][k % 6 + 1] AS active,
  CASE WHEN k % 50 = 0 THEN 'bad email ' || k
       WHEN k % 97 = 0 THEN 'user' || k || '@mailinator.com'
       ELSE 'User' || k || '@Example.COM' END AS email,
  CASE WHEN k % 1000 = 0 THEN '100000' ELSE (k % 100)::VARCHAR END AS score,
  'some   text ' || (k % 1000) || ' ' AS note,
  CASE WHEN k % 13 = 0 THEN 'NA' ELSE ((k * 7) % 50)::VARCHAR END AS qty
FROM (SELECT CASE WHEN range % 100 = 99 THEN range - 1 ELSE range END AS k FROM range(1000000))
"""
"""Ten messy VARCHAR columns; every 100th row repeats the one before it (10,000 exact duplicates)."""


@pytest.mark.slow
def test_the_whole_chain_on_a_million_rows(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    with duckdb.connect() as con:
        con.execute(f"COPY ({BIG_SQL}) TO '{path}' (FORMAT parquet)")
    current = [Dataset("big.csv", path)]
    summaries: dict[str, Any] = {}
    for agent in CHAIN:
        result = run(agent, tmp_path, *current)
        summaries[agent.__name__] = summary_of(result, "big.csv")
        assert result.current is not None
        current = result.current
    assert summaries["null_handler"]["rows_out"] == 1_000_000
    converted = summaries["type_fixer"]["converted"]
    assert {n: c["to"] for n, c in converted.items()} == {
        "id": "BIGINT", "amount": "DOUBLE", "signup": "DATE", "active": "BOOLEAN", "score": "BIGINT",
        "qty": "BIGINT",
    }  # fmt: skip
    assert all(c["failed"] == 0 for c in converted.values())
    assert summaries["duplicate_resolver"]["exact_duplicates_removed"] == 10_000
    assert summaries["duplicate_resolver"]["rows_out"] == 990_000
    assert summaries["outlier_flagger"]["columns"]["score"]["outliers"] == 1000
    with duckdb.connect() as con:
        final = f"read_parquet('{current[0].path}')"
        rows = con.execute(
            f"SELECT id, city, amount, signup, active, email, email_valid FROM {final} LIMIT 3"
        ).fetchall()
        counts = con.execute(
            f"SELECT count(*), count(DISTINCT city), count(*) FILTER (WHERE email_disposable) FROM {final}"
        ).fetchone()
    assert rows == [
        (0, "New York", 0.5, date(2020, 1, 1), True, "bad email 0", False),
        (1, "New York", 1.0, date(2020, 1, 2), False, "user1@example.com", True),
        (2, "New York", 2.25, date(2020, 1, 3), True, "user2@example.com", True),
    ]
    assert counts is not None and counts[0] == 990_000 and counts[1] == 3
