"""Gradient clipping (`training.grad_clip_value`, `training.grad_clip_norm`): after every
observer has seen the gradients as backward left them, before the optimizer step."""

from __future__ import annotations

import torch

from models.base import LayerwiseModel
from services.contract.regularizer_kinds import regularizer_kind
from services.contract.spec import ExperimentSpec
from workers.training.callback_base import Callback, TrainerView
from workers.training.regularizers.base import Regularizer


class GradientClipping(Callback):
    """Clips each gradient element to [-value, value], then rescales the whole gradient to
    total L2 norm `norm` when it is larger; either may be None."""

    def __init__(self, *, value: float | None, norm: float | None):
        self.value, self.norm = value, norm

    def adjust_gradients(self, trainer: TrainerView) -> None:
        if self.value is not None:
            torch.nn.utils.clip_grad_value_(trainer.model.parameters(), self.value)
        if self.norm is not None:
            torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), self.norm)


def _build(spec: ExperimentSpec, model: LayerwiseModel, train_x: torch.Tensor) -> Callback:
    return GradientClipping(value=spec.training.grad_clip_value,
                            norm=spec.training.grad_clip_norm)


REGULARIZER = Regularizer(kind=regularizer_kind("gradient_clipping"), build=_build)
