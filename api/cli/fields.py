"""`layerwise catalog KIND`: a model kind's or a dataset's fields, read from the JSON schema
the service publishes for it."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Column, Table

from api.cli.output import console, fail
from api.schemas import Catalog


def show_entry(entries: Catalog, name: str) -> None:
    """The kind or dataset `name` of the catalog `entries`: its fields and how a spec names it."""
    models = [m for m in entries.models if m["kind"] == name]
    datasets = [d for d in entries.datasets if d["name"] == name]
    if not models and not datasets:
        fail(f"no model kind or dataset {name!r}; kinds: "
             f"{', '.join(m['kind'] for m in entries.models)}; datasets: "
             f"{', '.join(d['name'] for d in entries.datasets)}")
    for model in models:
        console.print(f"model kind [bold]{model['kind']}[/bold]: {model['description']}")
        if model.get("supports"):
            console.print(f"supports: {', '.join(model['supports'])}", markup=False)
        console.print(_fields_table(model["schema"], skip={"kind"}))
        console.print(f"in a spec: model: {{kind: {model['kind']}, <field>: <value>, ...}}",
                      markup=False, highlight=False)
    for dataset in datasets:
        console.print(f"dataset [bold]{dataset['name']}[/bold]: {dataset['description']}")
        console.print(_fields_table(dataset["params_schema"]))
        console.print(f"in a spec: data: {{name: {dataset['name']}, params: {{<field>: "
                      "<value>, ...}}", markup=False, highlight=False)


def _fields_table(schema: dict[str, Any], *, skip: set[str] | None = None) -> Table:
    """A pydantic JSON schema's fields: name, type, default, choices, description; an object
    field's own fields follow it as `field.sub` (`field[].sub` for a list of them)."""
    defs = schema.get("$defs", {})
    rows = _fields(schema, defs, "", skip or set(), depth=0)
    table = Table(Column("field", no_wrap=True, min_width=max((len(r[0]) for r in rows),
                                                             default=5)),
                  Column("type", overflow="fold"), Column("default", overflow="fold"),
                  Column("choices", overflow="fold"), "description")
    for path, field, required in rows:
        default = "(required)" if required else (
            _value(field["default"]) if "default" in field else "")
        table.add_row(path, _type(field, defs), default,
                      ", ".join(_value(c) for c in _choices(field, defs)),
                      field.get("description", ""))
    return table


def _fields(schema: dict[str, Any], defs: dict[str, Any], prefix: str, skip: set[str], *,
            depth: int) -> list[tuple[str, dict[str, Any], bool]]:
    rows: list[tuple[str, dict[str, Any], bool]] = []
    required = set(schema.get("required", []))
    for key, field in schema.get("properties", {}).items():
        if key in skip:
            continue
        rows.append((prefix + key, field, key in required and "default" not in field))
        if depth >= 3:
            continue
        for inner, marker in _objects(field, defs):
            rows += _fields(inner, defs, f"{prefix}{key}{marker}.", set(), depth=depth + 1)
    return rows


def _objects(field: dict[str, Any], defs: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """The object schemas (with fields) a field holds: itself, its items ('[]'), a variant."""
    field = _deref(field, defs)
    if field.get("properties"):
        return [(field, "")]
    if field.get("type") == "array" and isinstance(field.get("items"), dict):
        return [(inner, "[]") for inner, _ in _objects(field["items"], defs)]
    found: list[tuple[dict[str, Any], str]] = []
    for option in field.get("anyOf", []) + field.get("oneOf", []):
        found += _objects(option, defs)
    return found


def _deref(field: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """`field` with a `$ref` (or an allOf of one) replaced by what it names."""
    for _ in range(10):
        if "$ref" in field:
            target = defs.get(field["$ref"].rsplit("/", 1)[-1], {})
            field = {**target, **{k: v for k, v in field.items() if k != "$ref"}}
        elif len(field.get("allOf", [])) == 1:
            field = {**field["allOf"][0], **{k: v for k, v in field.items() if k != "allOf"}}
        else:
            break
    return field


_TYPES = {"integer": "int", "number": "float", "string": "str", "boolean": "bool",
          "null": "null", "object": "mapping"}


def _type(field: dict[str, Any], defs: dict[str, Any]) -> str:
    """A readable type: `int 1..1000`, `list of int`, `int | null`, `choice`, a model's name."""
    field = _deref(field, defs)
    options = field.get("anyOf") or field.get("oneOf")
    if options:
        return " | ".join(dict.fromkeys(_type(option, defs) for option in options))
    if "enum" in field:
        return "choice"
    if "const" in field:
        return _value(field["const"])
    kind = field.get("type")
    if isinstance(kind, list):
        return " | ".join(_TYPES.get(k, str(k)) for k in kind)
    if kind == "array":
        items = field.get("items")
        inner = _type(items, defs) if isinstance(items, dict) else "any"
        return f"list of {inner}"
    if field.get("properties"):
        return str(field.get("title") or "mapping")
    text = _TYPES.get(str(kind), str(kind) if kind else "any")
    low = field.get("minimum", field.get("exclusiveMinimum"))
    high = field.get("maximum", field.get("exclusiveMaximum"))
    if low is not None or high is not None:
        left = "(" if "exclusiveMinimum" in field else "["
        right = ")" if "exclusiveMaximum" in field else "]"
        text += f" {left}{_value(low) if low is not None else ''}.." \
                f"{_value(high) if high is not None else ''}{right}"
    return text


def _choices(field: dict[str, Any], defs: dict[str, Any]) -> list[Any]:
    """The values a field may take when they are a list: an enum, Literals, or such options."""
    field = _deref(field, defs)
    if "enum" in field:
        return list(field["enum"])
    choices: list[Any] = []
    for option in field.get("anyOf", []) + field.get("oneOf", []):
        option = _deref(option, defs)
        if "const" in option:
            choices.append(option["const"])
        choices += option.get("enum", [])
    if field.get("type") == "array" and isinstance(field.get("items"), dict):
        return _choices(field["items"], defs)
    return choices


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)
