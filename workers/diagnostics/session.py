"""One run's diagnostics: what is recorded during training, and what is said and drawn after.

During training: the per-layer norms the `PerLayerNormLogger` flushes (host copies, no extra
device work), the epoch metrics, and sampled activation statistics. After training: the
gradient-flow verdict (tag `layerwise.diagnosis`, `diagnosis.json`, the job record), the
plots, and the analyses the spec asks for. Plots are drawn and logged on the metric sink's
thread, so they overlap with the rest of the run's end (the model upload).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from matplotlib.figure import Figure

from models.base import DataShape, LayerwiseModel
from services.contract import mlflow_names as names
from services.contract.spec import ExperimentSpec
from workers.diagnostics import training_plots as plots
from workers.diagnostics.activations import ActivationSampler, activation_modules
from workers.diagnostics.analysis import run_analyses
from workers.diagnostics.history import EpochHistory, NormHistory
from workers.diagnostics.verdict import Diagnosis, diagnose
from workers.tracking.run_tracker import RunTracker
from workers.training.callbacks import Callback, PerLayerNormLogger


class Diagnostics:
    def __init__(self, spec: ExperimentSpec, model: LayerwiseModel, tracker: RunTracker,
                 shape: DataShape):
        self.spec, self.model, self.tracker, self.shape = spec, model, tracker, shape
        self.layers = model.layer_names()
        self.history: NormHistory | None = None
        self.epochs = EpochHistory()
        self.sampler: ActivationSampler | None = None

    # -- during training -------------------------------------------------------------------
    def attach(self, callbacks: list[Callback], train_x: torch.Tensor) -> list[Callback]:
        """`callbacks` plus the recorders: the norm logger's flushes are kept (the history is
        one of its recorders), the epoch metrics are kept for the plots, and activations are
        sampled when the spec asks and the model has activation modules to sample. With
        diagnostics and plots off, nothing is added."""
        for callback in callbacks:
            if isinstance(callback, PerLayerNormLogger):
                self.history = NormHistory()
                callback.add_recorder(self.history.record)
        diag = self.spec.diagnostics
        added: list[Callback] = [self.epochs] if diag.plots else []
        if diag.activation_stats and activation_modules(self.model):
            self.sampler = ActivationSampler(
                self.model, train_x[:diag.activation_examples], self.tracker.sink,
                every_steps=diag.activation_every_steps,
                saturation_derivative=diag.thresholds.saturation_derivative)
            added.append(self.sampler)
        return [*callbacks, *added]

    # -- after training ----------------------------------------------------------------------
    def after_training(self, splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
                       objective: Any, final: dict[str, Any], *, step: int,
                       device: torch.device) -> dict[str, Any]:
        """Verdict, plots and analyses. Returns what goes into the job's result: the analysis
        metrics and, when anything was measured, "diagnosis"."""
        diagnosis = self.diagnose()
        if diagnosis is not None:
            payload = diagnosis.as_dict()
            self.tracker.sink.call_soon(lambda: self.tracker.set_tags(
                {names.TAG_DIAGNOSIS: diagnosis.verdict}))
            self.log_json(payload, "diagnosis.json")
        if self.spec.diagnostics.plots:
            self._plot_training()
        metrics = run_analyses(self.spec, self.model, objective, splits, self.shape, final,
                               self, device=device, plots_on=self.spec.diagnostics.plots)
        if metrics:
            self.tracker.sink.log(metrics, step=step)
        return {**metrics, **({"diagnosis": diagnosis.as_dict()} if diagnosis else {})}

    def diagnose(self) -> Diagnosis | None:
        """None when the run measured nothing to judge by."""
        if self.history is None and self.sampler is None:
            return None
        return diagnose(self.history, self.layers,
                        self.sampler.final() if self.sampler is not None else {},
                        self.spec.diagnostics.thresholds,
                        uses_gradients=self.model.uses_gradients)

    def _plot_training(self) -> None:
        history, layers = self.history, self.layers
        if history is not None and len(history.steps):
            steps = history.steps
            grads = history.series("grad_norm", layers)
            updates = history.series("update_norm", layers)
            weights = history.series("weight_norm", layers)
            if grads is not None and self.model.uses_gradients:
                self.log_plot(lambda: plots.grad_norm_heatmap(steps, layers, grads),
                              "grad_norm_heatmap")
            if updates is not None:
                self.log_plot(lambda: plots.update_norms(steps, layers, updates, weights),
                              "update_norms")
        curves = {key: self.epochs.curve(key) for key in
                  {k for metrics in self.epochs.metrics for k in metrics
                   if k.startswith(("train/", "val/"))}}
        if curves:
            self.log_plot(lambda: plots.loss_accuracy(curves), "loss_accuracy")
        if self.sampler is not None and self.sampler.rows:
            sampled_steps, values = self.sampler.series()
            keys = self.sampler.keys
            self.log_plot(lambda: plots.activation_stats(sampled_steps, keys, values),
                          "activation_stats")

    # -- the analyses' recorder ----------------------------------------------------------------
    def log_json(self, payload: Any, artifact_file: str) -> None:
        self.tracker.sink.call_soon(lambda: self.tracker.log_json(payload, artifact_file))

    def log_plot(self, build: Callable[[], Figure], name: str) -> None:
        """Draw and log `plots/<name>.png` on the sink's thread (the data is on the host)."""
        self.tracker.sink.call_soon(
            lambda: self.tracker.log_figure(build(), f"plots/{name}.png"))
