"""Figures of a run's training: gradient norms layer by step, update norms, loss and accuracy,
activation statistics; and several runs' per-layer curves side by side.

Every function returns a `matplotlib.figure.Figure` built without pyplot (no global state, so
the API can draw in its request threads). Layers are coloured input (dark) to output
(light), so the depth order reads at a glance.

The plots of every run are drawn at the end of each job, so they are kept cheap: fixed
margins instead of a layout engine, and log10 of the values on a linear axis instead of a log
axis (whose tick labels are typeset as math), which together make them much cheaper to draw
(BENCHMARKS.md).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")  # workers and the API have no display

import numpy as np  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

MAX_COLUMNS = 400  # heatmap columns: longer runs are binned, each bin its geometric mean
DPI = 80


LEGEND_COLUMNS = 6
LEGEND_ROW_IN = 0.17  # inches per row of a legend below the panels


def run_figure(panels: int, width: float = 5.5, height: float = 3.6, *,
               legend_rows: int = 0) -> tuple[Figure, np.ndarray]:
    """A figure of `panels` axes side by side, with fixed margins (no layout engine), and room
    below them for `legend_rows` rows of a legend (`legend_below`)."""
    extra = LEGEND_ROW_IN * legend_rows + (0.1 if legend_rows else 0.0)
    figure = Figure(figsize=(width * panels, height + extra), dpi=DPI)
    axes = np.atleast_1d(figure.subplots(1, panels))
    figure.subplots_adjust(left=0.1 / panels, right=1 - 0.02 / panels,
                           bottom=(0.14 * height + extra) / (height + extra),
                           top=1 - 0.1 * height / (height + extra), wspace=0.28)
    return figure, axes


def legend_rows(entries: int, columns: int = LEGEND_COLUMNS) -> int:
    return -(-entries // columns) if entries else 0


def legend_below(ax: Axes, entries: int, columns: int = LEGEND_COLUMNS) -> None:
    """The axes' legend under its x label, off the data (`run_figure` made the room)."""
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16),
              ncol=max(1, min(columns, entries)), frameon=False)


def log10(values: np.ndarray) -> np.ndarray:
    """log10 of positive finite values; NaN (a gap in a line) elsewhere."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(values) & (values > 0), np.log10(values), np.nan)


def layer_colors(count: int) -> list[tuple[float, float, float, float]]:
    cmap = colormaps["viridis"]
    return [cmap(0.9 * i / max(1, count - 1)) for i in range(count)]


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def binned(steps: np.ndarray, values: np.ndarray, columns: int = MAX_COLUMNS
           ) -> tuple[np.ndarray, np.ndarray]:
    """At most `columns` rows of (S, L) `values`: each the geometric mean of its bin (zeros
    and non-finite values are left out), at the bin's first step."""
    if len(steps) <= columns:
        return steps, values
    edges = np.linspace(0, len(steps), columns + 1).astype(int)
    logs = np.where(np.isfinite(values) & (values > 0), np.log(np.abs(values) + 1e-300), np.nan)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        chunk = logs[lo:hi]
        counts = np.isfinite(chunk).sum(axis=0)
        sums = np.nansum(chunk, axis=0)
        rows.append(np.where(counts > 0, np.exp(sums / np.maximum(counts, 1)), np.nan))
    return steps[edges[:-1]], np.stack(rows)


