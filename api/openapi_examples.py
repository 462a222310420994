"""The specs in examples/ as OpenAPI examples of the two submissions.

POST /v1/experiments and POST /v1/sweeps get every example file of their kind (a sweep file has
`base:` and `space:`) under their request body's `examples`, named by file, with the file's
leading comment (what to look at in MLflow) as the description. The docs page then offers specs
that run, and Schemathesis's examples phase submits them: specs that pass validation and reach
the dry run and the queue, which generated data seldom does.

A deployment without the examples/ folder (the image copies only the packages) gets the schema
unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI

EXAMPLES_DIR = Path(__file__).parents[1] / "examples"
ROUTES = {"experiment": "/v1/experiments", "sweep": "/v1/sweeps"}


def spec_examples(directory: Path = EXAMPLES_DIR) -> dict[str, dict[str, Any]]:
    """Route -> {example name: OpenAPI Example Object} for each spec file in `directory`."""
    found: dict[str, dict[str, Any]] = {route: {} for route in ROUTES.values()}
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else ():
        text = path.read_text()
        value = yaml.safe_load(text)
        if not isinstance(value, dict):
            continue
        kind = "sweep" if "base" in value or "space" in value else "experiment"
        comment = _leading_comment(text)
        example: dict[str, Any] = {"summary": path.stem, "value": value}
        if comment:
            example["description"] = comment
        found[ROUTES[kind]][path.stem] = example
    return found


def add_spec_examples(app: FastAPI, directory: Path = EXAMPLES_DIR) -> None:
    """Wrap `app.openapi` so the schema it serves carries the examples (read once, here)."""
    examples = spec_examples(directory)
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()  # FastAPI's own, cached on the app after the first call
        for route, named in examples.items():
            operation = schema.get("paths", {}).get(route, {}).get("post")
            if not named or operation is None:
                continue
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                content["application/json"]["examples"] = named
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _leading_comment(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)
