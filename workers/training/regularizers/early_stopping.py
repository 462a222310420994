"""Early stopping, the lecture's first regularizer: watch a validation metric after every
epoch, stop once it has not improved for `patience` epochs, and end with the best weights."""

from __future__ import annotations

import math
from typing import Any

import torch

from models.base import LayerwiseModel
from services.contract.regularization_spec import EarlyStoppingSpec
from services.contract.regularizer_kinds import regularizer_kind
from services.contract.spec import ExperimentSpec
from workers.training.callback_base import Callback, TrainerView
from workers.training.regularizers.base import Regularizer

# Metrics where larger is better when `mode` is auto; everything else (losses, errors) is
# minimized.
_HIGHER_IS_BETTER = ("accuracy",)


def maximizes(spec: EarlyStoppingSpec) -> bool:
    if spec.mode != "auto":
        return spec.mode == "max"
    return any(word in spec.monitor for word in _HIGHER_IS_BETTER)


class EarlyStopping(Callback):
    """Epochs are counted from 1. An epoch improves when its `monitor` value beats the best so
    far by more than `min_delta`; training stops at the end of the epoch that makes `patience`
    epochs without improvement. The best epoch's weights are kept on the device and loaded back
    when training ends (`restore_best`). The best so far is its checkpointed state."""

    state_key = "early_stopping"

    def __init__(self, spec: EarlyStoppingSpec):
        assert spec.patience is not None, "early stopping needs a patience"
        self.spec = spec
        self.patience = spec.patience
        self.sign = 1.0 if maximizes(spec) else -1.0
        self.best_score: float | None = None
        self.best_epoch = 0
        self.best_value: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stopped_epoch: int | None = None

    def improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        score = self.sign * value
        return self.best_score is None or score > self.best_score + self.spec.min_delta

    def on_epoch_end(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        value = metrics.get(self.spec.monitor)
        if value is None:  # submission checks that the monitor is logged; be safe anyway
            return
        epoch = trainer.epoch + 1
        if self.improves(value):
            self.best_score, self.best_epoch, self.best_value = self.sign * value, epoch, value
            if self.spec.restore_best:
                self.best_state = {k: v.detach().clone()
                                   for k, v in trainer.model.state_dict().items()}
        elif epoch - self.best_epoch >= self.patience:
            self.stopped_epoch = epoch
            trainer.request_stop("early_stopping")

    def on_train_end(self, trainer: TrainerView) -> None:
        if self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)

    def summary(self, trainer: TrainerView) -> dict[str, Any]:
        """The best epoch and its monitored value (the trainer adds `stopped_epoch` when it
        stopped)."""
        return {"best_epoch": self.best_epoch, f"best/{self.spec.monitor}": self.best_value}

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch,
                "best_value": self.best_value, "best_state": self.best_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.best_value, self.best_state = state["best_value"], state["best_state"]


def _build(spec: ExperimentSpec, model: LayerwiseModel, train_x: torch.Tensor) -> Callback:
    return EarlyStopping(spec.regularization.early_stopping)


REGULARIZER = Regularizer(kind=regularizer_kind("early_stopping"), build=_build)
