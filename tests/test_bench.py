"""The benchmarks run (on a tiny size); their figures are not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_runs_tiny_and_writes_every_row(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "bench", "--tiny", "--results", str(tmp_path)],
                          cwd=ROOT, timeout=900, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "tiny.json").read_text())
    names = [row["row"] for row in report["rows"]]
    for row_number in ("1a", "2", "3", "4", "5", "6a", "6b", "7", "7b", "8", "9", "10"):
        assert any(n.startswith(row_number) for n in names), (row_number, names)
    for row in report["rows"]:
        assert {"baseline", "target", "met"} <= set(row)
