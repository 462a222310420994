"""Retrain on the k most influential inputs (`analysis.prune_top_k`): does the network need
the rest? A fresh model of the spec's kind is sized for k inputs and trained exactly as the
spec says, on the same splits with every other input removed."""

from __future__ import annotations

from typing import Any

import torch

from models.base import DataShape
from models.builders import build_model
from services.contract.spec import ExperimentSpec
from workers.training.build import build_trainer
from workers.training.evaluation import Split


def pruned_shape(shape: DataShape, k: int) -> DataShape:
    """k flat features: no longer an image or a sequence."""
    extra = {key: value for key, value in shape.extra.items() if key != "image_shape"}
    return DataShape((k,), shape.output_dim, shape.task, extra)


def retrain_on(spec: ExperimentSpec, shape: DataShape, objective: Any,
               splits: dict[str, tuple[torch.Tensor, torch.Tensor]], features: list[int],
               device: torch.device) -> dict[str, Any]:
    """The final metrics (as `Trainer.fit` returns them) of a model trained on `features`, flat
    input indices."""
    index = torch.tensor(features, device=device)
    pruned = {name: Split(x.flatten(1)[:, index], y) for name, (x, y) in splits.items()}
    narrow = pruned_shape(shape, len(features))
    torch.manual_seed(spec.training.seed)
    model = build_model(spec.model, narrow, dropout=spec.regularization.dropout).to(device)
    model.pretrain(pruned["train"].x, pruned["train"].y, objective, lambda metrics, step: None)
    return build_trainer(spec, model, objective, pruned, device=device).fit()


def pruning_metrics(full: dict[str, Any], pruned: dict[str, Any], k: int) -> dict[str, float]:
    """`sensitivity/pruned_val_<m>`, `sensitivity/full_val_<m>` and the change (pruned - full)
    for m = accuracy (classifiers) or mse (regression)."""
    name = "accuracy" if "val/accuracy" in pruned else "mse"
    before, after = full.get(f"val/{name}"), pruned.get(f"val/{name}")
    out = {"sensitivity/pruned_features": float(k)}
    if after is not None:
        out[f"sensitivity/pruned_val_{name}"] = float(after)
    if before is not None:
        out[f"sensitivity/full_val_{name}"] = float(before)
    if before is not None and after is not None:
        out[f"sensitivity/pruned_{name}_change"] = float(after) - float(before)
    return out
