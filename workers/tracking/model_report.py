"""Log what a model reports after training: each curve as an MLflow metric history (step = the
curve's own x) and a plot, each picture grid as a plot, all under `plots/`; the PNGs are
returned too, for report.html (a Hopfield net's recall, energy and capacity are its checks)."""

from __future__ import annotations

import io
import math
import posixpath
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # workers have no display

import matplotlib.pyplot as plt  # noqa: E402

from models.report import Curve, ModelReport, Pictures  # noqa: E402
from workers.tracking.run_tracker import RunTracker  # noqa: E402


def log_model_report(tracker: RunTracker, report: ModelReport) -> dict[str, bytes]:
    """Returns {plot name: PNG bytes} of the plots logged (`plots/<name>.png`), in order."""
    plots = {}
    for key, curve in report.curves.items():
        now = int(time.time() * 1000)
        tracker.sink.log_rows([key], [[v] for v in curve.values], curve.steps,
                              [now] * len(curve.steps))
        name = _name(key)
        plots[name] = _log(tracker, plot_curve(key, curve), name)
    for key, pictures in report.pictures.items():
        name = _name(key)
        plots[name] = _log(tracker, plot_pictures(key, pictures), name)
    return plots


def _name(key: str) -> str:
    return key.replace("/", "_")


def _log(tracker: RunTracker, figure: plt.Figure, name: str) -> bytes:
    """Draw `figure` once, as the artifact `plots/<name>.png` and the bytes returned."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    png = buffer.getvalue()
    folder, file = posixpath.split(f"plots/{name}.png")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, file).write_bytes(png)
        tracker.artifacts.log_artifact(str(Path(tmp, file)), folder)
    return png


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
