"""Per-layer L2 norms of gradients, weight updates and weights, computed on the device.

Few kernel launches per logged step, and no host synchronization: one fused
`torch._foreach_norm` over the gradients (before clipping), one snapshot copy before the
update, an in-place subtraction after it, one fused norm over the differences and the weights,
and one stack. What a step leaves is a vector of per-parameter norms on the device; folding
them into per-layer norms waits for `layer_norms`, once per flush of many steps (a `.item()`
per step, or each extra small op per step, costs a visible share of a small MLP's step;
BENCHMARKS.md has the figures).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class PerLayerNorms:
    """Norms of one model's layers, in the order of `layer_groups` (input to output).

    A step's measurement (`after_update`) holds per-parameter norms: [grads..., updates...,
    weights...], each part present when asked for. `layer_norms` turns measurements into rows
    of `keys`: [grad per layer..., grad total, update per layer..., weight per layer...].
    """

    def __init__(self, groups: dict[str, list[nn.Parameter]], *, grads: bool = True,
                 updates: bool = True, weights: bool = True):
        self.layers = list(groups)
        self.params = [p for params in groups.values() for p in params]
        self.grads, self.updates, self.weights = grads, updates, weights
        device = self.params[0].device if self.params else torch.device("cpu")
        owner = [i for i, params in enumerate(groups.values()) for _ in params]
        # torch.stack needs one dtype; a model mixing dtypes has its norms cast to float32.
        self._mixed = len({p.dtype for p in self.params}) > 1
        dtype = torch.float32 if self._mixed or not self.params else self.params[0].dtype
        self._zero = torch.zeros((), device=device, dtype=dtype)
        self._detached = [p.detach() for p in self.params]  # views, made once
        self._before: list[torch.Tensor] | None = None
        self._grad_norms: tuple[torch.Tensor, ...] | None = None
        self._fold = self._fold_matrix(owner)

    @property
    def keys(self) -> list[str]:
        keys = [f"grad_norm/{n}" for n in self.layers] + ["grad_norm/total"] if self.grads else []
        keys += [f"update_norm/{n}" for n in self.layers] if self.updates else []
        keys += [f"weight_norm/{n}" for n in self.layers] if self.weights else []
        return keys

    def _fold_matrix(self, owner: list[int]) -> np.ndarray:
        """(K, B*P): row k sums the squared parameter norms that make up output k."""
        n_layers, n_params = len(self.layers), len(owner)
        blocks = [b for b, on in (("grad", self.grads), ("update", self.updates),
                                  ("weight", self.weights)) if on]
        rows: list[np.ndarray] = []
        for b, block in enumerate(blocks):
            for layer in range(n_layers):
                row = np.zeros(len(blocks) * n_params)
                row[[b * n_params + p for p in range(n_params) if owner[p] == layer]] = 1.0
                rows.append(row)
            if block == "grad":
                total = np.zeros(len(blocks) * n_params)
                total[b * n_params:(b + 1) * n_params] = 1.0
                rows.append(total)
        return np.stack(rows) if rows else np.zeros((0, 0))

    def after_backward(self) -> None:
        """Gradients are complete and not clipped yet: take their norms."""
        if self.grads:
            self._grad_norms = tuple(torch._foreach_norm(
                [p.grad if p.grad is not None else self._zero for p in self.params]))

    def before_update(self) -> None:
        """Remember the weights, in buffers allocated once."""
        if not self.updates:
            return
        if self._before is None:
            self._before = [p.clone() for p in self._detached]
        else:
            torch._foreach_copy_(self._before, self._detached)

    def after_update(self) -> torch.Tensor:
        """The step's measurement: per-parameter norms, a device vector."""
        norms: list[torch.Tensor] = []
        if self.grads:
            # A step without gradients (Hebbian, contrastive divergence) shows zeros.
            norms += self._grad_norms or (self._zero,) * len(self.params)
            self._grad_norms = None
        tensors: list[torch.Tensor] = []
        if self.updates:
            assert self._before is not None, "before_update() must run before the update"
            torch._foreach_sub_(self._before, self._detached)  # W_old - W
            tensors += self._before
        if self.weights:
            tensors += self._detached
        if tensors:
            norms += torch._foreach_norm(tensors)
        if self._mixed:
            norms = [n.float() for n in norms]
        return torch.stack(norms)

    def layer_norms(self, measurements: list[torch.Tensor]) -> np.ndarray:
        """(S, K) float64 rows of `keys`, one per measurement: the one host sync."""
        if not measurements:
            return np.zeros((0, len(self._fold)))
        per_param = torch.stack(measurements).cpu().double().numpy()
        return np.sqrt(np.square(per_param) @ self._fold.T)
