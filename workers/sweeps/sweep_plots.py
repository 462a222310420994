"""The sweep's summary plots: the metric against each swept value, the configurations' means
with their 95% intervals, and the per-layer gradient-norm curves of the best trials."""

from __future__ import annotations

import json
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display in a Ray worker

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from services.contract.sweep_spec import ChoiceDomain, GridDomain, LogUniformDomain, SweepSpec  # noqa: E402

COLORS = {"succeeded": "tab:blue", "early_stopped": "tab:gray"}


def metric_vs_params(rows: list[dict[str, Any]], sweep: SweepSpec, metric: str) -> Figure:
    """One panel per swept path: each trial's metric at its value (grey: stopped early)."""
    paths = list(sweep.space) or ["repeat"]
    fig, axes = plt.subplots(1, len(paths), figsize=(4 * len(paths), 3.4), squeeze=False)
    for ax, path in zip(axes[0], paths, strict=True):
        domain = sweep.space.get(path)
        values = [r.get("params", {}).get(path, r.get("repeat")) for r in rows]
        listed = isinstance(domain, ChoiceDomain | GridDomain) or domain is None
        if listed:
            labels = sorted({_label(v) for v in values})
            xs = [float(labels.index(_label(v))) for v in values]
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        else:
            xs = [float(v) for v in values]
            if isinstance(domain, LogUniformDomain):
                ax.set_xscale("log")
        ax.scatter(xs, [r["metric"] for r in rows], s=18,
                   c=[COLORS.get(r.get("status", ""), "tab:blue") for r in rows])
        ax.set_xlabel(path)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{sweep.display_name}: {metric} per trial (grey: stopped early)", fontsize=10)
    fig.tight_layout()
    return fig


def configuration_intervals(configurations: list[dict[str, Any]], metric: str,
                            limit: int = 20) -> Figure:
    """Each configuration's mean over seeds with its 95% interval, best first."""
    shown = configurations[:limit]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(shown) + 1.2))
    for i, config in enumerate(shown):
        low, high = config["ci95"] or (config["mean"], config["mean"])
        ax.errorbar(config["mean"], i, xerr=[[config["mean"] - low], [high - config["mean"]]],
                    fmt="o", capsize=3, color="tab:blue")
        ax.scatter(config["values"], [i] * len(config["values"]), s=8, color="tab:gray")
    ax.set_yticks(range(len(shown)), [_label(c["params"]) for c in shown], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric}: mean and 95% interval over seeds")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def grad_norm_curves(curves: dict[str, dict[str, list[tuple[int, float]]]],
                     metrics: dict[str, float], metric: str) -> Figure:
    """Per trial, the gradient norm of every layer against the optimizer step (log scale)."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.4), squeeze=False,
                             sharey=True)
    for ax, (trial_id, layers) in zip(axes[0], curves.items(), strict=True):
        for layer, points in layers.items():
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, label=layer, linewidth=1)
        ax.set_yscale("log")
        ax.set_title(f"{trial_id}\n{metric} = {metrics[trial_id]:.4g}", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_lines():  # each trial its own legend: trials may differ in their layers
            ax.legend(fontsize=7)
    axes[0][0].set_ylabel("gradient norm per layer")
    fig.tight_layout()
    return fig


def close(figure: Figure) -> None:
    plt.close(figure)


def _label(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k.split('.')[-1]}={_label(v)}" for k, v in value.items())
    return value if isinstance(value, str) else json.dumps(value)
