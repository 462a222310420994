"""One run's diagnostics: what is recorded during training, and what is said and drawn after.

During training: the per-layer norms the `PerLayerNormLogger` flushes (host copies, no extra
device work), the epoch metrics, sampled activation statistics, and the live diagnosis judged
from them at epoch ends, each time on a fresh activation sample (`live.LiveDiagnosis`: the
job's progress, the tag; `live=False` leaves it out, as `RunOptions.live_diagnosis` does). After
training: the diagnosis (tag `layerwise.diagnosis`, `diagnosis.json`, the job record), the
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
from workers.diagnostics.live import LiveDiagnosis
from workers.diagnostics.report import log_png, log_report
from workers.diagnostics.verdicts import (
    Baseline,
    Diagnosis,
    Finding,
    RunRecord,
    fixes,
    measure_baseline,
)
from workers.diagnostics.verdicts.engine import diagnose_record
from workers.diagnostics.verdicts.symmetry import weight_rows
from workers.tracking.run_tracker import RunTracker
from workers.training.callbacks import Callback, PerLayerNormLogger, ProgressReporter


class Diagnostics:
    def __init__(self, spec: ExperimentSpec, model: LayerwiseModel, tracker: RunTracker,
                 shape: DataShape, *, live: bool = True):
        self.spec, self.model, self.tracker, self.shape = spec, model, tracker, shape
        self.live_on = live  # off: no judging at epoch ends and no per-epoch samples
        self.layers = model.layer_names()
        self.history: NormHistory | None = None
        self.epochs = EpochHistory()
        self.sampler: ActivationSampler | None = None
        self.plots: dict[str, bytes] = {}  # the PNGs drawn, for report.html
        self.baseline: Baseline | None = None
        self.live: LiveDiagnosis | None = None
        self._steps_per_epoch: int | None = None

    # -- during training -------------------------------------------------------------------
    def attach(self, callbacks: list[Callback], train_x: torch.Tensor,
               train_y: torch.Tensor | None = None, objective: Any = None) -> list[Callback]:
        """`callbacks` plus the recorders: the norm logger's flushes are kept (the history is
        one of its recorders), the epoch metrics are kept for the plots and the diagnosis,
        activations are sampled when the spec asks and the model has activation modules to
        sample, and the live diagnosis judges them at epoch ends. With diagnostics and
        plots off, nothing is added. The recorders and the live diagnosis come before the
        progress reporter, so each epoch's progress carries that epoch's diagnosis. The
        baseline is measured on the training targets `train_y` for the `objective`'s task."""
        batch = self.spec.training.batch_size
        self._steps_per_epoch = 1 if batch == "full" else -(-len(train_x) // int(batch))
        for callback in callbacks:
            if isinstance(callback, PerLayerNormLogger):
                self.history = NormHistory()
                callback.add_recorder(self.history.record)
        diag = self.spec.diagnostics
        if diag.activation_stats and activation_modules(self.model):
            self.sampler = ActivationSampler(
                self.model, train_x[:diag.activation_examples], self.tracker.sink,
                every_steps=diag.activation_every_steps,
                saturation_derivative=diag.thresholds.saturation_derivative)
        measuring = self.history is not None or self.sampler is not None
        added: list[Callback] = [self.epochs] if diag.plots or measuring else []
        if self.sampler is not None:
            added.append(self.sampler)
        if measuring and objective is not None and train_y is not None:
            self.baseline = measure_baseline(objective.task, objective.loss_name, train_y,
                                             train_x)
        if measuring and self.live_on:
            self.live = LiveDiagnosis(
                lambda epochs: self._judge(total_epochs=epochs), diag, self._tag,
                sample=self.sampler.sample_at if self.sampler is not None else None)
            added.append(self.live)
        at = next((i for i, c in enumerate(callbacks) if isinstance(c, ProgressReporter)),
                  len(callbacks))
        return [*callbacks[:at], *added, *callbacks[at:]]

    def reporting(self, report: Callable[[dict[str, Any]], None]
                  ) -> Callable[[dict[str, Any]], None]:
        """`report` with the live diagnosis added to each progress update."""
        return lambda update: report(self.live.decorate(update) if self.live else update)

    def _tag(self, verdict: str) -> None:
        self.tracker.sink.call_soon(lambda: self.tracker.set_tags({names.TAG_DIAGNOSIS: verdict}))

    # -- after training ----------------------------------------------------------------------
    def after_training(self, splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
                       objective: Any, final: dict[str, Any], *, step: int,
                       device: torch.device) -> dict[str, Any]:
        """Verdict, plots and analyses. Returns what goes into the job's result: the analysis
        metrics and, when anything was measured, "diagnosis"."""
        diagnosis = self.diagnose(final)
        if diagnosis is not None:
            self._record(diagnosis)
        if self.spec.diagnostics.plots:
            self._plot_training()
        metrics = run_analyses(self.spec, self.model, objective, splits, self.shape, final,
                               self, device=device, plots_on=self.spec.diagnostics.plots)
        if metrics:
            self.tracker.sink.log(metrics, step=step)
        shown, verdict = {**final, **metrics}, diagnosis.as_dict() if diagnosis else None
        self.tracker.sink.call_soon(lambda: log_report(  # after the plots, on the same thread
            self.tracker, self.spec.model_dump(mode="json"), shown, verdict, self.plots))
        return {**metrics, **({"diagnosis": diagnosis.as_dict()} if diagnosis else {})}

    def diagnose(self, final: dict[str, Any] | None = None) -> Diagnosis | None:
        """The diagnosis after training, from the loop's `final` metrics too; None when the run
        measured nothing to judge by. `detected_at_step` comes from the live diagnosis."""
        if self.history is None and self.sampler is None:
            return None
        diagnosis = self._judge(final=final or {})
        if self.live is not None:
            diagnosis.detected_at_step = self.live.detected_at(diagnosis.verdict)
        return diagnosis

    def diverged(self, message: str, step: int,
                 report: Callable[[dict[str, Any]], None] | None = None) -> None:
        """The loop raised `Diverged` at `step` (the first step whose loss was not finite):
        record that diagnosis, detected at that step, before the run fails, and hand
        `report` the last epoch's progress with it (the live diagnosis's)."""
        if self.history is None and self.sampler is None:
            return
        diagnosis = self._judge()
        fix = fixes.compose(self.spec, fixes.lr(self.spec, 0.1), fixes.clip(self.spec))
        evidence = {"error": message, "step": step, "steps_per_epoch": self._steps_per_epoch}
        diagnosis.findings.insert(0, Finding("diverged", evidence, [], fix))
        diagnosis.verdict, diagnosis.detected_at_step = "diverged", step
        self._record(diagnosis)
        if self.live is not None:
            self.live.diverged(diagnosis, step)
            if report is not None and self.live.last_epoch_end is not None:
                epoch, at = self.live.last_epoch_end  # progress as of the last epoch's end
                report({"progress": {
                    "epoch": epoch, "epochs": self.spec.training.epochs, "step": at,
                    "metrics": self.epochs.metrics[-1] if self.epochs.metrics else {}}})

    def _judge(self, *, total_epochs: int | None = None, final: dict[str, Any] | None = None
               ) -> Diagnosis:
        return diagnose_record(RunRecord(
            self.layers, self.spec.diagnostics.thresholds, history=self.history,
            epochs=self.epochs.metrics, epoch_steps=self.epochs.steps,
            activations=self.sampler.final() if self.sampler is not None else {},
            weights=weight_rows(self.model, self.layers) if self.model.uses_gradients else {},
            baseline=self.baseline, spec=self.spec, uses_gradients=self.model.uses_gradients,
            total_epochs=total_epochs, final=final or {}))

    def _record(self, diagnosis: Diagnosis) -> None:
        self._tag(diagnosis.verdict)
        self.log_json(diagnosis.as_dict(), "diagnosis.json")

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
            keys, kinds = self.sampler.keys, self.sampler.kinds
            self.log_plot(lambda: plots.activation_stats(sampled_steps, keys, values, kinds),
                          "activation_stats")

    # -- the analyses' recorder ----------------------------------------------------------------
    def log_json(self, payload: Any, artifact_file: str) -> None:
        self.tracker.sink.call_soon(lambda: self.tracker.log_json(payload, artifact_file))

    def log_plot(self, build: Callable[[], Figure], name: str) -> None:
        """Draw and log `plots/<name>.png` on the sink's thread (the data is on the host)."""
        def draw() -> None:
            self.plots[name] = log_png(self.tracker, build(), f"plots/{name}.png")
        self.tracker.sink.call_soon(draw)
