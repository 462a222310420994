"""The progress a job reports while it trains: the first epoch, then at most one per interval,
and always the last."""

from __future__ import annotations

import time
from types import SimpleNamespace

from workers.callbacks import ProgressReporter


def _epochs(reporter: ProgressReporter, epochs: int, pause_s: float = 0.0) -> list[int]:
    sent: list[int] = []
    reporter.report = lambda update: sent.append(update["progress"]["epoch"])
    trainer = SimpleNamespace(epoch=0, epochs=epochs, step=0)
    for epoch in range(epochs):
        trainer.epoch, trainer.step = epoch, 10 * (epoch + 1)
        reporter.on_epoch_end(trainer, {"train/loss": 1.0 / (epoch + 1)})  # type: ignore[arg-type]
        time.sleep(pause_s)
    reporter.on_train_end(trainer)  # type: ignore[arg-type]
    return sent


def test_fast_epochs_report_the_first_and_the_last():
    assert _epochs(ProgressReporter(lambda u: None, every_s=60), 50) == [1, 50]


def test_slow_epochs_report_every_epoch():
    assert _epochs(ProgressReporter(lambda u: None, every_s=0.01), 4, pause_s=0.02) == [1, 2, 3, 4]


def test_the_last_report_is_not_sent_twice():
    assert _epochs(ProgressReporter(lambda u: None, every_s=0.0), 3) == [1, 2, 3]


def test_the_last_report_carries_the_last_epochs_numbers():
    updates: list[dict] = []
    reporter = ProgressReporter(updates.append, every_s=60)
    trainer = SimpleNamespace(epoch=0, epochs=5, step=0)
    for epoch in range(5):
        trainer.epoch, trainer.step = epoch, 7 * (epoch + 1)
        reporter.on_epoch_end(trainer, {"val/loss": float(epoch)})  # type: ignore[arg-type]
    reporter.on_train_end(trainer)  # type: ignore[arg-type]
    assert updates[-1] == {"progress": {"epoch": 5, "epochs": 5, "step": 35,
                                        "metrics": {"val/loss": 4.0}}}
