"""Gaussian noise on the inputs during training (`regularization.input_noise_std`)."""

from __future__ import annotations

import torch

from models.base import LayerwiseModel
from models.regularizers import gaussian_noise
from services.contract.regularizer_kinds import regularizer_kind
from services.contract.spec import ExperimentSpec
from workers.training.callback_base import Callback, TrainerView
from workers.training.regularizers.base import Regularizer


class InputNoise(Callback):
    """Adds N(0, std^2) to every input element of a training batch."""

    def __init__(self, std: float):
        self.std = std

    def transform_input(self, trainer: TrainerView, x: torch.Tensor) -> torch.Tensor:
        return gaussian_noise(x, self.std)


def _build(spec: ExperimentSpec, model: LayerwiseModel, train_x: torch.Tensor) -> Callback:
    return InputNoise(spec.regularization.input_noise_std)


REGULARIZER = Regularizer(kind=regularizer_kind("input_noise"), build=_build)
