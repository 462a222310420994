"""The progress a job reports while it trains: the first epoch, then at most one per interval,
and always the last."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import pytest

from workers.training.logging_callbacks import ProgressReporter


def _train(every_s: float, epochs: int, pause_s: float = 0.0) -> list[dict[str, Any]]:
    """The progress updates a training of `epochs` epochs, each `pause_s` long, reports: the
    reporter's clock is a fake one that moves `pause_s` at each epoch."""
    clock = [1000.0]
    updates: list[dict[str, Any]] = []
    reporter = ProgressReporter(updates.append, every_s=every_s)
    trainer = SimpleNamespace(epoch=0, epochs=epochs, step=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys.modules[ProgressReporter.__module__], "time",
                      SimpleNamespace(monotonic=lambda: clock[0]))
        for epoch in range(epochs):
            trainer.epoch, trainer.step = epoch, 7 * (epoch + 1)
            reporter.on_epoch_end(trainer, {"val/loss": float(epoch)})  # type: ignore[arg-type]
            clock[0] += pause_s
        reporter.on_train_end(trainer)  # type: ignore[arg-type]
    return [update["progress"] for update in updates]


def _epochs(every_s: float, epochs: int, pause_s: float = 0.0) -> list[int]:
    return [progress["epoch"] for progress in _train(every_s, epochs, pause_s)]


def test_fast_epochs_report_the_first_and_the_last():
    assert _epochs(every_s=60, epochs=50) == [1, 50]


def test_slow_epochs_report_every_epoch():
    assert _epochs(every_s=0.01, epochs=4, pause_s=0.02) == [1, 2, 3, 4]


def test_the_last_report_is_not_sent_twice():
    assert _epochs(every_s=0.0, epochs=3) == [1, 2, 3]


def test_the_last_report_carries_the_last_epochs_numbers():
    assert _train(every_s=60, epochs=5)[-1] == {"epoch": 5, "epochs": 5, "step": 35,
                                               "metrics": {"val/loss": 4.0}}
