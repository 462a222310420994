"""Input sensitivity: how much the error changes with each input, |dJ/dx| averaged over
validation examples (the lecture's feature selection by sensitivity analysis).

The score of input feature j is mean_i |dJ_i/dx_ij|, with J_i example i's own loss. Inputs
are ranked by score; for images the scores form a saliency map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from workers.diagnostics.analysis.common import input_gradient

CHUNK = 1024


@dataclass
class Sensitivity:
    scores: torch.Tensor  # (D,) mean |dJ/dx| per flat input feature, on the CPU
    ranking: list[int]  # flat feature indices, most influential first
    input_shape: tuple[int, ...]
    examples: int

    def as_dict(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "examples": self.examples,
                "ranking": self.ranking, "scores": [float(s) for s in self.scores]}

    def saliency_map(self) -> torch.Tensor:
        """The scores in the input's shape, channels summed: (H, W), (T, F) or (D,)."""
        scores = self.scores.reshape(self.input_shape)
        return scores.sum(dim=0) if len(self.input_shape) == 3 else scores


def sensitivity(model: torch.nn.Module, objective: Any, x: torch.Tensor, y: torch.Tensor
                ) -> Sensitivity:
    """Scores and ranking over the examples (x, y); the model is left in eval mode."""
    model.eval()
    total = torch.zeros(x[0].numel(), device=x.device)
    for start in range(0, len(x), CHUNK):
        grad, _ = input_gradient(model, objective, x[start:start + CHUNK],
                                 y[start:start + CHUNK])
        total += grad.abs().flatten(1).sum(dim=0)  # (D,)
    scores = (total / max(1, len(x))).cpu()
    ranking = torch.argsort(scores, descending=True, stable=True).tolist()
    return Sensitivity(scores, ranking, tuple(x.shape[1:]), len(x))
