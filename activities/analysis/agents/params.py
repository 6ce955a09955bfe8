"""Agent params: each agent declares a pydantic model of them; :func:`parse_params` validates a raw dict into it.

A model's field descriptions are the params' documentation (``GET /api/tools`` serves each model's JSON Schema).
Every failure is ``BadInput(code="BAD_PARAMS")`` with a message naming the agent, the param and what it expects,
and ``details={"agent", "param", "value"}``. Models are strict (no ``"5"`` for 5, no ``1`` for true), refuse
unknown names, read a null value as "not given" (the default) and accept choices in any case.

This module and the agents' params modules load no heavy library: the API imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from conveyor.errors import BadInput

#: Longest shown value (``repr``) in an error message.
SHOWN_CHARS = 80


class AgentParams(BaseModel):
    """An agent's params; an agent without params declares this model itself (it accepts only ``{}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


P = TypeVar("P", bound=AgentParams)


def _fold(value: Any) -> Any:
    """Choices in any case and with surrounding whitespace."""
    return value.strip().lower() if isinstance(value, str) else value


def _integral(value: Any) -> Any:
    """``2.0`` is the integer 2."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _listify(value: Any) -> Any:
    """A single name is a list of one."""
    return [value] if isinstance(value, str) else value


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


Folded = BeforeValidator(_fold)
"""Annotate a ``Literal`` choice with this to accept it in any case (``Annotated[Literal["a", "b"], Folded]``)."""

Int = Annotated[int, BeforeValidator(_integral)]
"""An integer (an integral float such as ``2.0`` too, but never a bool or a string)."""

Name = Annotated[str, Field(min_length=1)]
"""A non-empty string."""

Names = Annotated[list[Name], BeforeValidator(_listify), AfterValidator(_unique)]
"""A list of non-empty strings, repeats dropped; a single string is a list of one."""


def needs(param: str, why: str) -> PydanticCustomError:
    """The error a model validator raises for a combination of params (``why`` names the missing one)."""
    return PydanticCustomError("param_needed", why, {"param": param})


def shown(value: Any) -> str:
    """A value as error messages show it: its ``repr``, clipped."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def bad_param(agent: str, param: str, value: Any, expected: str) -> BadInput:
    """``<agent>: param '<param>' <expected>, got <value>`` as ``BadInput(code="BAD_PARAMS")``."""
    show = shown(value)
    return BadInput(
        f"{agent}: param '{param}' {expected}, got {show}",
        code="BAD_PARAMS",
        details={"agent": agent, "param": param, "value": show},
    )


def parse_params(agent_id: str, model: type[P], raw: Any) -> P:
    """Validate an agent's raw params (a JSON object; None is ``{}``) into its model; BAD_PARAMS otherwise.

    A param given as null takes its default (an unknown name is refused, null or not).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        show = shown(raw)
        raise BadInput(
            f"{agent_id}: params must be a JSON object {{param: value}}, got {show}",
            code="BAD_PARAMS",
            details={"agent": agent_id, "param": None, "value": show},
        )
    given = {k: v for k, v in raw.items() if v is not None or k not in model.model_fields}
    try:
        return model.model_validate(given)
    except ValidationError as err:
        raise _bad_params(agent_id, model, given, err.errors(include_url=False)) from None


def _bad_params(agent: str, model: type[AgentParams], given: dict[str, Any], errors: list[ErrorDetails]) -> BadInput:
    unknown = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and e["loc"]]
    if unknown:
        names = ", ".join(f"'{n}'" for n in unknown)
        known = ", ".join(model.model_fields) or "none"
        show = shown(given[unknown[0]])
        return BadInput(
            f"{agent}: unknown param{'s' if len(unknown) > 1 else ''} {names}; known params: {known}",
            code="BAD_PARAMS",
            details={"agent": agent, "param": unknown[0], "value": show, "unknown": unknown},
        )
    first = errors[0]
    if not first["loc"]:  # a model validator: a combination of params
        param = str((first.get("ctx") or {}).get("param", ""))
        return BadInput(
            f"{agent}: {first['msg']}",
            code="BAD_PARAMS",
            details={"agent": agent, "param": param, "value": shown(given[param]) if param in given else None},
        )
    name = str(first["loc"][0])
    return bad_param(agent, name, given.get(name), "must be " + describe(field_schemas(model)[name]))


@cache
def field_schemas(model: type[AgentParams]) -> dict[str, dict[str, Any]]:
    """The JSON Schema of each of a model's fields, by name."""
    properties: dict[str, dict[str, Any]] = model.model_json_schema()["properties"]
    return properties


def describe(schema: dict[str, Any]) -> str:
    """What a JSON Schema accepts, in words: ``an integer from 1 to 100``, ``one of keep, fill``…"""
    if "anyOf" in schema:
        return " or ".join(describe(s) for s in schema["anyOf"] if s.get("type") != "null")
    if "enum" in schema:
        return "one of " + ", ".join(str(v) for v in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    kind = schema.get("type")
    words: dict[str, Callable[[dict[str, Any]], str]] = {
        "integer": lambda s: "an integer" + _range(s, integer=True),
        "number": lambda s: "a number" + _range(s, integer=False),
        "boolean": lambda _s: "true or false",
        "string": lambda s: "a non-empty string" if s.get("minLength") else "a string",
        "array": _describe_list,
        "object": _describe_object,
    }
    return words[kind](schema) if isinstance(kind, str) and kind in words else "valid"


def _range(schema: dict[str, Any], *, integer: bool) -> str:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if low is None and high is None:
        return ""
    if integer and "minimum" in schema and "maximum" in schema:
        return f" from {low:g} to {high:g}"
    if low is None:
        return f" {'<' if 'exclusiveMaximum' in schema else '<='} {high:g}"
    if high is None:
        return f" {'>' if 'exclusiveMinimum' in schema else '>='} {low:g}"
    opening = "(" if "exclusiveMinimum" in schema else "["
    closing = ")" if "exclusiveMaximum" in schema else "]"
    return f" in {opening}{low:g}, {high:g}{closing}"


def _describe_list(schema: dict[str, Any]) -> str:
    items = schema.get("items", {})
    if items.get("type") == "string" and "enum" not in items:
        return "a list of non-empty strings" if items.get("minLength") else "a list of strings"
    return f"a list whose items are each {describe(items)}"


def _describe_object(schema: dict[str, Any]) -> str:
    values = schema.get("additionalProperties")
    if not isinstance(values, dict):
        return "an object"
    if values.get("type") == "string" and "enum" not in values:
        return "an object of strings"
    return f"an object whose values are each {describe(values)}"
