"""Where in the space each problem lives: for each pair of swept paths, a grid of their values
whose cells show the mix of verdicts their trials got (`healthy 3`, `slow 2`, `not_learning 1`,
most common first) and how many `search.stop_on` stopped; a cell's colour is its most common
verdict, paler the less its trials agree (vanishing for deep sigmoid nets, healthy with
residual skips).

Listed domains (choice, grid) keep their values in the spec's order; numeric domains are cut
into a few bins (log-spaced for loguniform), so every pair of dimensions makes a small grid.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display in a Ray worker

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from services.contract.sweep_spec import (  # noqa: E402
    ChoiceDomain,
    GridDomain,
    LogUniformDomain,
    SweepSpec,
)
from services.contract.trial_status import stop_verdict  # noqa: E402
from workers.sweeps.sweep_plots import short_label, titled  # noqa: E402

NUMERIC_BINS = 3
MAX_PANELS = 6
PANELS_PER_ROW = 3
COLORS = {"healthy": "tab:green", "vanishing": "tab:blue", "exploding": "tab:red",
          "dead_units": "dimgray", "symmetric": "tab:purple", "not_learning": "tab:orange",
          "saturated": "tab:brown", "unstable": "tab:pink", "slow": "tab:olive",
          "overfitting": "tab:cyan", "diverged": "darkred", "failed": "black"}


def trial_verdict(row: dict[str, Any]) -> str | None:
    """The verdict a trial's cell counts: the one its diagnosis stopped it for, else its own
    (the final diagnosis, or the live one of a trial a scheduler stopped); a failed trial
    without one counts as failed."""
    stopped_for = stop_verdict(row)
    if stopped_for is not None:
        return stopped_for
    if row.get("verdict"):
        return str(row["verdict"])
    return "failed" if row.get("status") == "failed" else None


def verdict_grid(rows: list[dict[str, Any]], sweep: SweepSpec) -> Figure | None:
    """One panel per pair of swept paths (one panel for a single path); None when no trial
    has a verdict (diagnostics off) or nothing was swept."""
    judged = [r for r in rows if trial_verdict(r) is not None]
    paths = list(sweep.space)
    if not judged or not paths:
        return None
    axes_of = {path: _Axis(path, sweep, judged) for path in paths}
    second: list[str | None] = [*paths[1:]] or [None]  # one swept path: one row of cells
    pairs = [(a, b) for i, a in enumerate(paths) for b in second[i:]
             if b != a][:MAX_PANELS] if len(paths) > 1 else [(paths[0], None)]
    columns = min(PANELS_PER_ROW, len(pairs))
    lines = math.ceil(len(pairs) / columns)
    fig, axes = plt.subplots(lines, columns, squeeze=False, figsize=(
        max(4.2, 3.0 + 0.9 * _widest(axes_of)) * columns, 4.2 * lines))
    panels = [ax for line in axes for ax in line]
    for ax, (x_path, y_path) in zip(panels, pairs, strict=False):
        _panel(ax, judged, axes_of[x_path], axes_of[y_path] if y_path else None)
    for ax in panels[len(pairs):]:
        ax.set_visible(False)
    stopped = sum(stop_verdict(r) is not None for r in rows)
    titled(fig, f"{sweep.display_name}: the verdicts of each cell's trials (trials per "
                f"verdict; colour: the most common); {stopped} stopped on their diagnosis")
    fig.tight_layout()
    return fig


class _Axis:
    """One swept path as grid labels: its listed values, or bins of its numeric range."""

    def __init__(self, path: str, sweep: SweepSpec, rows: list[dict[str, Any]]):
        self.path = path
        domain = sweep.space[path]
        values = [r.get("params", {}).get(path) for r in rows]
        self.listed = isinstance(domain, ChoiceDomain | GridDomain)
        if self.listed:
            self.labels = [short_label(v) for v in domain.values]  # type: ignore[union-attr]
            self.labels = list(dict.fromkeys(self.labels))
            self.edges: list[float] = []
            return
        numbers = [float(v) for v in values if isinstance(v, int | float)]
        low, high = (min(numbers), max(numbers)) if numbers else (0.0, 1.0)
        log = isinstance(domain, LogUniformDomain) and low > 0
        if log:
            self.edges = list(np.geomspace(low, high, NUMERIC_BINS + 1)) if high > low \
                else [low, high]
        else:
            self.edges = list(np.linspace(low, high, NUMERIC_BINS + 1)) if high > low \
                else [low, high]
        self.labels = [f"{a:.3g}-{b:.3g}" for a, b in itertools.pairwise(self.edges)]

    def index(self, row: dict[str, Any]) -> int | None:
        value = row.get("params", {}).get(self.path)
        if self.listed:
            label = short_label(value)
            return self.labels.index(label) if label in self.labels else None
        if not isinstance(value, int | float) or not math.isfinite(float(value)):
            return None
        inner = self.edges[1:-1]
        return int(np.searchsorted(inner, float(value), side="right"))


def _panel(ax: Any, rows: list[dict[str, Any]], x: _Axis, y: _Axis | None) -> None:
    cells: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in rows:
        i = x.index(row)
        j = y.index(row) if y is not None else 0
        if i is not None and j is not None:
            cells.setdefault((j, i), []).append(row)
    height = len(y.labels) if y is not None else 1
    image = np.ones((height, len(x.labels), 3))
    for (j, i), members in cells.items():
        counts = Counter(trial_verdict(r) for r in members).most_common()
        verdict, n = counts[0]
        share = n / len(members)
        color = np.asarray(to_rgb(COLORS.get(str(verdict), "tab:gray")))
        image[j, i] = 1.0 - (1.0 - color) * (0.35 + 0.65 * share)  # paler: less agreement
        ax.text(i, j, cell_text(members), ha="center", va="center",
                fontsize=7 if len(counts) <= 3 else 6,
                color="white" if share > 0.6 and verdict != "healthy" else "black")
    ax.imshow(image, aspect="auto")
    ax.set_xticks(range(len(x.labels)), x.labels, rotation=30, ha="right", fontsize=8)
    ax.set_xlabel(x.path)
    if y is not None:
        ax.set_yticks(range(height), y.labels, fontsize=8)
        ax.set_ylabel(y.path)
    else:
        ax.set_yticks([])
        ax.set_ylabel("every trial")


def cell_text(members: list[dict[str, Any]]) -> str:
    """A cell's mix of verdicts, one line each, most common first (`healthy 3`, `slow 2`),
    and how many of its trials search.stop_on stopped."""
    counts = Counter(trial_verdict(r) for r in members).most_common()
    lines = [f"{verdict} {n}" for verdict, n in counts]
    stopped = sum(stop_verdict(r) is not None for r in members)
    return "\n".join([*lines, *([f"({stopped} stopped)"] if stopped else [])])


def _widest(axes: dict[str, _Axis]) -> int:
    return max(len(a.labels) for a in axes.values())
