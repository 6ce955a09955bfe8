"""The profile-my-data agents on small Parquet files with known content (and one 1M-row file)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from activities.analysis.agents.base import AgentContext, AgentResult, Dataset
from activities.analysis.agents.profile.drift import drift_detector
from activities.analysis.agents.profile.profiler import unified_profiler
from activities.analysis.agents.profile.risk import score_risk
from conveyor.errors import BadInput


def write_parquet(tmp_path: Path, name: str, select_sql: str) -> Dataset:
    """Write ``select_sql`` to ``tmp_path/name.parquet`` and return it as a dataset called ``name.csv``."""
    path = tmp_path / f"{name}.parquet"
    con = duckdb.connect()
    try:
        con.execute(f"COPY ({select_sql}) TO '{path}' (FORMAT parquet)")
    finally:
        con.close()
    return Dataset(f"{name}.csv", path)


def make_ctx(
    tmp_path: Path,
    *datasets: Dataset,
    params: dict[str, Any] | None = None,
    previous: dict[str, dict[str, Any]] | None = None,
    progress: list[tuple[float, str]] | None = None,
) -> AgentContext:
    calls = progress if progress is not None else []
    return AgentContext(
        con=duckdb.connect(),
        inputs=list(datasets),
        current=list(datasets),
        params=params or {},
        previous=previous or {},
        workdir=tmp_path / "out",
        report=lambda fraction, message: calls.append((fraction, message)),
    )


def columns_of(result: AgentResult, dataset: str) -> dict[str, Any]:
    cols: dict[str, Any] = result.summary["datasets"][dataset]["columns"]
    return cols


PEOPLE_SQL = """
SELECT
    range + 1 AS id,
    CASE WHEN range < 5 THEN NULL WHEN range < 8 THEN 'NA' WHEN range < 10 THEN '' WHEN range < 11 THEN '  '
         WHEN range % 2 = 0 THEN 'open' ELSE 'closed' END AS status,
    CAST(range * 1.5 AS VARCHAR) AS price_text,
    CASE WHEN range < 10 THEN 'abc' ELSE CAST(range AS VARCHAR) END AS qty_text,
    strftime(DATE '2024-01-01' + CAST(range AS INTEGER), '%Y-%m-%d') AS day_text,
    'user' || range || '@example.com' AS email,
    '+1 555-01' || lpad(CAST(range AS VARCHAR), 2, '0') AS phone,
    range % 4 = 0 AS flag,
    CASE WHEN range % 10 < 5 THEN '02134' ELSE '10001' END AS zip
