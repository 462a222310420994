"""Each initializer draws the distribution it names, per layer type (dense, convolutional,
recurrent gates, attention projections, custom cells), and leaves alone what is not a weight
matrix."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from models.initializers import SMALL_NORMAL_STD, initialize, keep_init

# name -> (expected std, uniform bound or None) for fans (fan_in, fan_out)
EXPECTED = {
    "glorot_normal": lambda i, o: (math.sqrt(2 / (i + o)), None),
    "glorot_uniform": lambda i, o: (math.sqrt(2 / (i + o)), math.sqrt(6 / (i + o))),
    "he_normal": lambda i, o: (math.sqrt(2 / i), None),
    "he_uniform": lambda i, o: (math.sqrt(2 / i), math.sqrt(6 / i)),
    "small_normal": lambda i, o: (SMALL_NORMAL_STD, None),
}


def assert_draws(w: torch.Tensor, name: str, fan_in: int, fan_out: int) -> None:
    std, bound = EXPECTED[name](fan_in, fan_out)
    assert w.std().item() == pytest.approx(std, rel=0.04), (name, tuple(w.shape))
    assert abs(w.mean().item()) < 0.05 * std
    if bound is not None:
        assert w.abs().max().item() <= bound
        assert w.abs().max().item() > 0.98 * bound


@pytest.mark.parametrize("name", list(EXPECTED))
def test_dense_and_conv_weights_have_the_named_variance_and_zero_biases(name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 500), nn.Conv2d(16, 32, kernel_size=5))
    initialize(model, name)
    assert_draws(model[0].weight, name, 300, 500)
    assert_draws(model[1].weight, name, 16 * 25, 32 * 25)  # a kernel counts its receptive field
    assert model[0].bias.abs().sum() == 0 and model[1].bias.abs().sum() == 0


def test_orthogonal_and_zeros():
    torch.manual_seed(0)
    layer = nn.Linear(120, 80)
    initialize(layer, "orthogonal")
    torch.testing.assert_close(layer.weight @ layer.weight.T, torch.eye(80), atol=1e-5,
                               rtol=0)
    initialize(layer, "zeros")
    assert layer.weight.abs().sum() == 0 and layer.bias.abs().sum() == 0


@pytest.mark.parametrize(("cls", "gates"), [(nn.LSTM, 4), (nn.GRU, 3), (nn.RNN, 1)])
def test_recurrent_weights_are_initialized_one_gate_at_a_time(cls, gates):
    torch.manual_seed(0)
    hidden, inputs = 128, 96
    rnn = cls(inputs, hidden, num_layers=2, bidirectional=True)
    initialize(rnn, "glorot_normal")
    for name, param in rnn.named_parameters():
        if name.startswith("bias"):
            assert param.abs().sum() == 0, name
            continue
        fan_in = param.shape[1]
        blocks = param.chunk(gates, dim=0)
        assert len(blocks) == gates and blocks[0].shape == (hidden, fan_in)
        for block in blocks:  # each gate: fans (its input width, hidden), not (.., gates * H)
            assert_draws(block, "glorot_normal", fan_in, hidden)
    initialize(rnn, "orthogonal")
    for block in rnn.weight_hh_l0.chunk(gates, dim=0):  # (H, H): each gate orthogonal
        torch.testing.assert_close(block @ block.T, torch.eye(hidden), atol=1e-5, rtol=0)


def test_attention_projections_are_initialized_per_query_key_value():
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(256, num_heads=4)
    initialize(attention, "glorot_uniform")
    for block in attention.in_proj_weight.chunk(3, dim=0):
        assert_draws(block, "glorot_uniform", 256, 256)
    assert_draws(attention.out_proj.weight, "glorot_uniform", 256, 256)
    assert attention.in_proj_bias.abs().sum() == 0


class CustomCell(nn.Module):
    """A hand-written cell: matrices and vectors as bare parameters, plus layers left alone."""

    def __init__(self):
        super().__init__()
        self.w_x = nn.Parameter(torch.empty(200, 150))
        self.bias_x = nn.Parameter(torch.ones(200))
        self.peephole = nn.Parameter(torch.full((200,), 0.5))
        self.positions = keep_init(nn.Parameter(torch.full((10, 200), 3.0)))
        self.norm = nn.LayerNorm(200)
        self.embedding = nn.Embedding(50, 200)
        self.act = nn.PReLU()


def test_custom_cells_get_their_matrices_initialized_and_keep_their_vectors():
    torch.manual_seed(0)
    cell = CustomCell()
    table = cell.embedding.weight.detach().clone()
    initialize(cell, "he_normal")
    assert_draws(cell.w_x, "he_normal", 150, 200)
    assert cell.bias_x.abs().sum() == 0
    assert (cell.peephole == 0.5).all() and (cell.positions == 3.0).all()
    assert (cell.norm.weight == 1).all() and (cell.act.weight == 0.25).all()
    assert torch.equal(cell.embedding.weight, table)


def test_default_keeps_torchs_initialization():
    torch.manual_seed(0)
    layer = nn.Linear(10, 10)
    before = layer.weight.detach().clone()
    initialize(layer, "default")
    assert torch.equal(layer.weight, before) and layer.bias.abs().sum() > 0
