"""Gradients through time through the `states_through_time` hook of the sequence families: a
vanilla RNN's gradient decays faster with n - k than an LSTM's on the same task, truncated
BPTT cuts it, an autoregressive net's reaches back exactly its receptive field, and the hook
computes what `forward` computes."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from services.contract.spec import ExperimentSpec
from tests.utils.specs import mlp_spec
from workers.diagnostics.analysis.bptt import gradient_through_time
from workers.run import prepare
from workers.training.build import build_trainer
from workers.training.evaluation import Split

CPU = torch.device("cpu")
ADDING = {"name": "adding", "params": {"n": 400, "length": 30}}
LONG_ADDING = {"name": "adding", "params": {"n": 400, "length": 50}}
SINE = {"name": "sine", "params": {"n": 64, "length": 24}}


pytestmark = pytest.mark.usefixtures("one_thread")


def _built(data: dict[str, Any], model: dict[str, Any], epochs: int = 0):
    body = mlp_spec(data=data, optimizer={"name": "adam", "lr": 0.01},
                    training={"epochs": max(1, epochs), "batch_size": 32})
    spec = ExperimentSpec.model_validate({**body, "model": model})
    torch.manual_seed(0)
    bundle, objective, net = prepare(spec, [], CPU)
    splits = {name: Split(torch.as_tensor(x), torch.as_tensor(y))
              for name, (x, y) in bundle.splits().items()}
    if epochs:
        build_trainer(spec, net, objective, splits, device=CPU).fit()
    return net, objective, splits["val"].x[:64], splits["val"].y[:64]


def test_a_vanilla_rnn_loses_the_gradient_through_time_faster_than_an_lstm():
    """The adding problem at T = 50, both cells trained alike for two epochs (at Glorot
    initialization a vanilla RNN starts near the edge, dJ/dh[k] barely shrinking; training
    pushes it into the vanishing regime while the LSTM's cell state keeps carrying it)."""
    decay = {}
    for cell in ("vanilla", "lstm"):
        net, objective, x, y = _built(LONG_ADDING, {"kind": "rnn", "cell": cell, "hidden": 16},
                                      epochs=2)
        through = gradient_through_time(net, objective, x, y)
        assert through is not None and through.steps == [50]  # many-to-one: the last step
        assert len(through.norms[50]) == 50 and all(v > 0 for v in through.norms[50])
        decay[cell] = through.decay()
    assert decay["vanilla"]["bptt/first_over_last"] < 0.1 * decay["lstm"]["bptt/first_over_last"]
    assert decay["vanilla"]["bptt/decay_per_step"] < decay["lstm"]["bptt/decay_per_step"]


@pytest.mark.parametrize(("data", "model"), [
    (ADDING, {"kind": "rnn", "cell": "lstm", "hidden": 8, "layers": 2}),
    (ADDING, {"kind": "rnn", "cell": "gru", "hidden": 8, "bidirectional": True}),
    (SINE, {"kind": "rnn", "cell": "vanilla", "hidden": 8, "bptt": 5}),
    (SINE, {"kind": "autoregressive", "channels": 8, "layers": 2}),
    (SINE, {"kind": "transformer", "width": 16, "heads": 2, "layers": 1}),
])
def test_the_hook_computes_what_forward_computes(data, model):
    net, _, x, _ = _built(data, model)
    net.eval()
    z, states = net.states_through_time(x)
    assert torch.allclose(z, net(x), atol=1e-5)
    assert len(states) == x.shape[1] and all(s.shape[0] == len(x) for s in states)
    assert all(s.requires_grad for s in states)


def test_truncation_and_the_receptive_field_bound_the_gradient():
    net, objective, x, y = _built(SINE, {"kind": "rnn", "cell": "vanilla", "hidden": 8,
                                         "bptt": 5})
    through = gradient_through_time(net, objective, x, y, [12])
    assert through is not None and through.steps == [12]
    # state detached before steps 6 and 11: the error at step 12 reaches back to step 11 only
    norms = through.norms[12]
    assert all(v == 0 for v in norms[:10]) and all(v > 0 for v in norms[10:])

    net, objective, x, y = _built(SINE, {"kind": "autoregressive", "channels": 8, "layers": 2,
                                         "kernel_size": 2, "dilation_growth": 2})
    field = 4  # 1 + (2 - 1) * (1 + 2)
    through = gradient_through_time(net, objective, x, y)
    assert through is not None and through.steps == [12, 24]  # many-to-many: middle and last
    norms = through.norms[24]
    assert all(v == 0 for v in norms[:24 - field]) and all(v > 0 for v in norms[24 - field:])


def test_steps_outside_the_outputs_are_refused_and_other_kinds_answer_none():
    net, objective, x, y = _built(ADDING, {"kind": "rnn", "cell": "gru", "hidden": 8})
    with pytest.raises(ValueError, match="bptt_steps"):
        gradient_through_time(net, objective, x, y, [5])  # many-to-one: only step 30
    mlp, objective, x, y = _built({"name": "xor"}, {"kind": "mlp", "hidden": [4]})
    assert mlp.states_through_time(x) is None
    assert gradient_through_time(mlp, objective, x, y) is None
