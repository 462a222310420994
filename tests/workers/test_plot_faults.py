"""The plot faults seen in the trial: each figure says what it shows."""

from __future__ import annotations

import numpy as np
import torch

from models.base import DataShape
from models.hopfield import HopfieldNet
from models.kinds.hopfield import HopfieldConfig
from workers.diagnostics import training_plots
from workers.sweeps import sweep_plots


def _titles(figure) -> list[str]:
    return [ax.get_title() for ax in figure.axes]


def test_a_sigmoid_nets_activation_plot_shows_saturation_not_dead_relus():
    keys = ["activation/saturated_fraction/layers.1", "activation/saturated_fraction/layers.3",
            "activation/saturated_fraction"]
    steps = np.array([0, 10, 20])
    values = np.array([[0.1, 0.2, 0.15], [0.4, 0.6, 0.5], [0.7, 0.9, 0.8]])
    figure = training_plots.activation_stats(steps, keys, values,
                                             {"layers.1": "sigmoid", "layers.3": "sigmoid"})
    (title,) = _titles(figure)
    assert "saturated sigmoid" in title and "ReLU" not in title and "dead" not in title
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert labels == ["layers.1", "layers.3", "all units"]


def test_a_statistic_that_does_not_apply_to_a_module_is_not_drawn():
    """A sampler that logged both statistics for every module: a sigmoid's dead fraction
    (always 0) is left out, and a mixed net gets one panel per statistic."""
    keys = ["activation/dead_fraction/a", "activation/saturated_fraction/a",
            "activation/dead_fraction/b", "activation/saturated_fraction/b",
            "activation/dead_fraction", "activation/saturated_fraction"]
    values = np.tile(np.array([[0.3, 0.0, 0.0, 0.6, 0.3, 0.6]]), (4, 1))
    figure = training_plots.activation_stats(np.arange(4), keys, values,
                                             {"a": "relu", "b": "tanh"})
    dead, saturated = figure.axes
    assert "dead ReLU" in dead.get_title() and "saturated tanh" in saturated.get_title()
    assert [line.get_label() for line in dead.get_lines()] == ["a", "all units"]
    assert [line.get_label() for line in saturated.get_lines()] == ["b", "all units"]
    for ax in figure.axes:
        assert all(np.any(np.asarray(line.get_ydata()) > 0) for line in ax.get_lines())


def test_a_statistic_at_0_throughout_is_said_in_words_not_drawn_as_a_hidden_line():
    keys = ["activation/saturated_fraction/layers.0.activation",
            "activation/saturated_fraction/layers.1.activation", "activation/saturated_fraction"]
    values = np.zeros((5, 3))
    values[3:, 1] = 0.25  # layers.1 saturates late; the total moves with it
    values[3:, 2] = 0.1
    figure = training_plots.activation_stats(np.arange(5), keys, values,
                                             {"layers.0.activation": "sigmoid",
                                              "layers.1.activation": "sigmoid"})
    (ax,) = figure.axes
    assert [line.get_label() for line in ax.get_lines()] == ["layers.1.activation", "all units"]
    (said,) = [t.get_text() for t in ax.texts]
    assert said == "no activation saturated at any sampled step: layers.0.activation"


def test_the_hopfield_recall_panel_names_the_stored_pattern_not_the_example():
    model = HopfieldNet(HopfieldConfig(kind="hopfield", capacity_curve=False),
                        DataShape((16,), 16, "recall"))
    patterns = torch.sign(torch.randn(3, 16, generator=torch.Generator().manual_seed(0)))
    model.store(patterns)
    # Probe examples are copies of patterns 2, 2 and 0: the example index is not the pattern's.
    y = patterns[[2, 2, 0]]
    report = model.after_training({"train": (y.clone(), y), "val": (y.clone(), y)})
    titles = report.pictures["hopfield_recall"].titles
    assert titles[0::3] == ["stored pattern 2", "stored pattern 2", "stored pattern 0"]
    assert titles[1::3] == ["example 0, corrupted", "example 1, corrupted",
                            "example 2, corrupted"]


def test_every_top_trial_panel_has_a_legend_naming_its_layers():
    curves = {f"trial_{t}": {f"layers.{i}": [(0, 1.0 + i), (1, 0.5 + i)] for i in range(3)}
              for t in range(3)}
    figure = sweep_plots.grad_norm_curves(curves, dict.fromkeys(curves, 0.5), "val/loss")
    try:
        for ax in figure.axes:
            legend = ax.get_legend()
            assert legend is not None, ax.get_title()
            assert [t.get_text() for t in legend.get_texts()] == ["layers.0", "layers.1",
                                                                  "layers.2"]
    finally:
        sweep_plots.close(figure)
