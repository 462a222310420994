"""docs/mlflow.md names every MLflow name the contract defines (services/contract/mlflow_names.py):
each constant, by its Python name and by the key it holds, and each helper."""

from __future__ import annotations

import ast
from pathlib import Path

from services.contract import mlflow_names

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "mlflow.md"


def _defined() -> list[str]:
    """Public names the module itself assigns or defines at the top level."""
    tree = ast.parse(Path(mlflow_names.__file__).read_text())
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.append(node.name)
    return [name for name in names if not name.startswith("_")]


def test_every_mlflow_name_is_on_the_page():
    page = PAGE.read_text(encoding="utf-8")
    names = _defined()
    assert {"TAG_JOB_ID", "PARENT_RUN_TAG", "repair_link_tags"} <= set(names)
    missing = [name for name in names if f"`{name}`" not in page]
    values = {name: getattr(mlflow_names, name) for name in names}
    missing += [f"{name} = {value!r}" for name, value in values.items()
                if isinstance(value, str) and f"`{value}`" not in page]
    assert not missing, f"defined in mlflow_names.py, not in docs/mlflow.md: {missing}"


def test_the_per_layer_norm_keys_are_on_the_page():
    page = PAGE.read_text(encoding="utf-8")
    for key in ("grad_norm/<layer>", "grad_norm/total", "update_norm/<layer>",
                "weight_norm/<layer>", "layers.json"):
        assert f"`{key}`" in page
