"""A sweep's parallel-coordinates plot: one vertical axis per swept path and a last one for the
metric, one line per trial through its values, coloured by its metric (brighter: better); the
trials stopped on their diagnosis or by the scheduler are grey, beneath the others. Listed
values (choice, grid) sit evenly on their axis in the spec's order; numeric ones on their
range, log-scaled for loguniform."""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display in a Ray worker

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from services.contract.sweep_spec import ChoiceDomain, GridDomain, LogUniformDomain, SweepSpec  # noqa: E402
from services.contract.trial_status import TrialStatus, trial_status  # noqa: E402
from workers.sweeps.sweep_plots import (  # noqa: E402
    STOPPED,
    STOPPED_COLOR,
    legend_below,
    short_label,
    titled,
)

DRAWN = (TrialStatus.SUCCEEDED, *STOPPED)
NUMERIC_TICKS = 4


class _Axis:
    """One vertical axis: where each trial's value sits on it (0 to 1) and its tick labels."""

    def __init__(self, name: str, values: list[Any], domain: Any = None):
        self.name = name
        if isinstance(domain, ChoiceDomain | GridDomain):
            labels = list(dict.fromkeys([*map(short_label, domain.values),
                                         *map(short_label, values)]))
            self.positions = [_even(labels.index(short_label(v)), len(labels)) for v in values]
            self.ticks = [(_even(i, len(labels)), label) for i, label in enumerate(labels)]
            return
        numbers = [float(v) for v in values]
        log = isinstance(domain, LogUniformDomain) and min(numbers) > 0
        scale = np.log10 if log else (lambda x: x)
        low, high = float(scale(min(numbers))), float(scale(max(numbers)))
        span = high - low

        def place(x: float) -> float:
            return 0.5 if span == 0 else (float(scale(x)) - low) / span

        self.positions = [place(x) for x in numbers]
        marks = np.linspace(low, high, NUMERIC_TICKS) if span else np.array([low])
        self.ticks = [(0.5 if span == 0 else (m - low) / span,
                       f"{10 ** m if log else m:.3g}") for m in marks]


def parallel_coordinates(rows: list[dict[str, Any]], sweep: SweepSpec) -> Figure | None:
    """The plot, over the trials with a finite metric that trained to the end or were
    stopped; None when no trial has one or nothing was swept."""
    metric, paths = sweep.search.metric, list(sweep.space)
    drawn = [r for r in rows if trial_status(r) in DRAWN and _finite(r.get("metric"))
             and all(p in (r.get("params") or {}) for p in paths)]
    if not drawn or not paths:
        return None
    axes = [_Axis(p, [r["params"][p] for r in drawn], sweep.space[p]) for p in paths]
    axes.append(_Axis(metric, [float(r["metric"]) for r in drawn]))
    # The colours spread over the trials drawn in colour (the grey ones would squeeze them).
    coloured = [r for r in drawn if trial_status(r) not in STOPPED] or drawn
    values = [float(r["metric"]) for r in coloured]
    norm = Normalize(min(values), max(values) if max(values) > min(values) else min(values) + 1)
    cmap = plt.get_cmap("viridis" if sweep.search.mode == "max" else "viridis_r")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.9 * len(axes) + 1.5), 4.6))
    xs = list(range(len(axes)))
    for i, row in sorted(enumerate(drawn), key=lambda item: trial_status(item[1]) not in
                         STOPPED):  # grey first, beneath the coloured lines
        stopped = trial_status(row) in STOPPED
        ax.plot(xs, [axis.positions[i] for axis in axes], linewidth=1.2,
                color=STOPPED_COLOR if stopped else cmap(norm(float(row["metric"]))),
                alpha=0.6 if stopped else 0.9, linestyle="--" if stopped else "-",
                zorder=1 if stopped else 2)
    for x, axis in zip(xs, axes, strict=True):
        ax.axvline(x, color="black", linewidth=0.8, zorder=0)
        for position, label in axis.ticks:
            ax.text(x - 0.04, position, label, ha="right", va="center", fontsize=7,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1})
    ax.set_xlim(-0.6, len(axes) - 0.8)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(xs, [axis.name for axis in axes], fontsize=8, rotation=15, ha="right")
    ax.set_yticks([])
    ax.set_xlabel("swept paths, then the metric")
    ax.set_ylabel("each axis on its own range")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.02)
    bar.set_label(f"{metric} (brighter: better)", fontsize=8)
    titled(fig, f"{sweep.display_name}: each trial's swept values and {metric}")
    if any(trial_status(r) in STOPPED for r in drawn):
        legend_below(fig, [Line2D([], [], color=STOPPED_COLOR, linestyle="--",
                                  label="stopped (diagnosis or scheduler)")])
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def _even(index: int, count: int) -> float:
    return 0.5 if count == 1 else index / (count - 1)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
