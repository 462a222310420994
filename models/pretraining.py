"""Greedy layer-wise pretraining of a stack of dense layers, one layer at a time:

- autoencoder: layer l and a temporary decoder learn to reconstruct layer l's input (with a
  fraction of it zeroed when denoising), by gradient descent;
- rbm: layer l is a binary RBM over its input, trained with CD-k, then read as a sigmoid layer;
- supervised: layer l and a temporary output layer learn the targets (Bengio et al. 2007).

The layers below l stay fixed; their outputs over the whole training split are computed once.
Each layer logs `pretrain/layer_<l>/loss` (and `update_norm`) per epoch at its own steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.dense import DenseLayer
from models.rbm import BinaryRBM

MetricLog = Callable[[dict[str, float], int], None]


@dataclass(frozen=True)
class PretrainPlan:
    method: str  # autoencoder | rbm | supervised
    activation: str  # of the stack's layers, for the decoders of hidden layers
    epochs: int
    lr: float
    batch_size: int
    denoise: float
    cd_k: int
    cd_lr: float = 0.5  # rbm stages' step; `lr` is Adam's, for the other stages


@dataclass
class LayerResult:
    """What layer l's stage leaves behind: its decoder (autoencoder: a trained layer; rbm:
    the transposed weights) or its output head (supervised)."""

    decoder: nn.Linear | None = None
    head: nn.Linear | None = None


class StepCounter:
    def __init__(self, log: MetricLog):
        self.log = log
        self.step = 0


def mask(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """Denoising corruption: each value zeroed with probability `fraction`."""
    return x * (torch.rand_like(x) >= fraction) if fraction > 0 else x


def pretrain_stack(layers: list[DenseLayer], x: torch.Tensor, y: torch.Tensor, *,
                   plan: PretrainPlan, loss_fn: Callable[[torch.Tensor, torch.Tensor],
                                                         torch.Tensor],
                   output_dim: int, log: MetricLog) -> tuple[int, list[LayerResult]]:
    """Pretrain `layers` in order on inputs x (N, D) and targets y. Returns the steps taken
    and each layer's result."""
    counter = StepCounter(log)
    results = []
    h = x.flatten(1)  # (N, D)
    for index, layer in enumerate(layers):
        if plan.method == "rbm":
            results.append(_rbm_stage(layer, h, plan, counter, index))
        else:
            results.append(_gradient_stage(layer, h, y, plan, loss_fn, output_dim, counter,
                                           index))
        with torch.no_grad():
            layer.eval()
            h = layer(h)  # (N, H_l): the next layer's input
            layer.train()
    return counter.step, results


def _batches(count: int, size: int, device: torch.device):
    order = torch.randperm(count).to(device)
    for start in range(0, count, size):
        yield order[start:start + size]


def _log_epoch(counter: StepCounter, index: int, loss: torch.Tensor, batches: int,
               layer: nn.Linear, before: torch.Tensor, extra: dict[str, float] | None = None
               ) -> None:
    change = (layer.weight.detach() - before).norm()  # what this epoch changed in the layer
    metrics = {f"pretrain/layer_{index}/loss": float(loss) / batches,
               f"pretrain/layer_{index}/update_norm": float(change)}
    for key, value in (extra or {}).items():
        metrics[f"pretrain/layer_{index}/{key}"] = value
    counter.log(metrics, counter.step - 1)


def _gradient_stage(layer: DenseLayer, h: torch.Tensor, y: torch.Tensor, plan: PretrainPlan,
                    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    output_dim: int, counter: StepCounter, index: int) -> LayerResult:
    supervised = plan.method == "supervised"
    # Decoders of hidden inputs (in [0, 1] for sigmoid units) get the layer's activation;
    # the decoder of the data itself is linear.
    aux: nn.Linear = (nn.Linear(layer.out_features, output_dim) if supervised
                      else nn.Linear(layer.out_features, layer.in_features) if index == 0
                      else DenseLayer(layer.out_features, layer.in_features, plan.activation))
    aux.to(h.device)
    optimizer = torch.optim.Adam([*layer.parameters(), *aux.parameters()], lr=plan.lr)
    for _ in range(plan.epochs):
        before = layer.weight.detach().clone()
        total = torch.zeros((), device=h.device)
        batches = 0
        for index_batch in _batches(len(h), plan.batch_size, h.device):
            inputs = h[index_batch]  # (B, D_l)
            out = aux(layer(mask(inputs, plan.denoise)))
            loss = loss_fn(out, y[index_batch]) if supervised else F.mse_loss(out, inputs)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            batches += 1
            counter.step += 1
        _log_epoch(counter, index, total, batches, layer, before)
    return LayerResult(head=aux) if supervised else LayerResult(decoder=aux)


def _rbm_stage(layer: DenseLayer, h: torch.Tensor, plan: PretrainPlan, counter: StepCounter,
               index: int) -> LayerResult:
    # An RBM's visible units are in [0, 1]: rescale the input affinely, v = (h - lo) / span,
    # and fold that into the layer so that layer(h) = sigmoid(W^T v + c) exactly.
    lo, hi = float(h.min()), float(h.max())
    span = hi - lo if hi > lo else 1.0
    v = (h - lo) / span
    rbm = BinaryRBM(layer.in_features, layer.out_features).to(h.device)
    for _ in range(plan.epochs):
        before = rbm.weight.detach().T.clone()
        sums: dict[str, torch.Tensor] = {}
        batches = 0
        for index_batch in _batches(len(v), plan.batch_size, v.device):
            stats = rbm.contrastive_divergence(mask(v[index_batch], plan.denoise), k=plan.cd_k,
                                               lr=plan.cd_lr)
            for key, value in stats.items():
                sums[key] = sums[key] + value if key in sums else value
            batches += 1
            counter.step += 1
        with torch.no_grad():
            layer.weight.copy_(rbm.weight.T / span)
            layer.bias.copy_(rbm.hidden_bias - lo / span * rbm.weight.sum(0))
        _log_epoch(counter, index, sums["reconstruction_error"], batches, layer, before / span,
                   {"free_energy": float(sums["free_energy"]) / batches})
    decoder = nn.Linear(layer.out_features, layer.in_features).to(h.device)
    with torch.no_grad():
        decoder.weight.copy_(rbm.weight)  # (D_l, H_l): p(v | h) uses W, not W^T
        decoder.bias.copy_(rbm.visible_bias)
    return LayerResult(decoder=decoder)


def copy_into(target: nn.Linear, source: nn.Linear) -> None:
    """Start `target` from `source`'s weights (a pretrained decoder or head)."""
    with torch.no_grad():
        target.weight.copy_(source.weight)
        if target.bias is not None and source.bias is not None:
            target.bias.copy_(source.bias)

