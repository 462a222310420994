"""The plots of one run's training, from what its recorders kept: gradient norms (layer by
step), update norms and their ratio to the weights, loss and accuracy, activation statistics,
a layer-wise pretraining's stage losses. Each is handed to the sink as a function that draws
it, so it is drawn on the sink's thread."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from workers.diagnostics import training_plots as plots
from workers.diagnostics.recorders import RunRecorders
from workers.diagnostics.sink import DiagnosisSink
from workers.diagnostics.verdicts.norms import layer_update_ratios


def plot_training(recorders: RunRecorders, sink: DiagnosisSink) -> None:
    layers, epochs, sampler = recorders.layers, recorders.epochs, recorders.sampler
    norms = recorders.history.curves() if recorders.history is not None else None
    if norms is not None and len(norms.steps):
        steps = norms.steps
        grads = norms.series("grad_norm", layers)
        updates = norms.series("update_norm", layers)
        ratios = layer_update_ratios(norms, layers)
        if grads is not None and recorders.model.uses_gradients:
            sink.log_plot(lambda: plots.grad_norm_heatmap(steps, layers, grads),
                          "grad_norm_heatmap")
        if updates is not None:
            sink.log_plot(lambda: plots.update_norms(steps, layers, updates, ratios),
                          "update_norms")
    curves = {key: epochs.curve(key) for key in
              {k for metrics in epochs.metrics for k in metrics
               if k.startswith(("train/", "val/"))}}
    if curves:
        sink.log_plot(lambda: plots.loss_accuracy(curves), "loss_accuracy")
    if sampler is not None and sampler.rows:
        sampled_steps, values = sampler.series()
        keys, kinds = sampler.keys, sampler.kinds
        sink.log_plot(lambda: plots.activation_stats(sampled_steps, keys, values, kinds),
                      "activation_stats")


def plot_pretraining(curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
                     sink: DiagnosisSink) -> None:
    """Each pretraining stage's loss (`pretrain/layer_<l>/loss`) by step: the stages' own check
    (an RBM stage's loss is its reconstruction error, learned without gradients)."""
    sink.log_plot(lambda: plots.loss_accuracy(curves), "pretraining")
