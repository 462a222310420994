"""Bit-flip corruption of binary inputs during training (`regularization.input_flip_prob`)."""

from __future__ import annotations

import torch

from models.base import LayerwiseModel
from models.regularizers import binary_pivot, bit_flip
from services.contract.regularizer_kinds import regularizer_kind
from services.contract.spec import ExperimentSpec
from workers.training.callback_base import Callback, TrainerView
from workers.training.regularizers.base import Regularizer


class BitFlip(Callback):
    """Flips each input bit of a training batch with probability `prob`; `pivot` is 1 for
    {0, 1} data and 0 for {-1, 1} data (a flip is pivot - x)."""

    def __init__(self, prob: float, pivot: float):
        self.prob, self.pivot = prob, pivot

    def transform_input(self, trainer: TrainerView, x: torch.Tensor) -> torch.Tensor:
        return bit_flip(x, self.prob, self.pivot)


def _build(spec: ExperimentSpec, model: LayerwiseModel, train_x: torch.Tensor) -> Callback:
    pivot = binary_pivot(train_x)
    if pivot is None:
        raise ValueError("regularization.input_flip_prob needs binary inputs ({0, 1} or "
                         "{-1, 1})")
    return BitFlip(spec.regularization.input_flip_prob, pivot)


REGULARIZER = Regularizer(kind=regularizer_kind("bit_flip"), build=_build)
