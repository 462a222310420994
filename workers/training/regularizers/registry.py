"""Every regularizer the loop applies, in the order their callbacks run.

The order is part of the numerics: bit flips draw their random numbers before Gaussian noise
does, the weight penalty is added to the loss before the activity penalty, and early stopping
comes first so that it restores the best weights before any other callback's on_train_end
(the final analyses) looks at the model. It is written once, in the contract's
`REGULARIZER_KINDS`; this registry pairs each kind with its callback builder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.base import LayerwiseModel
from services.contract.regularizer_kinds import REGULARIZER_KINDS
from services.contract.spec import ExperimentSpec
from workers.training.callback_base import Callback
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

_BUILT_BY_NAME = {module.REGULARIZER.name: module.REGULARIZER for module in (
    activity_penalty, bit_flip, early_stopping, gradient_clipping, input_noise,
    weight_constraints, weight_penalty)}

# Each declared kind with its builder, in the declared order; a kind with no builder fails here,
# at import, not at the first run that switches it on.
REGULARIZERS: tuple[Regularizer, ...] = tuple(_BUILT_BY_NAME[kind.name]
                                              for kind in REGULARIZER_KINDS)


def build_regularizers(spec: ExperimentSpec, model: LayerwiseModel, train_x: torch.Tensor,
                       regularizers: Sequence[Regularizer] = REGULARIZERS) -> list[Callback]:
    """The callbacks of the `regularizers` that `spec` switches on and that have something to
    act on in `model`, in their order.

    Raises:
        ValueError: a regularizer does not fit the data (bit flips of non-binary inputs).
    """
    built = (regularizer.build(spec, model, train_x) for regularizer in regularizers
             if regularizer.is_on(spec))
    return [callback for callback in built if callback is not None]
