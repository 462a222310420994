"""The benchmarks run (on a tiny size); their figures are not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_runs_tiny_and_writes_every_row():
    done = subprocess.run([sys.executable, "-m", "bench", "--tiny"], cwd=ROOT, timeout=900,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((ROOT / "bench" / "results" / "tiny.json").read_text())
    names = [row["row"] for row in report["rows"]]
    assert any(n.startswith("1a") for n in names) and any(n.startswith("4") for n in names)
    for row in report["rows"]:
        assert {"baseline", "target", "met"} <= set(row)
