"""Every regularizer the loop applies, in the order their callbacks run.

The order is part of the numerics: bit flips draw their random numbers before Gaussian noise
does, the weight penalty is added to the loss before the activity penalty, and early stopping
comes first so that it restores the best weights before any other callback's on_train_end
(the final analyses) looks at the model.
"""

from __future__ import annotations

import torch

from models.base import LayerwiseModel
from services.contract.spec import ExperimentSpec
from workers.training.callbacks import Callback
from workers.training.regularizers import (
    activity_penalty,
    bit_flip,
    early_stopping,
    gradient_clipping,
    input_noise,
    weight_constraints,
    weight_penalty,
)
from workers.training.regularizers.base import Regularizer

REGULARIZERS: list[Regularizer] = [
    early_stopping.REGULARIZER,
    bit_flip.REGULARIZER,
    input_noise.REGULARIZER,
    weight_penalty.REGULARIZER,
    activity_penalty.REGULARIZER,
    gradient_clipping.REGULARIZER,
    weight_constraints.REGULARIZER,
]


def build_regularizers(spec: ExperimentSpec, model: LayerwiseModel, train_x: torch.Tensor
                       ) -> list[Callback]:
    """The callbacks of the regularizers `spec` switches on that have something to act on in
    `model`, in registry order.

    Raises:
        ValueError: a regularizer does not fit the data (bit flips of non-binary inputs).
    """
    built = (regularizer.build(spec, model, train_x) for regularizer in REGULARIZERS
             if regularizer.is_on(spec))
    return [callback for callback in built if callback is not None]
