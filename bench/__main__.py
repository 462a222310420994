"""`python -m bench [--tiny]`: every row, one table, and bench/results/latest.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import (
    cluster_sim,
    diagnosis,
    diagnosis_cost,
    faults,
    instrumentation,
    queue_depth,
    service,
    submission_checks,
    watch_cost,
)
from tests.utils.server import free_port

RESULTS = Path(__file__).parent / "results"


def _sweep_rows(tiny: bool) -> list[dict[str, Any]]:
    try:
        from bench import big_sweep, stop_on, sweeps
    except ImportError:
        return []
    # tiny: only that they run
    return (sweeps.run(trials=2 if tiny else 64, tiny=tiny) + stop_on.run(tiny)
            + big_sweep.run(tiny))


def main() -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a quick run that only checks the "
                                                             "benchmarks work")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="where the JSON report goes (default: %(default)s)")
    args = parser.parse_args()
    tiny = args.tiny
    started = time.time()
    # Five interleaved repeats: the plain loop alone moves between repeats by as much as row
    # 1's margin (BENCHMARKS.md), and a median of three followed it.
    rows = instrumentation.run(epochs=3 if tiny else 200, repeats=1 if tiny else 5,
                               http_port=free_port())
    rows += watch_cost.rows(epochs=3 if tiny else 200, repeats=1 if tiny else 3,
                            results=args.results, tiny=tiny)
    rows += service.run(jobs=2 if tiny else 10, submissions=40 if tiny else 1000,
                        clients=4 if tiny else 8, crowd=10 if tiny else 200)
    rows += queue_depth.run(tiny, results=args.results)
    rows += submission_checks.run(tiny)
    rows += _sweep_rows(tiny)
    rows += diagnosis.run(tiny, results=args.results)
    rows += diagnosis_cost.run(tiny)
    rows += faults.run(tiny, results=args.results)  # tiny: 2 cases through REST
    if not tiny:  # its tiny run, with its properties asserted: tests/cluster/test_simulated_cluster
        rows += cluster_sim.run()
    report = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "tiny": tiny, "rows": rows}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / ("tiny.json" if tiny else "latest.json")).write_text(
        json.dumps(report, indent=2))
    _print(rows)
    return rows


def _print(rows: list[dict[str, Any]]) -> None:
    table = Table("row", "baseline", "measured", "ratio", "target", "met")
    for row in rows:
        measured = ", ".join(f"{k}={v:.3g}" for k, v in row.items()
                             if isinstance(v, float) and k != "ratio")
        ratio = f"{row['ratio']:.2f}x" if "ratio" in row else ""
        table.add_row(row["row"], row["baseline"], measured, ratio, row["target"],
                      {True: "yes", None: "-"}.get(row["met"], "[red]MISSED[/red]"))
    Console().print(table)


if __name__ == "__main__":
    main()