FROM range(100)
"""


@pytest.fixture
def people(tmp_path: Path) -> Dataset:
    return write_parquet(tmp_path, "people", PEOPLE_SQL)


def test_profiler_counts_types_and_stats(tmp_path: Path, people: Dataset) -> None:
    result = unified_profiler(make_ctx(tmp_path, people))
    ds = result.summary["datasets"]["people.csv"]
    assert ds["rows"] == 100
    assert ds["column_count"] == 9
    assert ds["duplicate_rows"] == 0
    cols = ds["columns"]

    ident = cols["id"]
    assert ident["inferred_type"] == "integer"
    assert (ident["row_count"], ident["null_count"], ident["unique_count"]) == (100, 0, 100)
    assert (ident["min"], ident["max"], ident["mean"]) == (1, 100, 50.5)
    assert ident["stddev"] == pytest.approx(29.011492)
    assert ident["quantiles"] == {"p05": 5.95, "p25": 25.75, "p50": 50.5, "p75": 75.25, "p95": 95.05}

    status = cols["status"]
    assert status["null_count"] == 5
    assert status["null_like_count"] == 6
    assert status["null_like_values"] == {"NA": 3, "": 2, "  ": 1}
    assert status["null_rate"] == 0.11
    assert status["non_null_count"] == 89
    assert status["inferred_type"] == "string"
    assert status["top_values"][0] == {"value": "closed", "count": 45}
    assert status["length"] == {"avg": 5.01, "min": 4, "max": 6}  # 45 x "closed", 44 x "open"

    flag = cols["flag"]
    assert (flag["inferred_type"], flag["true_count"], flag["false_count"]) == ("boolean", 25, 75)


def test_profiler_infers_types_of_text_columns(tmp_path: Path, people: Dataset) -> None:
    cols = columns_of(unified_profiler(make_ctx(tmp_path, people)), "people.csv")

    price = cols["price_text"]
    assert (price["storage_type"], price["inferred_type"], price["parse_rate"]) == ("VARCHAR", "float", 1.0)
    assert (price["min"], price["max"], price["mean"]) == (0.0, 148.5, 74.25)

    qty = cols["qty_text"]
    assert (qty["inferred_type"], qty["parse_rate"]) == ("integer", 0.9)
    assert (qty["min"], qty["max"]) == (10, 99)
    assert qty["quantiles"]["p50"] == 54.5

    day = cols["day_text"]
    assert (day["inferred_type"], day["parse_rate"]) == ("date", 1.0)
    assert day["min"] == "2024-01-01"
    assert day["max"] == (date(2024, 1, 1) + timedelta(days=99)).isoformat()
    assert day["patterns"] == {"date": 1.0}

    zip_code = cols["zip"]  # codes with leading zeros are not numbers
    assert zip_code["inferred_type"] == "string"
    assert zip_code["leading_zero_count"] == 50
    assert zip_code["patterns"] == {"postal_code": 1.0}


def test_profiler_detects_email_and_phone_patterns(tmp_path: Path, people: Dataset) -> None:
    cols = columns_of(unified_profiler(make_ctx(tmp_path, people)), "people.csv")
    assert cols["email"]["patterns"] == {"email": 1.0}
    assert cols["phone"]["patterns"] == {"phone": 1.0}
    assert cols["status"]["patterns"] == {}


def test_profiler_pattern_shares(tmp_path: Path) -> None:
    values = [
        "https://example.com/a?b=1", "www.example.org", "f47ac10b-58cc-4372-a567-0e02b2c3d479",
        "192.168.1.20", "2001:db8::1", "4111 1111 1111 1111", "123-45-6789", "31/12/2024",
        "SW1A 1AA", "(555) 123-4567",
    ]  # fmt: skip
    sql = "SELECT * FROM (VALUES " + ", ".join(f"('{v}')" for v in values) + ") t(v)"
    cols = columns_of(unified_profiler(make_ctx(tmp_path, write_parquet(tmp_path, "mix", sql))), "mix.csv")
    assert cols["v"]["patterns"] == {
        "url": 0.2,
        "uuid": 0.1,
        "ip_address": 0.2,
        "credit_card": 0.1,
        "ssn": 0.1,
        "date": 0.1,
        "postal_code": 0.1,
        "phone": 0.1,
    }


def test_profiler_top_n_file_and_progress(tmp_path: Path) -> None:
    sql = "SELECT * FROM (VALUES ('a'), ('a'), ('a'), ('b'), ('b'), ('c'), (NULL)) t(\"it's a \"\"name\"\"\")"
    progress: list[tuple[float, str]] = []
    ctx = make_ctx(tmp_path, write_parquet(tmp_path, "cats", sql), params={"top_n": 2}, progress=progress)
    result = unified_profiler(ctx)
    col = columns_of(result, "cats.csv")['it\'s a "name"']
    assert col["top_values"] == [{"value": "a", "count": 3}, {"value": "b", "count": 2}]
    assert (col["unique_count"], col["null_count"]) == (3, 1)

    path = result.files["profile.json"]
    assert path == tmp_path / "out" / "profile.json"
    assert json.loads(path.read_text())["datasets"]["cats.csv"]["columns"] == columns_of(result, "cats.csv")
    json.dumps(result.summary, allow_nan=False)

    fractions = [f for f, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 3


def test_profiler_nan_and_decimal_are_json_safe(tmp_path: Path) -> None:
    sql = "SELECT * FROM (VALUES (1.5, 2.25::DECIMAL(10,2)), ('nan'::DOUBLE, 3.75::DECIMAL(10,2))) t(f, d)"
    result = unified_profiler(make_ctx(tmp_path, write_parquet(tmp_path, "nan", sql)))
    cols = columns_of(result, "nan.csv")
    assert (cols["f"]["mean"], cols["f"]["non_finite_count"]) == (1.5, 1)
    assert (cols["d"]["inferred_type"], cols["d"]["mean"]) == ("float", 3.0)
    json.dumps(result.summary, allow_nan=False)


@pytest.mark.parametrize("value", [0, 101, "5", True, 2.5])
def test_profiler_rejects_bad_top_n(tmp_path: Path, people: Dataset, value: Any) -> None:
    with pytest.raises(BadInput) as err:
        unified_profiler(make_ctx(tmp_path, people, params={"top_n": value}))
    assert err.value.code == "BAD_PARAMS"
    assert "top_n" in err.value.message


# ------------------------------------------------------------------------------------------------ risk

PII_SQL = """
SELECT
    'user' || range || '@example.com' AS email,
    '+44 20 7946 ' || lpad(CAST(range AS VARCHAR), 4, '0') AS phone,
    'Person ' || range AS customer_name,
    'user' || range || '@mail.test' AS contact,
    'Widget ' || range AS product_name,
    CAST(range AS DOUBLE) * 2 AS amount,
    'fine' AS notes
