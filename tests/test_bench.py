"""The benchmarks run (on a tiny size) and report every row of BENCHMARKS.md's table with its
figures: finite numbers, a ratio where the row's target is one, and whether it was met. The
tiny figures themselves are not judged (a tiny run measures too little to be held to them)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Rows the tiny run leaves out, and why.
FULL_ONLY = {
    "11a": "the simulated cluster takes minutes; its tiny run, with its properties asserted, "
           "is tests/cluster/test_simulated_cluster.py",
    "11b": "as 11a",
}

# A target that is a ratio: "<= 1.05x", ">= 0.97x samples/s", "each grows <= 1.5x".
RATIO_TARGET = re.compile(r"^(each grows )?[<>]=\s*\d+(\.\d+)?x")


def table_targets() -> dict[str, str]:
    """BENCHMARKS.md's table of rows: each row's id (`6a, 6b` is two) and its target."""
    lines = (ROOT / "BENCHMARKS.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| row | what |"))
    targets: dict[str, str] = {}
    for line in lines[start + 2:]:  # past the header and its rule
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        for row_id in cells[0].split(","):
            targets[row_id.strip()] = cells[-1]
    return targets


def figures(row: dict[str, Any]) -> dict[str, float]:
    """The row's measured numbers (`met`, a bool, is not one)."""
    return {key: value for key, value in row.items()
            if isinstance(value, int | float) and not isinstance(value, bool)}


def test_the_table_is_read_with_its_ratio_targets():
    """The parsing the bench test relies on: every row, the ratio targets told apart."""
    targets = table_targets()
    assert {"1a", "1b", "1c", "2", "5", "6a", "6b", "7", "7b", "9", "10", "11a", "11b"} <= set(
        targets)
    ratios = {row_id for row_id, target in targets.items() if RATIO_TARGET.match(target)}
    assert {"1a", "5", "7b", "9"} <= ratios and not {"2", "4", "6a", "7", "10"} & ratios


@pytest.mark.slow
def test_bench_runs_tiny_and_reports_every_row_with_its_figures(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "bench", "--tiny", "--results", str(tmp_path)],
                          cwd=ROOT, timeout=900, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "tiny.json").read_text())["rows"]
    for row_id, target in table_targets().items():
        if row_id in FULL_ONLY:
            continue
        reported = [row for row in rows if row["row"].startswith(f"{row_id} ")]
        assert reported, (row_id, [row["row"] for row in rows])
        for row in reported:
            numbers = figures(row)
            assert numbers, row
            assert all(math.isfinite(value) for value in numbers.values()), row
            assert row["met"] is None or isinstance(row["met"], bool), row
            if RATIO_TARGET.match(target):
                assert "ratio" in numbers and numbers["ratio"] > 0, row
