"""Adversarial examples for classifiers of any kind: the fast gradient sign method over an
epsilon grid and DeepFool's minimal perturbations (the lecture's two attacks).

Perturbations are not clipped to a data range: tabular features have none, and the question
is how far the decision boundary is, not whether the result is a valid image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from workers.diagnostics.analysis.common import (
    class_labels,
    class_logits,
    input_gradient,
    predicted,
)


@dataclass
class FGSMResult:
    eps: list[float]
    accuracy: list[float]  # at each eps, over all examples
    clean_accuracy: float
    # Per example correct at eps 0: the smallest eps of the grid that flips it (None: none
    # does), and the L2 norm of that perturbation.
    min_flip_eps: list[float | None] = field(default_factory=list)
    min_flip_l2: list[float | None] = field(default_factory=list)
    # The correctly classified examples perturbed at the largest eps (B_correct, D), CPU: in
    # the order DeepFool attacks them.
    examples: torch.Tensor | None = None


def fgsm(model: torch.nn.Module, objective: Any, x: torch.Tensor, y: torch.Tensor,
         eps_grid: list[float]) -> FGSMResult:
    """x + eps * sign(dJ/dx) for each eps (ascending), in eval mode."""
    model.eval()
    labels = class_labels(y)
    grad, z = input_gradient(model, objective, x, y)
    direction = grad.sign()
    correct = class_logits(z).argmax(dim=1) == labels  # (B,)
    step_l2 = direction.flatten(1).norm(dim=1)  # (B,) ||sign(g)||_2
    flip_eps = torch.full((len(x),), float("nan"), device=x.device)
    accuracy, adversarial = [], x
    for eps in sorted(eps_grid):
        adversarial = x + eps * direction
        hit = predicted(model, adversarial) == labels
        accuracy.append(float(hit.float().mean()))
        newly = correct & ~hit & torch.isnan(flip_eps)
        flip_eps[newly] = eps
    flips = flip_eps[correct].cpu()
    l2 = (flip_eps * step_l2)[correct].cpu()  # eps * ||sign(g)||_2
    return FGSMResult(sorted(eps_grid), accuracy, float(correct.float().mean()),
                      [None if torch.isnan(e) else float(e) for e in flips],
                      [None if torch.isnan(v) else float(v) for v in l2],
                      adversarial[correct].detach().flatten(1).cpu())


@dataclass
class DeepFoolResult:
    perturbation_l2: list[float]  # per flipped example
    flipped_fraction: float  # of the correctly classified examples
    correct: int  # correctly classified examples attacked
    relative_l2: list[float]  # ||r|| / ||x|| per flipped example
    perturbations: torch.Tensor | None = None  # (B_correct, D), CPU
    originals: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    adversarial_labels: torch.Tensor | None = None


def deepfool(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *,
             max_iter: int = 50, overshoot: float = 0.02) -> DeepFoolResult:
    """DeepFool (Moosavi-Dezfooli et al., 2016) on the correctly classified examples, batched.

    Each iteration linearizes the classifier at the current point and steps to the nearest
    linearized boundary between the true class k and another class l:
    r = (|f_l - f_k| + 1e-4) / ||w_l - w_k||^2 * (w_l - w_k), with w = d score / dx.
    An example stops moving once its class has changed.
    """
    model.eval()
    labels = class_labels(y)
    keep = predicted(model, x) == labels
    x0, labels = x[keep].detach(), labels[keep]
    rows = torch.arange(len(x0), device=x.device)
    total = torch.zeros_like(x0)
    for _ in range(max_iter):
        point = (x0 + (1 + overshoot) * total).requires_grad_(True)
        scores = class_logits(model(point))  # (B, C)
        active = scores.argmax(dim=1) == labels
        if not active.any():
            break
        grads = torch.stack([torch.autograd.grad(scores[:, c].sum(), point,
                                                 retain_graph=c < scores.shape[1] - 1)[0]
                             for c in range(scores.shape[1])], dim=1)  # (B, C, *D)
        scores = scores.detach()
        gap = scores - scores[rows, labels][:, None]  # (B, C): f_l - f_k
        w = (grads - grads[rows, labels][:, None]).flatten(2)  # (B, C, D)
        w_norm = w.norm(dim=2) + 1e-12  # (B, C)
        distance = gap.abs() / w_norm
        distance[rows, labels] = float("inf")
        nearest = distance.argmin(dim=1)  # (B,)
        step = ((gap[rows, nearest].abs() + 1e-4) / w_norm[rows, nearest] ** 2)[:, None] \
            * w[rows, nearest]  # (B, D)
        total = total + step.reshape(x0.shape) * active.reshape(-1, *[1] * (x0.dim() - 1))
    perturbation = ((1 + overshoot) * total).detach()
    adversarial_labels = predicted(model, x0 + perturbation)
    flipped = adversarial_labels != labels
    norms = perturbation.flatten(1).norm(dim=1)
    relative = norms / x0.flatten(1).norm(dim=1).clamp_min(1e-12)
    return DeepFoolResult(norms[flipped].tolist(),
                          float(flipped.float().mean()) if len(x0) else 0.0, len(x0),
                          relative[flipped].tolist(), perturbation.flatten(1).cpu(),
                          x0.flatten(1).cpu(), labels.cpu(), adversarial_labels.cpu())
