"""Log what a model reports after training: each curve as an MLflow metric history (step = the
curve's own x) and a plot, each picture grid as a plot, all under `plots/`."""

from __future__ import annotations

import math
import time

import matplotlib

matplotlib.use("Agg")  # workers have no display

import matplotlib.pyplot as plt  # noqa: E402

from models.report import Curve, ModelReport, Pictures  # noqa: E402
from workers.tracking.run_tracker import RunTracker  # noqa: E402


def log_model_report(tracker: RunTracker, report: ModelReport) -> list[str]:
    """Returns the artifact paths of the plots logged."""
    paths = []
    for key, curve in report.curves.items():
        now = int(time.time() * 1000)
        tracker.sink.log_rows([key], [[v] for v in curve.values], curve.steps,
                              [now] * len(curve.steps))
        paths.append(_log(tracker, plot_curve(key, curve), key))
    for name, pictures in report.pictures.items():
        paths.append(_log(tracker, plot_pictures(name, pictures), name))
    return paths


def _log(tracker: RunTracker, figure: plt.Figure, name: str) -> str:
    path = f"plots/{name.replace('/', '_')}.png"
    try:
        tracker.log_figure(figure, path)
    finally:
        plt.close(figure)
    return path


def plot_curve(key: str, curve: Curve) -> plt.Figure:
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(curve.steps, curve.values, marker="." if len(curve.steps) <= 50 else None)
    axes.set(title=key, xlabel=curve.xlabel, ylabel=curve.ylabel or key)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def plot_pictures(name: str, pictures: Pictures) -> plt.Figure:
    images = pictures.images.detach().float().cpu()  # (N, H, W)
    count = len(images)
    columns = max(1, min(pictures.columns, count))
    rows = math.ceil(count / columns)
    aspect = images.shape[2] / images.shape[1]
    figure, grid = plt.subplots(rows, columns, squeeze=False,
                                figsize=(1.6 * columns * min(aspect, 4), 1.8 * rows + 0.4))
    for index, axes in enumerate(grid.flat):
        axes.axis("off")
        if index < count:
            axes.imshow(images[index].numpy(), cmap="gray", aspect="auto")
            if index < len(pictures.titles):
                axes.set_title(pictures.titles[index], fontsize=7)
    figure.suptitle(name)
    figure.tight_layout()
    return figure
