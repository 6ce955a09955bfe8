"""The master-my-data agents: candidate keys, entity matching and golden records on small customer files."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from activities.analysis.agents.base import AgentContext, AgentResult, Dataset
from activities.analysis.agents.master.golden import golden_record_builder
from activities.analysis.agents.master.keys import key_identifier
from activities.analysis.agents.master.matching import entity_matcher
from conveyor.errors import BadInput

COLUMNS = "id VARCHAR, name VARCHAR, email VARCHAR, phone VARCHAR, address VARCHAR, updated_at VARCHAR"

CRM_ROWS = [
    ("1", "John Smith", "john.smith@example.com", "(555) 123-4567", "12 Oak Street", "2024-01-10"),
    ("2", "Maria Garcia", "maria.g@example.com", "(555) 222-3333", "4 Elm Road", "2023-05-01"),
    ("3", "Wei Chen", "wei.chen@example.com", "(555) 444-5555", "9 Pine Ave", "2022-01-01"),
    ("4", "Jane Smith", "jane.smith@example.com", "(555) 666-7777", "77 Birch Lane", "2024-02-01"),
    ("5", "Olga Petrova", "olga@example.com", "(555) 888-9999", "1 Cedar Ct", "2021-03-03"),
]
SHOP_ROWS = [
    # the same John: email in upper case with a stray space, phone with dots, first name misspelt
    ("101", "Jon Smith", "JOHN.SMITH@EXAMPLE.COM ", "555.123.4567", "12 Oak St", "2024-06-01", "gold"),
    # the same Maria: another email, the same phone
    ("102", "Maria Garcia", "maria.garcia@work.com", "555.222.3333", "4 Elm Rd", "2022-01-01", "silver"),
    # the same Wei: no email, no phone; only the name and the address say so
    ("103", "Wei Chen", None, None, "9 Pine Avenue", "2024-03-03", None),
    # a different person with a name close to Jane Smith's, elsewhere
    ("104", "Jane Smyth", "jsmyth@other.com", "555.000.1111", "500 Market Street", "2024-04-04", "gold"),
    ("105", "Peter Jones", "peter@example.com", "555.121.2121", "3 Maple Dr", "2024-01-01", "bronze"),
]


def _sql_value(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def _write_parquet(path: Path, columns: str, rows: list[tuple[str | None, ...]]) -> Path:
    con = duckdb.connect()
    try:
        con.execute(f"CREATE TABLE t ({columns})")
        values = ", ".join("(" + ", ".join(_sql_value(v) for v in row) + ")" for row in rows)
        con.execute(f"INSERT INTO t VALUES {values}")
        con.execute(f"COPY t TO '{path}' (FORMAT parquet)")
    finally:
        con.close()
    return path


@pytest.fixture
def customers(tmp_path: Path) -> list[Dataset]:
    crm = _write_parquet(tmp_path / "crm.parquet", COLUMNS, list(CRM_ROWS))
    shop = _write_parquet(tmp_path / "shop.parquet", COLUMNS + ", loyalty_tier VARCHAR", list(SHOP_ROWS))
    return [Dataset("crm.csv", crm), Dataset("shop.csv", shop)]


def _context(
    tmp_path: Path,
    agent: str,
    current: list[Dataset],
    params: dict[str, Any] | None = None,
    reports: list[tuple[float, str]] | None = None,
) -> AgentContext:
    workdir = tmp_path / f"out_{agent}"
    workdir.mkdir(exist_ok=True)
    sink = reports if reports is not None else []
    return AgentContext(
        con=duckdb.connect(),
        inputs=list(current),
        current=list(current),
        params=params or {},
        previous={},
        workdir=workdir,
        report=lambda fraction, message: sink.append((fraction, message)),
    )


def _rows(con: duckdb.DuckDBPyConnection, result: AgentResult, order: str) -> list[dict[str, Any]]:
    assert result.current is not None
    path = str(result.current[0].path)
    cursor = con.execute(f"SELECT * FROM read_parquet('{path}') ORDER BY {order}")
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _clusters(rows: list[dict[str, Any]]) -> set[frozenset[tuple[str, int]]]:
    by_id: dict[int, set[tuple[str, int]]] = {}
    for row in rows:
        by_id.setdefault(row["cluster_id"], set()).add((row["source"], row["source_row"]))
    return {frozenset(members) for members in by_id.values()}


EXPECTED_CLUSTERS = {
    frozenset({("crm.csv", 1), ("shop.csv", 1)}),  # John / Jon Smith: email (case) and phone (format)
    frozenset({("crm.csv", 2), ("shop.csv", 2)}),  # Maria Garcia: phone
    frozenset({("crm.csv", 3), ("shop.csv", 3)}),  # Wei Chen: fuzzy name + address
    frozenset({("crm.csv", 4)}),  # Jane Smith is not Jane Smyth
    frozenset({("crm.csv", 5)}),
    frozenset({("shop.csv", 4)}),
    frozenset({("shop.csv", 5)}),
}


def test_key_identifier_finds_id_key_and_email_join(tmp_path: Path, customers: list[Dataset]) -> None:
    reports: list[tuple[float, str]] = []
    result = key_identifier(_context(tmp_path, "keys", customers, reports=reports))

    crm, shop = result.summary["datasets"]
    assert crm["best_key"] == ["id"] and shop["best_key"] == ["id"]
    top = crm["candidate_keys"][0]
    assert top["unique"] is True and top["null_ratio"] == 0.0 and "id_like_name" in top["reasons"]
    assert "email" in [c["columns"][0] for c in crm["candidate_keys"]]
    # shop's email has a null: too many for the default max_null_ratio, reported when allowed
    assert ["email"] not in [c["columns"] for c in shop["candidate_keys"]]
    lenient = key_identifier(_context(tmp_path, "keys2", customers, {"max_null_ratio": 0.25}))
    shop_keys = lenient.summary["datasets"][1]["candidate_keys"]
    shop_email = next(c for c in shop_keys if c["columns"] == ["email"])
    assert shop_email["null_ratio"] == 0.2 and shop_email["uniqueness"] == 1.0 and shop_email["unique"] is False
    joins = {(j["left_column"], j["right_column"]): j for j in result.summary["join_candidates"]}
    assert joins[("email", "email")]["value_overlap"] > 0
    assert "same_name" in joins[("email", "email")]["reasons"]
    assert json.loads(result.files["keys.json"].read_text()) == json.loads(json.dumps(result.summary))
    assert reports[-1][0] == 1.0


def test_key_identifier_falls_back_to_column_pairs(tmp_path: Path) -> None:
    rows: list[tuple[str | None, ...]] = [
        ("2024", "1", "a"),
        ("2024", "2", "a"),
        ("2025", "1", "b"),
        ("2025", "2", "b"),
    ]
    path = _write_parquet(tmp_path / "sales.parquet", "year VARCHAR, store VARCHAR, region VARCHAR", rows)
    result = key_identifier(_context(tmp_path, "keys", [Dataset("sales.csv", path)]))

    (summary,) = result.summary["datasets"]
    assert summary["pairs_checked"] is True and summary["unique_columns"] == []
    assert summary["best_key"] == ["year", "store"]
    assert result.summary["join_candidates"] == []


def test_entity_matcher_clusters_the_same_people(tmp_path: Path, customers: list[Dataset]) -> None:
    reports: list[tuple[float, str]] = []
    ctx = _context(tmp_path, "match", customers, reports=reports)
    result = entity_matcher(ctx)

    rows = _rows(ctx.con, result, "source, source_row")
    assert _clusters(rows) == EXPECTED_CLUSTERS
    assert [d.name for d in result.current or []] == ["matched"]
    assert list(rows[0])[:3] == ["source", "source_row", "cluster_id"]
    assert {"id", "name", "email", "phone", "address", "updated_at", "loyalty_tier"} <= set(rows[0])
    assert next(r for r in rows if r["source"] == "crm.csv")["loyalty_tier"] is None

    summary = result.summary
    assert summary["clusters"] == 7 and summary["records"] == 10 and summary["matched_pairs"] == 3
    assert summary["pairs_by_rule"] == {"exact:email": 1, "exact:phone": 1, "fuzzy": 1}
    assert summary["match_keys"] == ["email", "phone"] and summary["name_columns"] == ["name"]
    assert json.loads(result.files["match_report.json"].read_text())["clusters"] == 7
    with result.files["matches.csv"].open() as f:
        pairs = list(csv.DictReader(f))
    assert {(p["left_source"], p["left_row"], p["right_source"], p["right_row"], p["rule"]) for p in pairs} == {
        ("crm.csv", "1", "shop.csv", "1", "exact:email"),
        ("crm.csv", "2", "shop.csv", "2", "exact:phone"),
        ("crm.csv", "3", "shop.csv", "3", "fuzzy"),
    }
    assert float(next(p for p in pairs if p["rule"] == "fuzzy")["score"]) >= 88
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert json.dumps(summary)


def test_entity_matcher_threshold_and_explicit_keys(tmp_path: Path, customers: list[Dataset]) -> None:
    # names only, a stricter threshold: "Jon Smith" no longer matches "John Smith", "Wei Chen" still does
    params = {"match_keys": [], "threshold": 99}
    ctx = _context(tmp_path, "match", customers, params)
    clusters = _clusters(_rows(ctx.con, entity_matcher(ctx), "source, source_row"))
    assert frozenset({("crm.csv", 3), ("shop.csv", 3)}) in clusters
    assert frozenset({("crm.csv", 1)}) in clusters and frozenset({("crm.csv", 2), ("shop.csv", 2)}) in clusters


def test_entity_matcher_within_one_dataset(tmp_path: Path) -> None:
    rows: list[tuple[str | None, ...]] = [
        ("1", "Ann Lee", "ann@example.com", None, None, None),
        ("2", "Bob Stone", "bob@example.com", None, None, None),
        ("3", "Anne Lee", " ANN@example.com", None, None, None),
    ]
    path = _write_parquet(tmp_path / "people.parquet", COLUMNS, rows)
    ctx = _context(tmp_path, "match", [Dataset("people.csv", path)])
    result = entity_matcher(ctx)
    assert _clusters(_rows(ctx.con, result, "source_row")) == {
        frozenset({("people.csv", 1), ("people.csv", 3)}),
        frozenset({("people.csv", 2)}),
    }
    assert result.summary["within_sources"] is True


def test_same_name_at_another_house_number_is_another_person(tmp_path: Path) -> None:
    columns = "name VARCHAR, address VARCHAR"
    a = _write_parquet(tmp_path / "a.parquet", columns, [("Kevin Jackford", "3916 Berg Street")])
    b = _write_parquet(
        tmp_path / "b.parquet",
        columns,
        [("Kevin Jackford", "3191 Berg Street"), ("Kevin Jackfort", "3916 Berg St.")],
    )
    ctx = _context(tmp_path, "match", [Dataset("a.csv", a), Dataset("b.csv", b)])
    clusters = _clusters(_rows(ctx.con, entity_matcher(ctx), "source, source_row"))
    assert clusters == {frozenset({("a.csv", 1), ("b.csv", 2)}), frozenset({("b.csv", 1)})}


def test_entity_matcher_aligns_typed_columns_and_keeps_a_source_column(tmp_path: Path) -> None:
    con = duckdb.connect()
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    con.execute(
        "COPY (SELECT * FROM (VALUES (1, 'Ann Lee', 5551234567, 'web'), (2, 'Bob Ray', 5559876543, 'shop')) "
        f"t(id, name, phone, source)) TO '{a}' (FORMAT parquet)"
    )
    con.execute(
        "COPY (SELECT * FROM (VALUES ('x1', 'Ann', 'Lee', '+1 555-123-4567', 'ads')) "
        f"t(id, first_name, last_name, phone, source)) TO '{b}' (FORMAT parquet)"
    )
    ctx = _context(tmp_path, "match", [Dataset("a.csv", a), Dataset("b.csv", b)], {"match_keys": ["phone"]})
    result = entity_matcher(ctx)

    rows = _rows(ctx.con, result, "source, source_row")
    assert _clusters(rows) == {
        frozenset({("a.csv", 1), ("b.csv", 1)}),
        frozenset({("a.csv", 2)}),
    }
    assert result.summary["renamed_columns"] == {"source": "source_original"}
    assert [r["source_original"] for r in rows] == ["web", "shop", "ads"]
    assert [r["id"] for r in rows] == ["1", "2", "x1"]  # BIGINT and VARCHAR ids align as text


def test_golden_records_default_rules_after_matcher(tmp_path: Path, customers: list[Dataset]) -> None:
    matched = entity_matcher(_context(tmp_path, "match", customers))
    assert matched.current is not None
    ctx = _context(tmp_path, "golden", matched.current)
    result = golden_record_builder(ctx)

    rows = _rows(ctx.con, result, "cluster_id")
    assert len(rows) == 7 and [d.name for d in result.current or []] == ["golden_records"]
    assert list(rows[0])[:3] == ["cluster_id", "record_count", "sources"]
    john, maria, wei = rows[0], rows[1], rows[2]
    assert john["record_count"] == 2 and john["sources"] == "crm.csv; shop.csv"
    # most frequent, ties to the longest (then the greatest): values are trimmed first
    assert john["name"] == "John Smith" and john["phone"] == "(555) 123-4567"
    assert john["email"] == "john.smith@example.com" and john["loyalty_tier"] == "gold"
    assert maria["name"] == "Maria Garcia" and maria["email"] == "maria.garcia@work.com"
    assert wei["address"] == "9 Pine Avenue" and wei["email"] == "wei.chen@example.com"
    assert rows[3]["record_count"] == 1 and rows[3]["name"] == "Jane Smith"

    summary = result.summary
    assert summary["records_in"] == 10 and summary["golden_records"] == 7 and summary["clusters"] == 7
    assert set(summary["rules"].values()) == {"most_frequent"} and summary["matched_inline"] is False
    assert summary["conflicts_by_column"]["name"] == 1 and summary["conflicts_by_column"]["id"] == 3
    assert "loyalty_tier" not in summary["conflicts_by_column"]
    assert summary["conflicts_resolved"] == sum(summary["conflicts_by_column"].values())
    with result.files["golden_records.csv"].open() as f:
        assert len(list(csv.DictReader(f))) == 7


def test_golden_records_most_recent_runs_matcher_itself(tmp_path: Path, customers: list[Dataset]) -> None:
    ctx = _context(tmp_path, "golden", customers, {"recency_column": "updated_at"})
    result = golden_record_builder(ctx)

    rows = _rows(ctx.con, result, "cluster_id")
    john, maria, wei = rows[0], rows[1], rows[2]
    assert john["name"] == "Jon Smith" and john["phone"] == "555.123.4567" and john["updated_at"] == "2024-06-01"
    assert maria["email"] == "maria.g@example.com" and maria["updated_at"] == "2023-05-01"
    assert wei["address"] == "9 Pine Avenue" and wei["email"] == "wei.chen@example.com"
    assert result.summary["matched_inline"] is True and result.summary["matching"]["clusters"] == 7
    assert set(result.summary["rules"].values()) == {"most_recent"}
    assert {"match_report.json", "matches.csv", "golden_records.csv"} <= set(result.files)


def test_golden_records_source_priority(tmp_path: Path, customers: list[Dataset]) -> None:
    matched = entity_matcher(_context(tmp_path, "match", customers))
    assert matched.current is not None
    params = {"source_priority": ["shop", "crm.csv"], "column_rules": {"Email": "most_frequent"}}
    ctx = _context(tmp_path, "golden", matched.current, params)
    result = golden_record_builder(ctx)

    john, maria = _rows(ctx.con, result, "cluster_id")[:2]
    assert john["name"] == "Jon Smith" and john["id"] == "101" and john["phone"] == "555.123.4567"
    assert maria["address"] == "4 Elm Rd"
    assert john["email"] == "john.smith@example.com"  # overridden to most_frequent
    assert result.summary["source_priority"] == ["shop.csv", "crm.csv"]
    assert result.summary["rules"]["email"] == "most_frequent" and result.summary["rules"]["name"] == "source_priority"

    crm_first = _context(tmp_path, "golden2", matched.current, {"source_priority": ["crm"]})
    john = _rows(crm_first.con, golden_record_builder(crm_first), "cluster_id")[0]
    assert john["name"] == "John Smith" and john["loyalty_tier"] == "gold"  # shop fills what crm lacks


@pytest.mark.parametrize(
    ("agent", "params", "named"),
    [
        ("matcher", {"match_keys": ["email", "nope"]}, "nope"),
        ("matcher", {"name_columns": ["full_name"]}, "full_name"),
        ("matcher", {"threshold": 150}, "threshold"),
        ("matcher", {"max_block_size": "big"}, "max_block_size"),
        ("golden", {"recency_column": "modified"}, "modified"),
        ("golden", {"column_rules": {"colour": "most_frequent"}}, "colour"),
        ("golden", {"column_rules": {"name": "loudest"}}, "loudest"),
        ("golden", {"rule": "most_recent"}, "recency_column"),
        ("golden", {"source_priority": ["erp.csv"]}, "erp.csv"),
        ("keys", {"min_uniqueness": 2}, "min_uniqueness"),
    ],
)
def test_bad_params(tmp_path: Path, customers: list[Dataset], agent: str, params: dict[str, Any], named: str) -> None:
    run = {"matcher": entity_matcher, "golden": golden_record_builder, "keys": key_identifier}[agent]
    with pytest.raises(BadInput) as err:
        run(_context(tmp_path, agent, customers, params))
    assert err.value.code == "BAD_PARAMS"
    assert named in err.value.message


def test_matcher_without_match_columns_says_what_to_pass(tmp_path: Path) -> None:
    path = _write_parquet(tmp_path / "m.parquet", "sku VARCHAR, qty VARCHAR", [("a", "1"), ("b", "2")])
    with pytest.raises(BadInput) as err:
        entity_matcher(_context(tmp_path, "match", [Dataset("m.csv", path)]))
    assert "match_keys" in err.value.message


def _letters(seed: str, length: int) -> str:
    """SQL for a pseudo-random lowercase word drawn from ``md5(seed)``."""
    return f"left(translate(md5({seed}), '0123456789', 'ghijklmnop'), {length})"


_PHONE = "'(' || substr(d, 1, 3) || ') ' || substr(d, 4, 3) || '-' || substr(d, 7, 4)"
_DOTTED = "substr(d, 1, 3) || '.' || substr(d, 4, 3) || '.' || substr(d, 7, 4)"


@pytest.mark.slow
def test_entity_matcher_on_two_generated_files(tmp_path: Path) -> None:
    """2 x 200,000 rows; 20,000 exact duplicates (email case, phone format), 5,000 fuzzy (typo, no keys)."""
    n, exact, fuzzy = 200_000, 20_000, 5_000
    planted = exact + fuzzy
    person = f"""
        SELECT CAST(i AS VARCHAR) AS id, {_letters("'f' || i", 6)} AS first_name,
               {_letters("'l' || i", 8)} AS last_name, 'user' || i || '@example.com' AS email,
               CAST(2000000000 + i AS VARCHAR) AS d,
               CAST(1 + i % 997 AS VARCHAR) || ' ' || left(md5('s' || i), 5) || ' Street' AS address
        FROM range({n}) t(i)
    """
    # rows j < exact copy person 9j; rows below `planted` copy person 9(j - exact) + 1 with a typo
    shop = f"""
        WITH p AS ({person})
        SELECT 'B' || j AS id,
               CASE WHEN j < {planted} THEN p.first_name ELSE {_letters("'bf' || j", 6)} END AS first_name,
               CASE WHEN j < {exact} THEN p.last_name
                    WHEN j < {planted} THEN left(p.last_name, 3) || substr(p.last_name, 5)
                    ELSE {_letters("'bl' || j", 8)} END AS last_name,
               CASE WHEN j < {exact} THEN upper(p.email)
                    WHEN j >= {planted} THEN 'buyer' || j || '@example.org' END AS email,
               CASE WHEN j < {exact} THEN {_DOTTED}
                    WHEN j >= {planted} THEN CAST(3000000000 + j AS VARCHAR) END AS phone,
               CASE WHEN j < {planted} THEN p.address ELSE CAST(1 + j % 991 AS VARCHAR) || ' Other Road' END
                   AS address
        FROM range({n}) t(j)
        LEFT JOIN p ON p.id = CAST(CASE WHEN j < {exact} THEN 9 * j ELSE 9 * (j - {exact}) + 1 END AS VARCHAR)
    """
    con = duckdb.connect()
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    con.execute(
        f"COPY (SELECT id, first_name, last_name, email, {_PHONE} AS phone, address FROM ({person})) "
        f"TO '{a}' (FORMAT parquet)"
    )
    con.execute(f"COPY ({shop}) TO '{b}' (FORMAT parquet)")
    ctx = _context(tmp_path, "match", [Dataset("a.csv", a), Dataset("b.csv", b)])
    result = entity_matcher(ctx)

    summary = result.summary
    assert summary["records"] == 2 * n
    assert summary["clusters"] == 2 * n - planted
    assert summary["multi_record_clusters"] == planted and summary["largest_cluster"] == 2
    assert summary["pairs_by_rule"]["fuzzy"] == fuzzy
    assert summary["match_keys"] == ["email", "phone"] and summary["name_columns"] == [
        "first_name",
        "last_name",
    ]
