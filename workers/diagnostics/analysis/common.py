"""What the analyses share: the examples they look at, input gradients, class predictions,
and how to draw an input as a picture."""

from __future__ import annotations

from typing import Any

import torch

from models.base import DataShape
from models.report import picture_shape

Splits = dict[str, tuple[torch.Tensor, torch.Tensor]]


def analysis_sample(splits: Splits, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` validation examples (training examples when there is no validation
    split): the same examples for every analysis and every run of a spec."""
    x, y = splits["val"] if "val" in splits and len(splits["val"][0]) else splits["train"]
    return x[:count], y[:count]


def input_gradient(model: torch.nn.Module, objective: Any, x: torch.Tensor, y: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """dJ_i/dx_i for each example's own loss J_i, and the pre-output z. The model is in eval
    mode, so examples do not interact and the gradient of the summed loss is per example."""
    x = x.detach().clone().requires_grad_(True)
    z = model(x)
    loss = objective.loss(z, y) * len(x)  # the objective averages; the sum is per example
    (grad,) = torch.autograd.grad(loss, x)
    return grad, z.detach()


def class_logits(z: torch.Tensor) -> torch.Tensor:
    """(B, C) scores whose argmax is the predicted class; a binary net's one logit z becomes
    (0, z), so both cases cross their decision boundary where two scores are equal."""
    return torch.cat([torch.zeros_like(z), z], dim=1) if z.shape[1] == 1 else z


def class_labels(y: torch.Tensor) -> torch.Tensor:
    """Class indices (B,) from classification indices or binary 0/1 targets (B, 1)."""
    return y.reshape(len(y), -1)[:, 0].long() if y.dim() > 1 else y.long()


def predicted(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return class_logits(model(x)).argmax(dim=1)


def picture_of(shape: DataShape) -> tuple[int, int] | None:
    """(H, W) to draw one input as a picture: images, (T, F) sequences and flat vectors that
    the data says are images (digits' image_shape); None for plain feature vectors."""
    image_shape = shape.extra.get("image_shape")
    if len(shape.input_shape) >= 2 or image_shape:
        if len(shape.input_shape) == 3 and shape.input_shape[0] > 1:
            return None  # several channels: no single grey picture
        return picture_shape(shape.input_dim, image_shape or list(shape.input_shape))
    return None
