"""Figures of the after-training analyses: sensitivity, gradient through time, adversarial
accuracy and examples, and the fit of a 1-D regression (universal approximation)."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from workers.diagnostics.analysis.adversarial import DeepFoolResult, FGSMResult
from workers.diagnostics.analysis.bptt import ThroughTime
from workers.diagnostics.analysis.sensitivity import Sensitivity
from workers.diagnostics.training_plots import layer_colors

TOP_FEATURES = 30
EXAMPLE_PANELS = 6


def sensitivity_plot(result: Sensitivity, picture: tuple[int, int] | None) -> Figure:
    """A saliency map for pictures; the most influential features as bars otherwise."""
    if picture is not None:
        figure = Figure(figsize=(4.2, 3.8), layout="constrained")
        axes = figure.subplots()
        image = axes.imshow(result.saliency_map().reshape(picture).numpy(), cmap="hot")
        figure.colorbar(image, ax=axes, label="mean |dJ/dx|")
        axes.set(title=f"saliency over {result.examples} validation examples")
        axes.axis("off")
        return figure
    top = result.ranking[:TOP_FEATURES]
    figure = Figure(figsize=(max(4.0, 0.28 * len(top) + 1.5), 3.6), layout="constrained")
    axes = figure.subplots()
    axes.bar(range(len(top)), result.scores[top].numpy(), color="tab:blue")
    axes.set_xticks(range(len(top)), [f"x[{i}]" for i in top], rotation=90, fontsize=7)
    axes.set(ylabel="mean |dJ/dx|", title=f"input sensitivity (top {len(top)} of "
                                          f"{len(result.scores)})")
    axes.grid(alpha=0.3, axis="y")
    return figure


def bptt_plot(result: ThroughTime) -> Figure:
    """||dJ_n/dh[k]|| against k, one line per n, log scale."""
    figure = Figure(figsize=(6, 3.8), layout="constrained")
    axes = figure.subplots()
    colors = layer_colors(len(result.steps))
    for color, n in zip(colors, result.steps, strict=True):
        values = np.asarray(result.norms[n])
        axes.plot(range(1, n + 1), np.where(values > 0, values, np.nan), color=color,
                  marker="." if n <= 60 else None, label=f"n = {n}")
    axes.set(yscale="log", xlabel="k (time step of the hidden state)",
             ylabel="||dJ_n / dh[k]||", title="gradient through time")
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    return figure


def robustness_plot(grid: FGSMResult | None, fool: DeepFoolResult | None) -> Figure:
    """FGSM accuracy against epsilon, and the sizes of DeepFool's perturbations."""
    panels = [p for p in ("fgsm", "deepfool") if (grid if p == "fgsm" else fool and
                                                  fool.perturbation_l2)]
    figure = Figure(figsize=(5 * max(1, len(panels)), 3.6), layout="constrained")
    axes = dict(zip(panels, np.atleast_1d(figure.subplots(1, max(1, len(panels)))),
                    strict=False))
    if grid is not None:
        ax = axes["fgsm"]
        ax.plot([0.0, *grid.eps], [grid.clean_accuracy, *grid.accuracy], marker="o")
        ax.set(xlabel="epsilon (L-infinity)", ylabel="accuracy", ylim=(-0.02, 1.02),
               title="fast gradient sign")
        ax.grid(alpha=0.3)
    if "deepfool" in axes and fool is not None:
        ax = axes["deepfool"]
        ax.hist(fool.perturbation_l2, bins=30, color="tab:red")
        ax.axvline(float(np.median(fool.perturbation_l2)), color="black", ls="--",
                   label="median")
        ax.set(xlabel="||r||_2", ylabel="examples",
               title=f"DeepFool: {fool.flipped_fraction:.0%} of {fool.correct} flipped")
        ax.legend(fontsize=7)
    return figure


def adversarial_examples(picture: tuple[int, int], deepfool: DeepFoolResult,
                         fgsm: FGSMResult | None) -> Figure:
    """Rows: original, DeepFool's adversarial example, its perturbation (and FGSM's example at
    the largest epsilon); titled with the classes."""
    assert deepfool.originals is not None and deepfool.perturbations is not None
    assert deepfool.labels is not None and deepfool.adversarial_labels is not None
    count = min(EXAMPLE_PANELS, len(deepfool.originals))
    rows = 3 + (fgsm is not None and fgsm.examples is not None)
    figure = Figure(figsize=(1.5 * max(count, 1) + 0.5, 1.6 * rows + 0.3), layout="constrained")
    grid = np.atleast_2d(figure.subplots(rows, max(count, 1), squeeze=False))
    for j in range(count):
        original = deepfool.originals[j]
        delta = deepfool.perturbations[j]
        panels = [(original, f"class {int(deepfool.labels[j])}"),
                  (original + delta, f"-> {int(deepfool.adversarial_labels[j])}"),
                  (delta, f"||r|| {float(delta.norm()):.2f}")]
        if rows == 4 and fgsm is not None and fgsm.examples is not None:
            panels.append((fgsm.examples[j], f"FGSM eps {fgsm.eps[-1]:g}"))
        for i, (image, title) in enumerate(panels):
            if i == 2:  # the perturbation: signed, white at 0
                bound = float(delta.abs().max()) or 1.0
                grid[i, j].imshow(_as_picture(image, picture), cmap="bwr", vmin=-bound,
                                  vmax=bound)
            else:
                grid[i, j].imshow(_as_picture(image, picture), cmap="gray")
            grid[i, j].set_title(title, fontsize=7)
    for axes in grid.flat:
        axes.axis("off")
    figure.suptitle("adversarial examples: original / DeepFool / perturbation"
                    + (" / FGSM" if rows == 4 else ""), fontsize=9)
    return figure


def fit_plot(x: np.ndarray, y: np.ndarray, grid: np.ndarray, prediction: np.ndarray,
             hidden: np.ndarray | None) -> Figure:
    """A 1-D regression: the data and the network's function; beside it the hidden units'
    outputs over the input range (the building blocks the output layer sums)."""
    panels = 2 if hidden is not None else 1
    figure = Figure(figsize=(5 * panels, 3.6), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, panels))
    axes[0].scatter(x, y, s=6, alpha=0.4, color="tab:gray", label="validation data")
    axes[0].plot(grid, prediction, color="tab:red", lw=2, label="network")
    axes[0].set(xlabel="x", ylabel="y", title="fit")
    axes[0].legend(fontsize=7)
    axes[0].grid(alpha=0.3)
    if hidden is not None:
        colors = layer_colors(hidden.shape[1])
        for unit in range(hidden.shape[1]):
            axes[1].plot(grid, hidden[:, unit], color=colors[unit], lw=1)
        axes[1].set(xlabel="x", title=f"{hidden.shape[1]} hidden units of the first layer")
        axes[1].grid(alpha=0.3)
    return figure


def _as_picture(values: torch.Tensor, picture: tuple[int, int]) -> np.ndarray:
    return values.reshape(picture).numpy()
