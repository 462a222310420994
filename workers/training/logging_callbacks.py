"""The loop callbacks that log: per-layer gradient, update and weight norms, the epoch's metrics,
a model's text artifacts, and the progress a job reports. These, not the `Callback` base
(workers.training.callback_base), are what know of tracking's `MetricSink`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from workers.tracking.metric_sink import MetricSink
from workers.training.callback_base import Callback, TrainerView
from workers.training.norms import PerLayerNorms

# How many logged steps the device buffer holds before it is copied to the host at once.
FLUSH_EVERY_LOGGED_STEPS = 512


# Called with (keys, rows (S, K) float64 on the host, steps) at each flush of the norm logger.
NormRecorder = Callable[[list[str], np.ndarray, list[int]], None]


class PerLayerNormLogger(Callback):
    """Logs `grad_norm/<layer>`, `grad_norm/total`, `update_norm/<layer>` and
    `weight_norm/<layer>` every `every_steps` optimizer steps, with step = optimizer step.

    Values stay on the device in a list of vectors and reach MLflow in one copy per
    FLUSH_EVERY_LOGGED_STEPS logged steps or per epoch. Each recorder added with
    `add_recorder` gets every flushed block too (the diagnostics keep them for the verdict).
    """

    def __init__(self, norms: PerLayerNorms, sink: MetricSink, *, every_steps: int):
        self.norms, self.sink, self.every_steps = norms, sink, every_steps
        self.keys = norms.keys
        self._recorders: list[NormRecorder] = []
        self._rows: list[torch.Tensor] = []
        self._steps: list[int] = []
        self._times: list[int] = []

    def add_recorder(self, record: NormRecorder) -> None:
        self._recorders.append(record)

    def on_before_update(self, trainer: TrainerView) -> None:
        if trainer.step % self.every_steps == 0:
            self.norms.before_update()

    def on_after_backward(self, trainer: TrainerView) -> None:
        if trainer.step % self.every_steps == 0:
            self.norms.after_backward()

    def on_step_end(self, trainer: TrainerView) -> None:
        step = trainer.step - 1  # the step that just ran
        if step % self.every_steps != 0:
            return
        self._rows.append(self.norms.after_update())
        self._steps.append(step)
        self._times.append(int(time.time() * 1000))
        if len(self._rows) >= FLUSH_EVERY_LOGGED_STEPS:
            self.flush()

    def on_epoch_end(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        self.flush()

    def on_train_end(self, trainer: TrainerView) -> None:
        self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        rows = self.norms.layer_norms(self._rows)  # the one host sync per flush
        self.sink.log_rows(self.keys, rows, self._steps, self._times)
        for record in self._recorders:
            record(self.keys, rows, self._steps)
        self._rows, self._steps, self._times = [], [], []


class EpochMetricLogger(Callback):
    """Logs the epoch's metrics (train/, val/, lr, throughput) at the epoch's last step."""

    def __init__(self, sink: MetricSink):
        self.sink = sink

    def on_epoch_end(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        self.sink.log(metrics, step=max(0, trainer.step - 1))


class EpochArtifactLogger(Callback):
    """Records the text artifacts a model offers after each epoch (`epoch_artifacts`): a
    language model's generated sample, for example. Models that offer none cost one call."""

    def __init__(self, log_text: Callable[[str, str], None]):
        self.log_text = log_text  # (text, artifact_file)

    def on_epoch_end(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        for artifact_file, text in trainer.model.epoch_artifacts(trainer.epoch + 1).items():
            self.log_text(text, artifact_file)


class ProgressReporter(Callback):
    """Hands {epoch, epochs, step, metrics} to `report` (to the job store): the first epoch's,
    then at most one per `every_s`, and the last one always.

    Every report is an actor call and, in the service, a store write. A sweep of short trials
    ends an epoch every few milliseconds: reporting each cost the board and the dispatcher
    more CPU than some of the trials' training.
    """

    def __init__(self, report: Callable[[dict[str, Any]], None], every_s: float = 0.25):
        self.report = report
        self.every_s = every_s
        self._sent_at: float | None = None
        self._unsent: dict[str, Any] | None = None

    def on_epoch_end(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        progress = {"epoch": trainer.epoch + 1, "epochs": trainer.epochs, "step": trainer.step,
                    "metrics": metrics}
        if self._sent_at is not None and time.monotonic() - self._sent_at < self.every_s:
            self._unsent = progress
            return
        self._send(progress)

    def on_train_end(self, trainer: TrainerView) -> None:
        if self._unsent is not None:
            self._send(self._unsent)

    def _send(self, progress: dict[str, Any]) -> None:
        self._sent_at, self._unsent = time.monotonic(), None
        self.report({"progress": progress})
