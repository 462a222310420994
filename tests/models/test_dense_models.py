"""Linear models, MLPs, activations, initializers and objectives."""

from __future__ import annotations

import math

import pytest
import torch

from models.activations import activation_names, make_activation
from models.base import DataShape
from models.builders import build_model
from models.initializers import initialize
from models.kinds.linear import LinearConfig
from models.kinds.mlp import MLPConfig
from models.objectives import Objective, ObjectiveError

SHAPE = DataShape((6,), 3, "classification")


@pytest.mark.parametrize("activation", activation_names())
def test_mlp_with_every_activation_runs_forward_and_backward(activation):
    torch.manual_seed(0)
    model = build_model(MLPConfig(hidden=[5, 4], activation=activation), SHAPE)
    z = model(torch.randn(7, 6))
    assert z.shape == (7, 3) and torch.isfinite(z).all()
    Objective.resolve("classification").loss(z, torch.randint(0, 3, (7,))).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    if activation != "step":  # the step's derivative is zero: the lecture's point
        assert model.layers[0].weight.grad.abs().sum() > 0


def test_activation_values():
    x = torch.tensor([-2.0, 0.0, 3.0])
    assert make_activation("step")(x).tolist() == [0.0, 0.0, 1.0]
    assert torch.allclose(make_activation("arctan")(x), torch.atan(x))
    assert make_activation("relu")(x).tolist() == [0.0, 0.0, 3.0]
    with pytest.raises(ValueError, match="known"):
        make_activation("swish")


def test_layers_are_named_input_to_output_and_own_their_parameters():
    model = build_model(MLPConfig(hidden=[4, 6, 6], activation="prelu", residual=True), SHAPE)
    groups = model.layer_groups()
    assert list(groups) == ["layers.0", "layers.1", "layers.2", "output"]
    # The PReLU slope and the weighted skip (4 -> 6) belong to their dense layer.
    assert len(groups["layers.1"]) == 4 and len(groups["layers.2"]) == 3
    assert sum(len(p) for p in groups.values()) == len(list(model.parameters()))


def test_glorot_normal_has_the_lectures_variance():
    layer = torch.nn.Linear(300, 200)
    initialize(layer, "glorot_normal")
    assert math.isclose(layer.weight.std().item(), math.sqrt(2 / 500), rel_tol=0.05)
    assert layer.bias.abs().sum() == 0
    initialize(layer, "small_normal")
    assert layer.weight.std().item() < 0.011


@pytest.mark.parametrize("task, output, loss", [
    ("classification", "softmax", "cross_entropy"), ("binary", "sigmoid", "bce"),
    ("regression", "linear", "mse"), ("binary", "hardlimit", "perceptron"),
])
def test_auto_output_and_loss(task, output, loss):
    chosen = Objective.resolve(task, "auto" if output != "hardlimit" else output)
    assert (chosen.output, chosen.loss_name) == (output, loss)


def test_impossible_objectives_name_the_field():
    with pytest.raises(ObjectiveError) as info:
        Objective.resolve("regression", "softmax")
    assert info.value.loc == ("model", "output")
    with pytest.raises(ObjectiveError) as info:
        Objective.resolve("classification", "auto", "bce")
    assert info.value.loc == ("loss",)


def test_squared_error_with_softmax_output_compares_probabilities():
    objective = Objective.resolve("classification", "softmax", "mse")
    z = torch.tensor([[10.0, -10.0]])
    assert objective.loss(z, torch.tensor([0])).item() < 1e-6


def test_perceptron_learns_a_linearly_separable_problem():
    torch.manual_seed(0)
    x = torch.randn(200, 2)
    y = (x[:, :1] + 0.5 * x[:, 1:] > 0).float()
    model = build_model(LinearConfig(output="hardlimit"), DataShape((2,), 1, "binary"))
    objective = Objective.resolve("binary", "hardlimit")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(50):
        optimizer.zero_grad()
        objective.loss(model(x), y).backward()
        optimizer.step()
    accuracy = (objective.predict(model(x)) == y).float().mean().item()
    assert accuracy > 0.97
