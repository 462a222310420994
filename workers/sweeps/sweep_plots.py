"""The sweep's summary plots: the metric against each swept value, the configurations' means
with their 95% intervals, and the per-layer gradient-norm curves of the best trials.

Each figure's title is wrapped to the figure's width (`titled`), every axis is labelled, and
legends sit beside the data, never over it."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display in a Ray worker

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from services.contract.sweep_spec import ChoiceDomain, GridDomain, LogUniformDomain, SweepSpec  # noqa: E402
from services.contract.trial_status import STOPPED_STATUSES, trial_status  # noqa: E402
from workers.sweeps.metric_bounds import Bounds, clip  # noqa: E402

SUCCEEDED_COLOR = "tab:blue"
STOPPED_COLOR = "0.6"  # grey: stopped on its diagnosis or by the scheduler
STOPPED = STOPPED_STATUSES
TITLE_SIZE = 10


def titled(fig: Figure, text: str, *, fontsize: float = TITLE_SIZE) -> None:
    """The figure's title, wrapped so that no line is wider than the figure."""
    # An average character of the default sans-serif font is ~0.6 of its size wide.
    per_line = max(20, int(fig.get_figwidth() * 72 / (fontsize * 0.6)) - 4)
    fig.suptitle(textwrap.fill(text, per_line), fontsize=fontsize)


def legend_below(fig: Figure, handles: list[Any], *, columns: int | None = None) -> None:
    """A legend under the panels, off the data."""
    if handles:
        fig.legend(handles=handles, loc="lower center", ncols=columns or len(handles),
                   fontsize=8, frameon=False)


def metric_vs_params(rows: list[dict[str, Any]], sweep: SweepSpec, metric: str) -> Figure:
    """One panel per swept path: each trial's metric at its value; blue the trials that
    trained to the end, grey those stopped (on their diagnosis or by the scheduler)."""
    paths = list(sweep.space) or ["repeat"]
    fig, axes = plt.subplots(1, len(paths), figsize=(max(6.0, 4 * len(paths)), 3.8),
                             squeeze=False)
    groups = {"trained to the end": [r for r in rows if trial_status(r) not in STOPPED],
              "stopped (diagnosis or scheduler)": [r for r in rows
                                                   if trial_status(r) in STOPPED]}
    handles: list[Any] = []
    for ax, path in zip(axes[0], paths, strict=True):
        domain = sweep.space.get(path)
        listed = isinstance(domain, ChoiceDomain | GridDomain) or domain is None
        labels = sorted({_label(_value(r, path)) for r in rows})
        if listed:
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        elif isinstance(domain, LogUniformDomain):
            ax.set_xscale("log")
        for (name, members), color in zip(groups.items(), (SUCCEEDED_COLOR, STOPPED_COLOR),
                                          strict=True):
            if not members:
                continue
            xs = [float(labels.index(_label(_value(r, path)))) if listed
                  else float(_value(r, path)) for r in members]
            dots = ax.scatter(xs, [r["metric"] for r in members], s=18, color=color,
                              label=name, zorder=2 if color == SUCCEEDED_COLOR else 1)
            if ax is axes[0][0]:
                handles.append(dots)
        ax.set_xlabel(path)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    titled(fig, f"{sweep.display_name}: {metric} of each trial against each swept value")
    legend_below(fig, handles)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def _value(row: dict[str, Any], path: str) -> Any:
    return row.get("params", {}).get(path, row.get("repeat"))


def configuration_intervals(configurations: list[dict[str, Any]], metric: str,
                            bounds: Bounds = (None, None), limit: int = 20) -> Figure:
    """Each configuration's mean over seeds with its 95% interval (cut to the metric's range:
    an accuracy's ends at 1), best first; grey dots the trials' own values."""
    shown = [c for c in configurations if c.get("mean") is not None][:limit]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(shown) + 1.8))
    for i, config in enumerate(shown):
        low, high = config["ci95"] or (config["mean"], config["mean"])
        low, high = clip(low, bounds), clip(high, bounds)
        mean = clip(config["mean"], bounds)
        ax.errorbar(mean, i, xerr=[[mean - low], [high - mean]],
                    fmt="o", capsize=3, color=SUCCEEDED_COLOR)
        ax.scatter(config["values"], [i] * len(config["values"]), s=8, color=STOPPED_COLOR)
    ax.set_yticks(range(len(shown)), [_label(c["params"]) for c in shown], fontsize=7)
    ax.invert_yaxis()
    _limit_axis(ax, bounds)
    ax.set_xlabel(f"{metric}\n(mean and 95% interval over seeds; dots: each seed)")
    ax.set_ylabel("configuration")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _limit_axis(ax: Any, bounds: Bounds) -> None:
    """Keep the x axis inside the metric's range, with a margin only where the range allows."""
    left, right = ax.get_xlim()
    low, high = bounds
    ax.set_xlim(max(low, left) if low is not None else left,
                min(high, right) if high is not None else right)


def grad_norm_curves(curves: dict[str, dict[str, list[tuple[int, float]]]],
                     metrics: dict[str, float], metric: str) -> Figure:
    """Per trial, the gradient norm of every layer against the optimizer step (log scale)."""
    legend_lines = max((len(layers) for layers in curves.values()), default=0) // 3 + 1
    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves),
                                                      3.4 + 0.2 * legend_lines),
                             squeeze=False, sharey=True)
    for ax, (trial_id, layers) in zip(axes[0], curves.items(), strict=True):
        for layer, points in layers.items():
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, label=layer, linewidth=1)
        ax.set_yscale("log")
        ax.set_title(f"{trial_id}\n{metric} = {metrics[trial_id]:.4g}", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_lines():  # each trial its own legend (trials may differ in their layers),
            # under its panel, off the curves
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                      ncols=min(3, len(ax.get_lines())), frameon=False)
    axes[0][0].set_ylabel("gradient norm per layer")
    fig.tight_layout()
    return fig


def close(figure: Figure) -> None:
    plt.close(figure)


def _label(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k.split('.')[-1]}={short_label(v)}" for k, v in value.items())
    return short_label(value)


def short_label(value: Any, limit: int = 18) -> str:
    """A value as a short label: [64, 64, 64] as 3x64, a long one cut with an ellipsis."""
    if isinstance(value, list) and value and all(v == value[0] for v in value) \
            and isinstance(value[0], int | float | str):
        return f"{len(value)}x{value[0]}"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit - 1] + "…"