FROM range(50)
"""


def test_score_risk_finds_pii_columns(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, write_parquet(tmp_path, "pii", PII_SQL))
    result = score_risk(ctx)
    found = {p["column"]: p for p in result.summary["datasets"]["pii.csv"]["pii_columns"]}
    assert set(found) == {"email", "phone", "customer_name", "contact"}
    assert (found["email"]["kind"], found["email"]["confidence"]) == ("email", 1.0)
    assert (found["phone"]["kind"], found["phone"]["confidence"]) == ("phone", 1.0)
    assert (found["customer_name"]["kind"], found["customer_name"]["confidence"]) == ("person_name", 0.6)
    assert found["contact"]["kind"] == "email"  # by values only
    assert found["contact"]["evidence"] == ["100.0% of values look like email"]
    assert result.summary["profile_source"] == "own"
    assert result.files["risk.json"].exists()


def test_score_risk_threshold_param(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, write_parquet(tmp_path, "pii", PII_SQL), params={"pii_threshold": 0.7})
    found = {p["column"] for p in score_risk(ctx).summary["datasets"]["pii.csv"]["pii_columns"]}
    assert found == {"email", "phone", "contact"}  # the name-only hint (0.6) is below 0.7


def test_five_digit_codes_are_postal_pii_only_with_a_name_hint(tmp_path: Path) -> None:
    sql = "SELECT CAST(10000 + range AS VARCHAR) AS zip, CAST(20000 + range AS VARCHAR) AS sku FROM range(30)"
    result = score_risk(make_ctx(tmp_path, write_parquet(tmp_path, "codes", sql)))
    found = result.summary["datasets"]["codes.csv"]["pii_columns"]
    assert [(p["column"], p["kind"], p["confidence"]) for p in found] == [("zip", "postal_code", 0.76)]


@pytest.mark.parametrize("value", [-0.1, 1.5, "high", False])
def test_score_risk_rejects_bad_threshold(tmp_path: Path, value: Any) -> None:
    ctx = make_ctx(tmp_path, write_parquet(tmp_path, "pii", PII_SQL), params={"pii_threshold": value})
    with pytest.raises(BadInput) as err:
        score_risk(ctx)
    assert err.value.code == "BAD_PARAMS"
    assert "pii_threshold" in err.value.message


CLEAN_SQL = "SELECT range AS id, 20 + range % 50 AS age, CAST(range * 3 AS VARCHAR) AS amount FROM range(100)"
DIRTY_SQL = """
WITH base AS (
    SELECT range AS id,
        CASE WHEN range % 10 = 5 OR range IN (7, 8) THEN NULL ELSE 20 + range % 50 END AS age,
        CASE WHEN range % 10 = 3 THEN 'unknown' ELSE CAST(range * 3 AS VARCHAR) END AS amount
    FROM range(97)
)
SELECT * FROM base UNION ALL SELECT * FROM base WHERE id < 3
"""


def test_quality_score_is_lower_for_dirty_file(tmp_path: Path) -> None:
    clean = write_parquet(tmp_path, "clean", CLEAN_SQL)
    dirty = write_parquet(tmp_path, "dirty", DIRTY_SQL)
    profile = unified_profiler(make_ctx(tmp_path, clean, dirty))
    result = score_risk(make_ctx(tmp_path, clean, dirty, previous={"unified-profiler": profile.summary}))
    assert result.summary["profile_source"] == "unified-profiler"

    clean_ds, dirty_ds = result.summary["datasets"]["clean.csv"], result.summary["datasets"]["dirty.csv"]
    assert (clean_ds["quality_score"], clean_ds["quality_level"], clean_ds["reasons"]) == (100.0, "good", [])
    assert {(r["reason"], r["deduction"]) for r in dirty_ds["reasons"]} == {
        ("column 'age' is 12.0% null", 2.4),
        ("column 'amount' mixes numbers and text (90.0% numeric)", 5.0),
        ("3 duplicate rows (3.0%)", 3.5),
    }
    assert dirty_ds["quality_score"] == 89.1 < clean_ds["quality_score"]
    assert dirty_ds["pii_columns"] == []

    # Without the profiler's summary the agent profiles by itself and reaches the same result.
    own = score_risk(make_ctx(tmp_path, clean, dirty))
    assert own.summary["profile_source"] == "own"
    assert own.summary["datasets"] == result.summary["datasets"]


def test_null_like_strings_cost_points(tmp_path: Path) -> None:
    sql = "SELECT range AS id, CASE WHEN range < 20 THEN 'N/A' ELSE 'ok' || range END AS note FROM range(100)"
    result = score_risk(make_ctx(tmp_path, write_parquet(tmp_path, "nl", sql)))
    reasons = {r["reason"]: r["deduction"] for r in result.summary["datasets"]["nl.csv"]["reasons"]}
    assert reasons == {
        "column 'note' is 20.0% null (incl. 20 null-like strings)": 4.0,
        "column 'note' encodes missing values as text ('N/A')": 1.0,
    }


# ----------------------------------------------------------------------------------------------- drift


def test_drift_none_for_identical_files(tmp_path: Path, people: Dataset) -> None:
    copy = Dataset("people-again.csv", people.path)
    result = drift_detector(make_ctx(tmp_path, people, copy))
    summary = result.summary
    assert summary["overall_level"] == "none"
    assert summary["schema"] == {"added": [], "removed": [], "type_changed": []}
    assert {c["level"] for c in summary["columns"].values()} == {"none"}
    assert all(c["psi"] == 0.0 for c in summary["columns"].values())
    assert summary["columns"]["id"]["ks_statistic"] == 0.0
    assert result.files["drift.json"].exists()


def test_drift_high_for_shifted_distribution(tmp_path: Path) -> None:
    a = write_parquet(
        tmp_path,
        "a",
        "SELECT range AS x, CASE WHEN range % 2 = 0 THEN 'a' ELSE 'b' END AS cat FROM range(1000)",
    )
    b = write_parquet(
        tmp_path,
        "b",
        "SELECT range + 500 AS x, "
        "CASE WHEN range < 100 THEN 'a' WHEN range < 200 THEN 'b' ELSE 'c' END AS cat FROM range(1000)",
    )
    summary = drift_detector(make_ctx(tmp_path, a, b)).summary
    x, cat = summary["columns"]["x"], summary["columns"]["cat"]
    assert (x["method"], x["level"]) == ("numeric", "high")
    assert x["psi"] > 1
    assert x["ks_statistic"] == 0.5
    assert x["mean_shift"] == 500.0
    assert (cat["method"], cat["level"]) == ("categorical", "high")
    assert cat["new_categories"] == {"count": 1, "rows": 800, "examples": ["c"]}
    assert cat["missing_categories"]["count"] == 0
    assert 0 < cat["js_divergence"] <= 1
    assert summary["overall_level"] == "high"
    assert summary["baseline"] == "a.csv" and summary["current"] == "b.csv"


def test_drift_reports_schema_changes(tmp_path: Path) -> None:
    a = write_parquet(tmp_path, "a", "SELECT range AS id, range AS x, 'o' AS old FROM range(20)")
    b = write_parquet(tmp_path, "b", "SELECT range AS id, CAST(range AS VARCHAR) AS x, 1 AS new FROM range(20)")
    summary = drift_detector(make_ctx(tmp_path, a, b, params={"bins": 4})).summary
    assert summary["schema"]["added"] == ["new"]
    assert summary["schema"]["removed"] == ["old"]
    assert summary["schema"]["type_changed"] == [
        {"column": "x", "from": "BIGINT", "to": "VARCHAR", "compatible": False}
    ]
    assert summary["columns"]["x"]["level"] == "high"
    assert summary["columns"]["id"]["level"] == "none"
    assert set(summary["columns"]) == {"id", "x"}
    assert summary["overall_level"] == "high"
    assert summary["bins"] == 4


def test_drift_needs_two_files(tmp_path: Path, people: Dataset) -> None:
    with pytest.raises(BadInput) as err:
        drift_detector(make_ctx(tmp_path, people))
    assert err.value.code == "DRIFT_NEEDS_TWO_FILES"


@pytest.mark.parametrize("value", [1, 101, "10"])
def test_drift_rejects_bad_bins(tmp_path: Path, people: Dataset, value: Any) -> None:
    with pytest.raises(BadInput) as err:
        drift_detector(make_ctx(tmp_path, people, people, params={"bins": value}))
    assert err.value.code == "BAD_PARAMS"
    assert "bins" in err.value.message


# ------------------------------------------------------------------------------------------------ slow


@pytest.mark.slow
def test_profiler_on_a_million_rows(tmp_path: Path) -> None:
    big = write_parquet(
        tmp_path,
        "big",
        """SELECT range AS id, (range % 1000) / 10 AS amount, 'cat_' || (range % 7) AS category,
                  'user' || range || '@example.com' AS email,
                  DATE '2020-01-01' + CAST(range % 1000 AS INTEGER) AS day,
                  CASE WHEN range % 100 = 0 THEN 'NA' ELSE CAST(range % 500 AS VARCHAR) END AS code,
                  range % 2 = 0 AS flag
           FROM range(1000000)""",
    )
    cols = columns_of(unified_profiler(make_ctx(tmp_path, big)), "big.csv")
    assert cols["id"]["row_count"] == 1_000_000
    assert (cols["id"]["unique_count"], cols["id"]["min"], cols["id"]["max"]) == (1_000_000, 0, 999_999)
    assert cols["amount"]["mean"] == 49.95
    assert cols["category"]["unique_count"] == 7
    assert cols["email"]["patterns"] == {"email": 1.0}
    assert (cols["code"]["inferred_type"], cols["code"]["null_like_count"]) == ("integer", 10_000)
    assert cols["day"]["max"] == "2022-09-26"
    assert cols["flag"]["true_count"] == 500_000
