"""L1 and L2 penalties on the weights (`regularization.l1`, `l2`, `penalize_biases`)."""

from __future__ import annotations

import torch
from torch import nn

from models.base import LayerwiseModel
from models.regularizers import penalized_weights, weight_penalty
from services.contract.regularizer_kinds import regularizer_kind
from services.contract.spec import ExperimentSpec
from workers.training.callback_base import Callback, TrainerView
from workers.training.regularizers.base import Regularizer


class WeightPenalty(Callback):
    """Adds l1 * sum |W| + l2 * sum W^2 over `weights` to the loss."""

    def __init__(self, weights: list[nn.Parameter], *, l1: float, l2: float):
        self.weights, self.l1, self.l2 = weights, l1, l2

    def penalty(self, trainer: TrainerView) -> torch.Tensor:
        return weight_penalty(self.weights, l1=self.l1, l2=self.l2)


def _build(spec: ExperimentSpec, model: LayerwiseModel, train_x: torch.Tensor
           ) -> Callback | None:
    reg = spec.regularization
    weights = penalized_weights(model, include_biases=reg.penalize_biases)
    return WeightPenalty(weights, l1=reg.l1, l2=reg.l2) if weights else None


REGULARIZER = Regularizer(kind=regularizer_kind("weight_penalty"), build=_build)
