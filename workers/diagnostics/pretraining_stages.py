"""What a layer-wise pretraining's stages measured (`LayerwiseModel.pretrain`: an autoencoder's
stacked autoencoders, RBMs or supervised stages), kept for the run's report and plot: each
stage's own check is its loss (an RBM stage's: its reconstruction error), which must fall.

`PretrainingStages.log` stands in for the metric log handed to `pretrain`: it passes every
row on and keeps the `pretrain/layer_<l>/loss` ones.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

STAGE_LOSS = re.compile(r"^pretrain/layer_(\d+)/loss$")


class PretrainingStages:
    def __init__(self, log: Callable[[dict[str, float], int], None]):
        self._log = log
        self.losses: dict[int, tuple[list[int], list[float]]] = {}  # layer -> (steps, values)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._log(metrics, step)
        for key, value in metrics.items():
            match = STAGE_LOSS.match(key)
            if match:
                steps, values = self.losses.setdefault(int(match.group(1)), ([], []))
                steps.append(int(step))
                values.append(float(value))

    def curves(self) -> dict[str, tuple[list[int], list[float]]]:
        """Each stage's loss by step, keyed as logged, for `training_plots.loss_accuracy`."""
        return {f"pretrain/layer_{layer}/loss": curve
                for layer, curve in sorted(self.losses.items())}

    def stages(self) -> list[dict[str, Any]]:
        """Each stage, in order: its layer, its loss by epoch, and whether it fell (its last
        epoch below its first; a single epoch has nothing to compare: None)."""
        said = []
        for layer, (_, values) in sorted(self.losses.items()):
            finite = [v for v in values if math.isfinite(v)]
            fell = (finite[-1] < finite[0] if len(finite) == len(values) else False) \
                if len(values) > 1 else None
            said.append({"layer": layer, "loss_by_epoch": values, "fell": fell})
        return said
