"""What one run records for its diagnosis while it trains, and the plain `RunRecord` it hands
the engine: the per-layer norms the `PerLayerNormLogger` flushes (host copies, no extra device
work), the epoch metrics, sampled activation statistics, the live diagnosis judged from them at
epoch ends, and the task's baseline measured on the training targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from models.base import LayerwiseModel
from services.contract.spec import ExperimentSpec
from workers.data.statistics import DataStats
from workers.diagnostics.activations import ActivationSampler, activation_modules
from workers.diagnostics.history import EpochHistory, NormHistory
from workers.diagnostics.live import LiveDiagnosis
from workers.diagnostics.through_time_probe import ThroughTimeProbe
from workers.diagnostics.verdicts import Baseline, Diagnosis, RunRecord, measure_baseline
from workers.diagnostics.weight_rows import weight_rows
from workers.training.callback_base import Callback
from workers.training.logging_callbacks import PerLayerNormLogger, ProgressReporter


class RunRecorders:
    def __init__(self, spec: ExperimentSpec, model: LayerwiseModel, metric_sink: Any, *,
                 live: bool = True):
        self.spec, self.model, self.metric_sink = spec, model, metric_sink
        self.live_on = live  # off: no judging at epoch ends and no per-epoch samples
        self.layers = model.layer_names()
        self.history: NormHistory | None = None
        self.epochs = EpochHistory()
        self.sampler: ActivationSampler | None = None
        self.baseline: Baseline | None = None
        self.live: LiveDiagnosis | None = None
        self.steps_per_epoch: int | None = None
        self.data: DataStats | None = None  # the training split's, when the run measured it
        self.through_time: ThroughTimeProbe | None = None  # recurrent nets (verdicts.through_time)

    @property
    def measuring(self) -> bool:
        """Whether the run measures anything to judge by."""
        return self.history is not None or self.sampler is not None

    def splice(self, callbacks: list[Callback], train_x: torch.Tensor,
               train_y: torch.Tensor | None, objective: Any, *,
               judge: Callable[[int], Diagnosis], tag: Callable[[str], None]
               ) -> list[Callback]:
        """`callbacks` plus the recorders: the norm logger's flushes are kept (the history is
        one of its recorders), the epoch metrics are kept for the plots and the diagnosis,
        activations are sampled when the spec asks and the model has activation modules to
        sample, and the live diagnosis (`judge`, `tag`) judges them at epoch ends. With
        diagnostics and plots off, nothing is added. The recorders and the live diagnosis come
        before the progress reporter, so each epoch's progress carries that epoch's diagnosis.
        The baseline is measured on the training targets `train_y` for the `objective`'s
        task."""
        batch = self.spec.training.batch_size
        self.steps_per_epoch = 1 if batch == "full" else -(-len(train_x) // int(batch))
        for callback in callbacks:
            if isinstance(callback, PerLayerNormLogger):
                self.history = NormHistory()
                callback.add_recorder(self.history.record)
        diag = self.spec.diagnostics
        if diag.activation_stats and activation_modules(self.model):
            self.sampler = ActivationSampler(
                self.model, train_x[:diag.activation_examples], self.metric_sink,
                every_steps=diag.activation_every_steps,
                saturation_derivative=diag.thresholds.saturation_derivative)
        added: list[Callback] = [self.epochs] if diag.plots or self.measuring else []
        if self.measuring:
            self.through_time = ThroughTimeProbe.for_run(self.spec, self.model, objective,
                                                         train_x, train_y)
        if self.sampler is not None:
            added.append(self.sampler)
        if self.measuring and objective is not None and train_y is not None:
            self.baseline = measure_baseline(objective.task, objective.loss_name, train_y,
                                             train_x)
        if self.measuring and self.live_on:
            self.live = LiveDiagnosis(
                judge, diag, tag,
                sample=self.sampler.sample_at if self.sampler is not None else None)
            added.append(self.live)
        at = next((i for i, c in enumerate(callbacks) if isinstance(c, ProgressReporter)),
                  len(callbacks))
        return [*callbacks[:at], *added, *callbacks[at:]]

    def record(self, *, total_epochs: int | None = None,
               final: dict[str, Any] | None = None) -> RunRecord:
        """What was measured so far, as the engine reads it (host copies, plain data)."""
        uses_gradients = self.model.uses_gradients
        return RunRecord(
            self.layers, self.spec.diagnostics.thresholds,
            norms=self.history.curves() if self.history is not None else None,
            epochs=self.epochs.metrics, epoch_steps=self.epochs.steps,
            activations=self.sampler.final() if self.sampler is not None else {},
            weights=weight_rows(self.model, self.layers) if uses_gradients else {},
            baseline=self.baseline, spec=self.spec, uses_gradients=uses_gradients,
            total_epochs=total_epochs, final=final or {}, data=self.data,
            through_time_ratio=self.through_time.ratio() if self.through_time else None)
