"""Host copies of what a run logs, kept for the verdict and the plots at the end.

The per-layer norms are recorded where they already reach the host: `NormHistory.record` is
a recorder of the `PerLayerNormLogger`, which hands it each block it flushes to the metric
sink, so recording adds no device work and no host synchronization to a step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from workers.diagnostics.verdicts.norms import NormCurves
from workers.training.callback_base import Callback, TrainerView


class NormHistory:
    """The per-layer norms (`grad_norm/...`, `update_norm/...`, `weight_norm/...`) of one
    norm logger, one block per flush."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._blocks: list[np.ndarray] = []
        self._steps: list[np.ndarray] = []
        # The blocks joined, kept until the next block: the live diagnosis reads the history
        # at epoch ends, several times per judgement, and joining it each time grew with it.
        self._joined: tuple[np.ndarray, np.ndarray] | None = None

    def record(self, keys: list[str], rows: Any, steps: Sequence[int]) -> None:
        block = np.asarray(rows, dtype=np.float64).reshape(len(steps), len(keys))  # (S, K)
        if not len(block):
            return
        if self.keys and keys != self.keys:
            raise ValueError("one NormHistory records one norm logger's keys")
        self.keys = list(keys)
        self._blocks.append(block)
        self._steps.append(np.asarray(steps, dtype=np.int64))
        self._joined = None

    def _join(self) -> tuple[np.ndarray, np.ndarray]:
        if self._joined is None:
            if len(self._blocks) > 1:  # one block from now on: the next join copies it once
                self._blocks = [np.concatenate(self._blocks)]
                self._steps = [np.concatenate(self._steps)]
            values = self._blocks[0] if self._blocks else np.zeros((0, len(self.keys)))
            steps = self._steps[0] if self._steps else np.zeros(0, dtype=np.int64)
            values.flags.writeable = steps.flags.writeable = False  # shared by every reader
            self._joined = (values, steps)
        return self._joined

    @property
    def steps(self) -> np.ndarray:
        return self._join()[1]

    def values(self) -> np.ndarray:
        """(S, K): one row per logged step, columns in the order of `keys` (read-only)."""
        return self._join()[0]

    def curves(self) -> NormCurves:
        """The history so far as the engine reads it (no copy: the joined, read-only arrays)."""
        values, steps = self._join()
        return NormCurves(list(self.keys), steps, values)


class EpochHistory(Callback):
    """The epoch metrics (train/, val/, ...) as the loop computed them, with their step."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.metrics: list[dict[str, float]] = []

    def on_epoch_end(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        self.steps.append(max(0, trainer.step - 1))
        self.metrics.append(dict(metrics))

    def curve(self, key: str) -> tuple[list[int], list[float]]:
        points = [(s, m[key]) for s, m in zip(self.steps, self.metrics, strict=True) if key in m]
        return [s for s, _ in points], [v for _, v in points]
