"""Binary-binary restricted Boltzmann machines trained with contrastive divergence (CD-k).

The lecture's energy E(v, h) = -v^T W h, with the bias units written out:
E(v, h) = -v^T W h - b^T v - c^T h, p(h_j = 1 | v) = sigmoid(c_j + sum_i w_ij v_i),
p(v_i = 1 | h) = sigmoid(b_i + sum_j w_ij h_j). CD-k estimates the gradient of log p(v) as
<v h>_data - <v h>_k, the second term after k steps of block Gibbs sampling from the data.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.base import DataShape, LayerwiseModel, ModelConfigError
from models.kinds.rbm import RBMConfig
from models.report import ModelReport, Pictures, picture_shape

RECALL_TASKS = ("recall", "reconstruction")


class BinaryRBM(nn.Module):
    """W (D, H), visible bias b (D,), hidden bias c (H,). Not trained by gradients: CD-k
    updates the parameters in place, so they do not require grad."""

    def __init__(self, visible: int, hidden: int, init_std: float = 0.01):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(visible, hidden) * init_std, requires_grad=False)
        self.visible_bias = nn.Parameter(torch.zeros(visible), requires_grad=False)
        self.hidden_bias = nn.Parameter(torch.zeros(hidden), requires_grad=False)

    def hidden_probs(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(v @ self.weight + self.hidden_bias)  # (B, H)

    def visible_probs(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(h @ self.weight.T + self.visible_bias)  # (B, D)

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """E(v, h) per example: (B,)."""
        return -((v @ self.weight) * h).sum(1) - v @ self.visible_bias - h @ self.hidden_bias

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = -log sum_h exp(-E(v, h)) = -b^T v - sum_j softplus(c_j + W_j^T v): (B,)."""
        return -v @ self.visible_bias - F.softplus(v @ self.weight + self.hidden_bias).sum(1)

    def gibbs(self, v: torch.Tensor, steps: int) -> torch.Tensor:
        """`steps` rounds of block Gibbs sampling from v; returns p(v | h) of the last round."""
        probs = v
        for _ in range(steps):
            h = torch.bernoulli(self.hidden_probs(v))
            probs = self.visible_probs(h)
            v = torch.bernoulli(probs)
        return probs

    @torch.no_grad()
    def contrastive_divergence(self, v0: torch.Tensor, *, k: int, lr: float
                               ) -> dict[str, torch.Tensor]:
        """One CD-k update on the batch v0 (B, D) in [0, 1]. Returns the batch's mean squared
        reconstruction error and mean free energy, both before the update (device tensors)."""
        ph0 = self.hidden_probs(v0)  # (B, H)
        h = torch.bernoulli(ph0)
        for step in range(k):
            pv = self.visible_probs(h)  # (B, D)
            # The last visible state stays a probability: less sampling noise in <v h>_k.
            v = pv if step == k - 1 else torch.bernoulli(pv)
            phk = self.hidden_probs(v)
            h = torch.bernoulli(phk)
        batch = v0.shape[0]
        stats = {"reconstruction_error": (v0 - v).square().mean(),
                 "free_energy": self.free_energy(v0).mean()}
        self.weight.add_(lr * (v0.T @ ph0 - v.T @ phk) / batch)  # (D, H)
        self.visible_bias.add_(lr * (v0 - v).mean(0))
        self.hidden_bias.add_(lr * (ph0 - phk).mean(0))
        return stats


class RBMModel(LayerwiseModel):
    """Learns p(v) of the clean patterns y; `forward` reconstructs a (corrupted) x through
    the hidden layer. +-1 data is read as {0, 1} units and answered in +-1."""

    uses_gradients = False

    def __init__(self, config: RBMConfig, shape: DataShape):
        super().__init__()
        self.config = config
        self.pm1 = shape.extra.get("values") == "pm1"
        self.image_shape = shape.extra.get("image_shape")
        self.rbm = BinaryRBM(shape.input_dim, config.hidden, config.init_std)
        self._sums: dict[str, torch.Tensor] = {}

    def _units(self, x: torch.Tensor) -> torch.Tensor:
        v = x.flatten(1)  # (B, D)
        return (v + 1) / 2 if self.pm1 else v

    def _data(self, p: torch.Tensor) -> torch.Tensor:
        return 2 * p - 1 if self.pm1 else p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean-field reconstruction p(v | p(h | x)), in the data's units: (B, D)."""
        return self._data(self.rbm.visible_probs(self.rbm.hidden_probs(self._units(x))))

    def training_step(self, x: torch.Tensor, y: torch.Tensor, objective: Any
                      ) -> dict[str, torch.Tensor]:
        stats = self.rbm.contrastive_divergence(self._units(y), k=self.config.k,
                                                lr=self.config.lr)
        stats["count"] = torch.ones((), device=y.device)
        for key, value in stats.items():
            self._sums[key] = self._sums[key] + value if key in self._sums else value
        return {"loss": stats["reconstruction_error"], "output": self(x)}

    def epoch_metrics(self) -> dict[str, float]:
        sums, self._sums = self._sums, {}
        if not sums:
            return {}
        count = float(sums.pop("count"))
        return {f"train/{key}": float(value) / count for key, value in sums.items()}

    @torch.no_grad()
    def after_training(self, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
                       ) -> ModelReport:
        """Samples of the learned p(v) (Gibbs chains from random states) and the first
        hidden units' weights, as pictures."""
        device = self.rbm.weight.device
        visible, hidden = self.rbm.weight.shape
        height, width = picture_shape(visible, self.image_shape)
        start = torch.bernoulli(torch.full((self.config.samples, visible), 0.5, device=device))
        samples = self.rbm.gibbs(start, self.config.sample_steps).reshape(-1, height, width)
        filters = self.rbm.weight.T[:16].reshape(-1, height, width)  # (<=16, H, W)
        return ModelReport(pictures={
            "rbm_gibbs_samples": Pictures(samples.cpu(), [f"sample {i}" for i in
                                                          range(len(samples))]),
            "rbm_filters": Pictures(filters.cpu(), [f"hidden {j}" for j in
                                                    range(min(16, hidden))]),
        })


def require_recall(kind: str, shape: DataShape) -> None:
    """Energy models restore their input: the data must pair x with a target of its size."""
    if shape.task not in RECALL_TASKS or shape.output_dim != shape.input_dim:
        raise ModelConfigError(("kind",), f"{kind} learns patterns and restores them, so it "
                               f"needs recall data (x corrupted, y clean, same size); this data's"
                               f" task is {shape.task!r}. Use data: {{name: patterns}} (params "
                               "source: random or digits)")


def build_rbm(config: RBMConfig, shape: DataShape, dropout: float = 0.0) -> RBMModel:
    require_recall("rbm", shape)
    return RBMModel(config, shape)
