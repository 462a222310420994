"""The fused per-layer norms equal the naive per-layer computation."""

from __future__ import annotations

import torch

from models.base import DataShape
from models.builders import build_model
from models.kinds.mlp import MLPConfig
from workers.training.norms import PerLayerNorms


def test_per_layer_norms_match_naive_norms():
    torch.manual_seed(0)
    model = build_model(MLPConfig(hidden=[5, 7], activation="prelu", residual=True),
                        DataShape((4,), 3, "classification"))
    groups = model.layer_groups()
    norms = PerLayerNorms(groups)
    model(torch.randn(9, 4)).square().sum().backward()
    norms.after_backward()
    norms.before_update()
    before = {n: [p.detach().clone() for p in ps] for n, ps in groups.items()}
    with torch.no_grad():
        for p in model.parameters():
            p.sub_(0.1 * p.grad)
    got = dict(zip(norms.keys, norms.layer_norms([norms.after_update()])[0].tolist(),
                   strict=True))

    def norm(tensors):
        return torch.sqrt(sum(t.square().sum() for t in tensors)).item()

    for name, params in groups.items():
        assert abs(got[f"grad_norm/{name}"] - norm([p.grad for p in params])) < 1e-4
        deltas = [p - b for p, b in zip(params, before[name], strict=True)]
        assert abs(got[f"update_norm/{name}"] - norm(deltas)) < 1e-4
        assert abs(got[f"weight_norm/{name}"] - norm(params)) < 1e-4
    assert abs(got["grad_norm/total"] - norm([p.grad for p in model.parameters()])) < 1e-4
    assert norms.keys[:4] == ["grad_norm/layers.0", "grad_norm/layers.1", "grad_norm/output",
                              "grad_norm/total"]


def test_per_layer_norm_parts_can_be_switched_off():
    model = build_model(MLPConfig(hidden=[3]), DataShape((2,), 1, "binary"))
    norms = PerLayerNorms(model.layer_groups(), grads=False, updates=False)
    assert norms.keys == ["weight_norm/layers.0", "weight_norm/output"]
    assert norms.layer_norms([norms.after_update()] * 3).shape == (3, 2)
