"""What every model answers, so that one training loop can drive every kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from models.report import ModelReport

# Where `pretrain` sends its metrics: log(metrics, step).
MetricLog = Callable[[dict[str, float], int], None]


class ModelConfigError(ValueError):
    """A model config that cannot work with the data; `loc` is the path below `model`."""

    def __init__(self, loc: tuple[str | int, ...], msg: str):
        super().__init__(msg)
        self.loc = loc
        self.msg = msg


@dataclass(frozen=True)
class DataShape:
    """What a model needs to know about its data to size itself.

    Attributes:
        input_shape: one example's shape, e.g. (64,) tabular, (1, 8, 8) image, (T, F) sequence.
        output_dim: number of outputs (classes for classification, 1 for binary, targets for
            regression).
        task: classification | binary | regression | sequence | language_model | reconstruction
            | recall.
        extra: dataset facts a family may need (vocabulary size, sequence length, ...).
    """

    input_shape: tuple[int, ...]
    output_dim: int
    task: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_dim(self) -> int:
        size = 1
        for dim in self.input_shape:
            size *= dim
        return size


class LayerwiseModel(nn.Module):
    """Base of every model the loop trains.

    `forward(x)` returns the pre-output `z` (logits for classifiers, values for regression); the
    objective applies the output function. Kinds that do not learn by backpropagation (Hopfield
    nets, RBMs) override `training_step` and set `uses_gradients = False`; the loop then skips
    backward and the optimizer and logs what the step changed instead.
    """

    uses_gradients: bool = True

    def training_step(self, x: torch.Tensor, y: torch.Tensor, objective: Any
                      ) -> dict[str, torch.Tensor]:
        """One step's forward pass and loss. Returns at least {"loss", "output"}."""
        z = self(x)
        return {"loss": objective.loss(z, y), "output": z}

    def pretrain(self, x: torch.Tensor, y: torch.Tensor, objective: Any, log: MetricLog) -> int:
        """Before the training loop: layer-wise pretraining on the training split (x, y).

        Logs each stage's metrics through `log` with its own steps, counted from 0. Returns
        the number of steps taken, so that the training loop's steps follow them; 0 when the
        kind does not pretrain.
        """
        return 0

    def epoch_metrics(self) -> dict[str, float]:
        """At the end of each training epoch: what the model measured itself during the
        epoch's steps (energy, free energy, ...), keyed as in MLflow; then forgets it."""
        return {}

    def after_training(self, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
                       ) -> ModelReport:
        """Training is over and the final metrics are computed: curves and pictures that show
        what this kind learned (feature maps, samples, energy, capacity). `splits` maps
        train/val/test to (x, y) on the model's device."""
        return ModelReport()

    def hidden_activations(self) -> list[torch.Tensor]:
        """Hidden activations of the last forward pass (for activity penalties and unit
        statistics); none by default."""
        return []

    def epoch_artifacts(self, epoch: int) -> dict[str, str]:
        """Text artifacts to record after epoch `epoch` (1-based), keyed by artifact path: a
        language model's generated sample, for example. None by default."""
        return {}

    def states_through_time(self, x: torch.Tensor
                            ) -> tuple[torch.Tensor, list[torch.Tensor]] | None:
        """A forward pass of `x` that also hands out the hidden state of every time step, for
        the gradient through time (the lecture's "issues with RNNs").

        Returns (z, [h[1], ..., h[T]]): `z` as `forward` returns it, each h[k] (B, H) a tensor
        of the graph that produced `z` and that later steps are computed from, so that
        dJ_n/dh[k] = autograd.grad(J_n, h[k]) is the whole derivative through time. None (the
        default) for kinds that have no state through time.
        """
        return None

    def layer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters grouped by layer, keyed by module path, ordered input to output.

        A layer is a module that owns parameters directly. The parameters of a module nested in
        such a layer (a PReLU slope inside a dense layer) belong to that enclosing layer, so a
        layer's norm covers everything it learns. Families whose registration order is not the
        data's order override this.
        """
        groups: dict[str, list[nn.Parameter]] = {}
        for name, module in self.named_modules():
            own = list(module.parameters(recurse=False))
            if not own:
                continue
            owner = _enclosing_layer(name, groups)
            groups.setdefault(owner, []).extend(own)
        return groups

    def layer_names(self) -> list[str]:
        """Module paths of the layers that own weights, ordered input to output."""
        return list(self.layer_groups())


def _enclosing_layer(name: str, layers: dict[str, list[nn.Parameter]]) -> str:
    parts = name.split(".")
    for cut in range(1, len(parts)):
        prefix = ".".join(parts[:cut])
        if prefix in layers:
            return prefix
    return name or "model"
