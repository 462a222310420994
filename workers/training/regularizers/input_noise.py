"""Gaussian noise on the inputs during training (`regularization.input_noise_std`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from models.base import LayerwiseModel
from models.regularizers import gaussian_noise
from services.contract.spec import ExperimentSpec
from workers.training.callbacks import Callback
from workers.training.regularizers.base import Regularizer

if TYPE_CHECKING:
    from workers.training.loop import Trainer


class InputNoise(Callback):
    """Adds N(0, std^2) to every input element of a training batch."""

    def __init__(self, std: float):
        self.std = std

    def transform_input(self, trainer: Trainer, x: torch.Tensor) -> torch.Tensor:
        return gaussian_noise(x, self.std)


def _build(spec: ExperimentSpec, model: LayerwiseModel, train_x: torch.Tensor) -> Callback:
    return InputNoise(spec.regularization.input_noise_std)


REGULARIZER = Regularizer("input_noise", switches=(("regularization", "input_noise_std"),),
                          build=_build)
