"""The fit of a regression on one input to one target: the universal-approximation picture
(what M tanh units make of sin, square, abs or sign)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.base import DataShape

GRID_POINTS = 400


@dataclass
class Fit:
    x: np.ndarray  # (N,) the examples shown
    y: np.ndarray  # (N,)
    grid: np.ndarray  # (G,)
    prediction: np.ndarray  # (G,)
    hidden: np.ndarray | None  # (G, H): the first hidden layer's outputs, when there is one


def has_fit(shape: DataShape) -> bool:
    return shape.task == "regression" and shape.input_dim == 1 and shape.output_dim == 1


@torch.no_grad()
def fit_curve(model: Any, objective: Any, x: torch.Tensor, y: torch.Tensor,
              train_x: torch.Tensor) -> Fit:
    """The model's function on a grid over the training inputs' range, and the examples."""
    model.eval()
    low, high = float(train_x.min()), float(train_x.max())
    grid = torch.linspace(low, high, GRID_POINTS, device=train_x.device)
    z = model(grid.reshape(-1, *train_x.shape[1:]))  # (G, 1)
    hidden = model.hidden_activations()
    first = hidden[0] if hidden and hidden[0].dim() == 2 else None  # (G, H)
    return Fit(x.flatten().cpu().numpy(), y.flatten().cpu().numpy(), grid.cpu().numpy(),
               objective.apply_output(z).flatten().cpu().numpy(),
               None if first is None else first.cpu().numpy())
