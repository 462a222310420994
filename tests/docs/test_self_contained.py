"""A clone explains itself: no file points at documents outside the repository, and every
relative link in the markdown pages leads to a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIPPED_DIRS = {".git", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis",
                ".import_linter_cache", ".schemathesis", ".layerwise", "__pycache__",
                "layerwise.egg-info"}
SKIPPED_TOP = {"data", "mlruns"}  # the user's data files and local runs (.gitignore)
TEXT = {".py", ".md", ".toml", ".yml", ".yaml", ".txt", ".cfg", ".ini", ".sql", ".sh", ""}
# Built from parts so that this file does not name them itself.
OUTSIDE = re.compile("|".join(re.escape(p) for p in (
    "../" + "shared", "DESIGN" + ".md", "STYLE" + ".md", "NOTES" + ".md", "/tmp/" + "prof")))
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def _files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        parts = path.relative_to(ROOT).parts
        if (any(part in SKIPPED_DIRS for part in parts[:-1]) or parts[0] in SKIPPED_TOP
                or not path.is_file()):
            continue
        if path.suffix in TEXT or path.name in ("Makefile", "Dockerfile"):
            found.append(path)
    return found


def test_nothing_points_outside_the_repository():
    hits = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
            for path in _files()
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
            if OUTSIDE.search(line)]
    assert not hits, "pointers outside the repository:\n" + "\n".join(hits)


def test_every_relative_link_in_the_pages_resolves():
    pages = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = [f"{page.relative_to(ROOT)}: {target}"
              for page in pages for target in LINK.findall(page.read_text())
              if not re.match(r"[a-z]+:", target) and not (page.parent / target).exists()]
    assert not broken, f"links to files that do not exist: {broken}"
