"""Every package the product code imports is declared in pyproject.toml: one that only arrives
as another's dependency can vanish with that package's next release."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OWN = {"api", "services", "workers", "models"}


def _imported_top_levels() -> dict[str, str]:
    """{top-level module: a file that imports it} over the product packages."""
    found: dict[str, str] = {}
    for package in OWN:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom)
                         and node.module and node.level == 0 else [])
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.split(r"[\[<>=! ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
            for requirement in project["dependencies"]}


def test_every_imported_package_is_declared():
    distributions = packages_distributions()
    declared = _declared()
    missing = {}
    for module, where in _imported_top_levels().items():
        if module in OWN or module in sys.stdlib_module_names or module == "__future__":
            continue
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not names & declared:
            missing[module] = (sorted(names), where)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