def grad_norm_heatmap(steps: np.ndarray, layers: list[str], grads: np.ndarray,
                      *, title: str = "gradient norm per layer") -> Figure:
    """Layers (rows, input at the top) by step (columns), colour = log10 of the norm."""
    steps, grads = binned(steps, grads)
    logs = log10(grads).T  # (L, S)
    figure = Figure(figsize=(8, 1.4 + 0.3 * len(layers)), dpi=DPI)
    axes = figure.subplots()
    label_width = max((len(layer) for layer in layers), default=4)
    figure.subplots_adjust(left=min(0.43, 0.06 + 0.0085 * label_width), right=0.97,
                           bottom=0.5 / (1.4 + 0.3 * len(layers)) + 0.04, top=0.88)
    finite = logs[np.isfinite(logs)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    span = (steps[0], steps[-1] + 1) if len(steps) else (0, 1)
    image = axes.imshow(logs, aspect="auto", interpolation="nearest", cmap="magma",
                        norm=Normalize(low, max(high, low + 1e-6)),
                        extent=(span[0], span[1], len(layers) - 0.5, -0.5))
    axes.set_yticks(range(len(layers)), layers, fontsize=7)
    axes.set(xlabel="step", ylabel="layer (input at the top)", title=title)
    figure.colorbar(image, ax=axes, label="log10 ||dJ/dW||", pad=0.02)
    return figure


def update_norms(steps: np.ndarray, layers: list[str], updates: np.ndarray,
                 ratios: np.ndarray | None) -> Figure:
    """Per layer: ||W_after - W_before|| and, with the weight norms' `ratios`
    (`verdicts.norms.update_weight_ratios`), ||dW|| / ||W||."""
    figure, axes = run_figure(2 if ratios is not None else 1, legend_rows=legend_rows(len(layers)))
    colors = layer_colors(len(layers))
    steps_u, updates_b = binned(steps, updates)
    for i, layer in enumerate(layers):
        axes[0].plot(steps_u, log10(updates_b[:, i]), color=colors[i], label=layer, lw=1)
    axes[0].set(xlabel="step", ylabel="log10 ||dW||", title="update norm per layer")
    if ratios is not None:
        steps_r, ratios_b = binned(steps, ratios)
        for i in range(len(layers)):
            axes[1].plot(steps_r, log10(ratios_b[:, i]), color=colors[i], lw=1)
        axes[1].set(xlabel="step", ylabel="log10 ||dW|| / ||W||",
                    title="update relative to weight")
    legend_below(axes[0], len(layers))
    for ax in axes:
        ax.grid(alpha=0.3)
    return figure


def loss_accuracy(curves: Mapping[str, tuple[Sequence[int], Sequence[float]]]) -> Figure:
    """Loss curves on the left; accuracy (or mse) curves on the right when there are any."""
    losses = {k: v for k, v in curves.items() if k.endswith("/loss") and v[0]}
    scores = {k: v for k, v in curves.items()
              if k.endswith(("/accuracy", "/mse")) and v[0]}
    rows = legend_rows(max(len(losses), len(scores)), columns=3)
    figure, axes = run_figure(2 if scores else 1, legend_rows=rows)
    score_title = " / ".join(sorted({k.rsplit("/", 1)[1] for k in scores}))
    for ax, group, title in ((axes[0], losses, "loss"),
                             (axes[-1] if scores else None, scores, score_title)):
        if ax is None:
            continue
        for key, (steps, values) in sorted(group.items()):
            ax.plot(steps, values, marker="." if len(steps) <= 40 else None, label=key)
        ax.set(xlabel="step", ylabel=title, title=title)
        if group:
            legend_below(ax, len(group), columns=3)
        ax.grid(alpha=0.3)
    return figure


# What each sampled statistic is, by the key's middle part, and which activation kinds
# (`activations.activation_modules`) it applies to.
STATISTICS = {
    "dead_fraction": ("dead ReLU units (output 0 for every sampled example)", {"relu"},
                      "no unit dead at any sampled step"),
    "saturated_fraction": ("saturated activations (derivative nearly 0)",
                           {"sigmoid", "tanh", "arctan", "step"},
                           "no activation saturated at any sampled step"),
}


def activation_stats(steps: np.ndarray, keys: list[str], values: np.ndarray,
                     kinds: Mapping[str, str] | None = None) -> Figure:
    """One panel per statistic sampled (dead fraction for ReLU units, saturated fraction for
    sigmoid-like ones), each titled for what it shows: a module's line, and the total over
    every unit of that kind. With `kinds` ({module: activation kind}), a module's series of a
    statistic that does not apply to its kind is left out rather than drawn as a flat 0; a
    series that is 0 at every sampled step is named in a line of text instead of a line on the
    axis, where it would hide under the others."""
    shown: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        _, statistic, *module = key.split("/", 2)
        if statistic not in STATISTICS:
            continue
        if module and kinds is not None and module[0] in kinds \
                and kinds[module[0]] not in STATISTICS[statistic][1]:
            continue
        shown.setdefault(statistic, []).append(i)
    figure, axes = run_figure(max(1, len(shown)), width=6.5, legend_rows=legend_rows(
        max((len(columns) for columns in shown.values()), default=0)))
    for ax, (statistic, columns) in zip(axes, shown.items(), strict=False):
        modules = [i for i in columns if keys[i].count("/") == 2]
        colors = layer_colors(len(modules))
        zero = []
        for i in columns:
            total = keys[i].count("/") == 1
            label = "all units" if total else keys[i].split("/", 2)[2]
            if not np.any(np.nan_to_num(values[:, i], nan=1.0)):
                zero.append(label)
                continue
            ax.plot(steps, values[:, i], label=label, lw=2.2 if total else 1,
                    color="black" if total else colors[modules.index(i)])
        if zero:
            ax.text(0.02, 0.97, f"{STATISTICS[statistic][2]}: {', '.join(zero)}", fontsize=8,
                    va="top", wrap=True, transform=ax.transAxes)
            if len(steps) > 1:  # the sampled steps, also when no line is drawn
                ax.set_xlim(steps[0], steps[-1])
        title = STATISTICS[statistic][0]
        if kinds:
            which = sorted(set(kinds.values()) & STATISTICS[statistic][1])
            title = title.replace("activations", f"{', '.join(which)} units", 1)
        ax.set(xlabel="step", ylabel="fraction", ylim=(-0.02, 1.02), title=title)
        if ax.get_lines():
            legend_below(ax, len(ax.get_lines()))
        ax.grid(alpha=0.3)
    if not shown:
        axes[0].set(title="no activation statistic sampled")
    return figure


@dataclass
class RunCurves:
    """One run's per-layer curves of one norm, for the side-by-side comparison, and its epoch
    metrics' curves (`train/loss`, `val/accuracy`, ...: step, value or None), overlaid."""

    title: str
    layers: list[str]
    steps: np.ndarray  # (S,)
    values: np.ndarray  # (S, L)
    epochs: Mapping[str, tuple[Sequence[int], Sequence[float | None]]] = field(
        default_factory=dict)


def compare_runs(runs: list[RunCurves], metric: str) -> Figure:
    """One panel per run, side by side, sharing the y axis (log scale); below them, when the
    runs logged any, their loss curves overlaid on the left and their accuracy (or mse)
    curves on the right: a colour per run, validation solid, training dashed. Legends sit
    below their panels, off the data."""
    score_keys = sorted({key for run in runs for key in run.epochs
                         if key.endswith(("/accuracy", "/mse"))})
    overlays = any(run.epochs for run in runs)
    figure = Figure(figsize=(max(4.2 * len(runs), 9.0), 8.4 if overlays else 4.4),
                    layout="constrained")
    grid = figure.add_gridspec(2 if overlays else 1, 2 * len(runs))
    first = None
    for i, run in enumerate(runs):
        ax = figure.add_subplot(grid[0, 2 * i:2 * i + 2], sharey=first)
        first = first or ax
        colors = layer_colors(len(run.layers))
        steps, values = binned(run.steps, run.values)
        for j, layer in enumerate(run.layers):
            ax.plot(steps, _positive(values[:, j]), color=colors[j], label=layer, lw=1)
        ax.set(yscale="log", xlabel="step", ylabel=f"{metric} per layer", title=run.title)
        ax.grid(alpha=0.3)
        if run.layers:
            ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                      ncol=min(4, len(run.layers)), frameon=False)
    if overlays:
        half = len(runs)
        loss = figure.add_subplot(grid[1, :half] if half > 1 else grid[1, 0])
        score = figure.add_subplot(grid[1, half:] if half > 1 else grid[1, 1])
        score_name = " / ".join(sorted({k.rsplit("/", 1)[1] for k in score_keys})) or "accuracy"
        colors = [colormaps["tab10"](i % 10) for i in range(len(runs))]
        for ax, wanted, name in ((loss, ("train/loss", "val/loss"), "loss"),
                                 (score, tuple(score_keys), score_name)):
            for color, run in zip(colors, runs, strict=True):
                for key in wanted:
                    if key not in run.epochs:
                        continue
                    steps_e, values_e = run.epochs[key]
                    ys = [np.nan if v is None else v for v in values_e]
                    ax.plot(steps_e, ys, color=color, lw=1.4,
                            ls="--" if key.startswith("train/") else "-",
                            marker="." if len(steps_e) <= 40 else None,
                            label=f"{run.title}: {key}")
            ax.set(xlabel="step", ylabel=name, title=f"{name} of each run (dashed: train)")
            ax.grid(alpha=0.3)
            if ax.get_lines():
                ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                          ncol=2, frameon=False)
            else:
                ax.text(0.5, 0.5, f"no run logged {name}", ha="center", va="center",
                        transform=ax.transAxes)
    return figure


def _positive(values: np.ndarray) -> np.ndarray:
    """Zeros and non-finite values cannot be drawn on a log scale: leave a gap."""
    return np.where(np.isfinite(values) & (values > 0), values, np.nan)
