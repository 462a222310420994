"""A run's plots label every axis and keep their legends off the data: below the panels,
inside the figure."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from workers.diagnostics import training_plots as plots

STEPS = np.arange(0, 120, 10)
LAYERS = [f"layers.{i}" for i in range(9)] + ["output"]
NORMS = np.outer(np.linspace(1, 2, len(STEPS)), np.logspace(-5, -1, len(LAYERS)))


def _figures():
    epochs = list(range(11, 120, 12))
    yield plots.update_norms(STEPS, LAYERS, NORMS, NORMS / 10)
    yield plots.loss_accuracy({"train/loss": (epochs, [2.3 - 0.1 * i for i in range(10)]),
                               "val/loss": (epochs, [2.3 - 0.09 * i for i in range(10)]),
                               "val/accuracy": (epochs, [0.1 + 0.08 * i for i in range(10)])})
    yield plots.activation_stats(STEPS, ["activation/dead_fraction/layers.0.activation",
                                         "activation/dead_fraction"],
                                 np.linspace(0.1, 0.6, len(STEPS))[:, None].repeat(2, 1))
    yield plots.grad_norm_heatmap(STEPS, LAYERS, NORMS)


@pytest.mark.parametrize("figure", list(_figures()), ids=["update_norms", "loss_accuracy",
                                                         "activation_stats", "heatmap"])
def test_every_axis_is_labelled_and_no_legend_covers_the_data(figure):
    canvas = FigureCanvasAgg(figure)  # figures are built without pyplot: no canvas of their own
    canvas.draw()
    renderer = canvas.get_renderer()
    panels = [ax for ax in figure.axes if ax.get_label() != "<colorbar>"]
    for ax in panels:
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
        legend = ax.get_legend()
        if legend is not None:  # under the panel, not over its lines
            assert legend.get_window_extent(renderer).y1 <= ax.get_window_extent(renderer).y0
    drawn = figure.get_tightbbox(renderer)
    width, height = figure.get_size_inches()
    assert drawn.x0 >= -0.02 and drawn.y0 >= -0.02
    assert drawn.x1 <= width + 0.02 and drawn.y1 <= height + 0.02
