"""Per-epoch checkpoints, so a job re-run after a crash resumes where it stopped.

A checkpoint holds the model, the optimizer and the schedule, the epoch and step counters,
the state of every callback that keeps one (early stopping's best so far), and every RNG state
(Python, NumPy, torch, the batch shuffler), so the resumed run draws the same batches it would
have. Files are written to a temporary name and renamed, so a crash mid-write leaves the
previous checkpoint intact, and read with `torch.load(weights_only=True)`: a checkpoint cannot
carry code.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from workers.training.callback_base import Callback, TrainerView


def checkpoint_path(home: str, job_id: str) -> Path:
    """<home>/checkpoints/<job id>.pt. A sweep trial's job id is `<sweep id>/<trial id>`
    (`workers.sweeps.trial.trial_job_id`): each trial has a file of its own, in its sweep's
    folder (`sweep_folder`)."""
    return Path(home, "checkpoints", f"{job_id}.pt")


def sweep_folder(home: str, sweep_id: str) -> Path:
    """Where a sweep's trials keep their checkpoints; the driver removes it when the sweep
    ends (a trial that Tune stopped or paused leaves its file)."""
    return Path(home, "checkpoints", sweep_id)


def save(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def load(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


class CheckpointEveryEpoch(Callback):
    """Writes the trainer's state at the end of an epoch (its metrics already logged), at
    most once per `every_s` seconds: epochs of a few milliseconds would otherwise spend more
    time saving than training. A crash loses at most that much work."""

    def __init__(self, path: Path, *, every_s: float = 0.0):
        self.path, self.every_s = path, every_s
        self._last = time.monotonic()

    def on_epoch_end(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        if time.monotonic() - self._last >= self.every_s:
            save(self.path, trainer.state_dict())
            self._last = time.monotonic()
