"""Agent params: one pydantic model per agent, validated by ``parse_params`` into BAD_PARAMS errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from activities.analysis.agents.base import AgentContext, Dataset
from activities.analysis.agents.clean.nulls import null_handler
from activities.analysis.agents.clean.params import NullHandlerParams
from activities.analysis.agents.master.params import GoldenRecordBuilderParams
from activities.analysis.agents.params import AgentParams, describe, parse_params
from activities.analysis.agents.profile.profiler import unified_profiler
from activities.analysis.agents.registry import AGENTS
from activities.analysis.catalog import AGENT_PARAMS, TOOLS, validate_params
from conveyor.errors import BadInput


def _bad(agent: str, raw: Any) -> BadInput:
    with pytest.raises(BadInput) as err:
        parse_params(agent, AGENT_PARAMS[agent], raw)
    assert err.value.code == "BAD_PARAMS"
    return err.value


def test_every_agent_has_a_params_model_whose_fields_are_documented() -> None:
    assert set(AGENT_PARAMS) == set(AGENTS)
    for agent, model in AGENT_PARAMS.items():
        assert issubclass(model, AgentParams) and model is not AgentParams, agent
        assert model.model_fields, agent
        for name, field in model.model_fields.items():
            assert field.description and len(field.description) > 15, (agent, name)
        parse_params(agent, model, {})  # every param has a default


@pytest.mark.parametrize(
    ("agent", "raw", "param", "expected"),
    [
        ("null-handler", {"strategy": "avg"}, "strategy", "must be one of keep, drop_rows, fill, drop_columns_over"),
        ("null-handler", {"fill_numeric": "mode"}, "fill_numeric", "must be one of mean, median, zero or a number"),
        ("null-handler", {"drop_columns_over": 1.5}, "drop_columns_over", "must be a number in [0, 1]"),
        ("type-fixer", {"min_parse_rate": 0}, "min_parse_rate", "must be a number in (0, 1]"),
        ("field-standardizer", {"max_categories": 2.5}, "max_categories", "must be an integer from 0 to 1000"),
        ("field-standardizer", {"mappings": {"a": ["x"]}}, "mappings", "must be an object whose values are each"),
        ("duplicate-resolver", {"near": "yes"}, "near", "must be true or false"),
        ("outlier-flagger", {"columns": [1]}, "columns", "must be a list of non-empty strings"),
        ("email-validator", {"columns": [""]}, "columns", "must be a list of non-empty strings"),
        ("unified-profiler", {"top_n": "5"}, "top_n", "must be an integer from 1 to 100"),
        ("score-risk", {"pii_threshold": True}, "pii_threshold", "must be a number in [0, 1]"),
        ("drift-detector", {"bins": 1}, "bins", "must be an integer from 2 to 100"),
        ("key-identifier", {"min_overlap": float("nan")}, "min_overlap", "must be a number in [0, 1]"),
        ("entity-matcher", {"within_sources": 1}, "within_sources", "must be true or false"),
        (
            "golden-record-builder",
            {"column_rules": {"name": "loudest"}},
            "column_rules",
            "must be an object whose values are each one of most_frequent, most_complete",
        ),
    ],
)
def test_a_bad_value_names_the_agent_the_param_and_what_it_expects(
    agent: str, raw: dict[str, Any], param: str, expected: str
) -> None:
    err = _bad(agent, raw)
    assert err.message.startswith(f"{agent}: param '{param}' {expected}")
    assert err.message.endswith(f"got {raw[param]!r}")
    assert err.details == {"agent": agent, "param": param, "value": repr(raw[param])}


@pytest.mark.parametrize("agent", sorted(AGENT_PARAMS))
def test_unknown_param_names_are_refused(agent: str) -> None:
    err = _bad(agent, {"colums": ["a"], "zz": 1})
    assert "unknown params 'colums', 'zz'" in err.message and err.message.startswith(f"{agent}: ")
    assert ", ".join(AGENT_PARAMS[agent].model_fields) in err.message  # lists the known ones
    assert err.details["agent"] == agent and err.details["param"] == "colums"
    assert err.details["unknown"] == ["colums", "zz"]


def test_good_params_are_parsed_into_the_model() -> None:
    nulls = parse_params("null-handler", NullHandlerParams, {"strategy": " Fill ", "fill_numeric": 0, "columns": "b"})
    assert (nulls.strategy, nulls.fill_numeric, nulls.columns, nulls.fill_text) == ("fill", 0.0, ["b"], "unknown")
    profiler = parse_params("unified-profiler", AGENT_PARAMS["unified-profiler"], {"top_n": 3.0})
    assert profiler.model_dump() == {"top_n": 3}  # an integral float is an integer
    assert parse_params("unified-profiler", AGENT_PARAMS["unified-profiler"], {"top_n": None}).top_n == 5  # default
    assert "unknown param 'unused'" in _bad("unified-profiler", {"unused": None}).message
    golden = parse_params(
        "golden-record-builder",
        GoldenRecordBuilderParams,
        {"source_priority": ["crm", "crm"], "column_rules": {"Email": "MOST_FREQUENT"}, "threshold": 92},
    )
    assert golden.source_priority == ["crm"] and golden.column_rules == {"Email": "most_frequent"}
    assert golden.default_rule() == "source_priority" and golden.threshold == 92.0
    assert parse_params("drift-detector", AGENT_PARAMS["drift-detector"], None).model_dump() == {"bins": 10}


def test_params_models_are_frozen() -> None:
    params = parse_params("null-handler", NullHandlerParams, {})
    with pytest.raises(ValueError, match="frozen"):
        params.strategy = "fill"  # type: ignore[misc]


def test_a_rule_without_its_param_is_refused() -> None:
    err = _bad("golden-record-builder", {"column_rules": {"name": "most_recent"}})
    assert err.message == "golden-record-builder: rule 'most_recent' needs param 'recency_column'"
    assert err.details == {"agent": "golden-record-builder", "param": "recency_column", "value": None}


def test_params_that_are_not_an_object_are_refused() -> None:
    err = _bad("score-risk", [0.5])
    assert err.message == "score-risk: params must be a JSON object {param: value}, got [0.5]"


def test_long_values_are_clipped_in_messages() -> None:
    err = _bad("null-handler", {"strategy": "x" * 500})
    assert len(err.details["value"]) == 80 and err.details["value"].endswith("…")


def test_describe_reads_json_schemas() -> None:
    assert describe({"type": "integer", "minimum": 1}) == "an integer >= 1"
    assert describe({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}) == "a number in (0, 1)"
    assert describe({"anyOf": [{"type": "string"}, {"type": "null"}]}) == "a string"
    assert describe({"type": "object", "additionalProperties": {"type": "string"}}) == "an object of strings"


def test_validate_params_checks_every_agent_of_the_tool_and_refuses_other_ids() -> None:
    validate_params("clean-my-data", {"outlier-flagger": {"method": "zscore"}, "email-validator": {}})
    with pytest.raises(BadInput, match=r"outlier-flagger: param 'k'") as err:
        validate_params("clean-my-data", {"null-handler": {}, "outlier-flagger": {"k": -1}})
    assert err.value.code == "BAD_PARAMS"
    with pytest.raises(BadInput, match="params name unknown agent 'unified-profiler' for tool clean-my-data") as err:
        validate_params("clean-my-data", {"unified-profiler": {"top_n": 3}})
    assert err.value.code == "BAD_PARAMS"
    with pytest.raises(BadInput, match="null-handler: params must be a JSON object") as err:
        validate_params("clean-my-data", {"null-handler": "fill"})
    assert {a.id for t in TOOLS.values() for a in t.agents} == set(AGENT_PARAMS)


def _ctx(tmp_path: Path, params: dict[str, Any]) -> AgentContext:
    path = tmp_path / "data.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT 'N/A' AS a, 1 AS b) TO '{path}' (FORMAT parquet)")
    return AgentContext(con, [Dataset("data.csv", path)], [Dataset("data.csv", path)], params, {}, tmp_path / "out")


def test_agents_refuse_unknown_param_names(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="null-handler: unknown param 'stratgy'") as err:
        null_handler(_ctx(tmp_path, {"stratgy": "fill"}))
    assert err.value.code == "BAD_PARAMS"
    with pytest.raises(BadInput, match="unified-profiler: unknown param 'top'"):
        unified_profiler(_ctx(tmp_path, {"top": 3}))
