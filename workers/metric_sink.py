"""Buffered MLflow metric logging off the training thread.

Per-step `log_batch` calls cost 3.7 ms on SQLite and 12 ms over HTTP against a 0.55 ms
training step, so metrics are queued and a background thread writes everything queued so far
in one go (see `metric_writers` for how).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable

from mlflow.entities import Metric

from workers.metric_writers import MetricWriter


class MetricSink:
    """Accepts metrics from the training thread; one daemon thread writes them to MLflow.

    `close()` waits until everything queued is written and re-raises a logging failure, so a
    run never ends "finished" with metrics silently missing.
    """

    def __init__(self, writer: MetricWriter, run_id: str, *, flush_every_s: float = 1.0):
        self._writer = writer
        self._run_id = run_id
        self._flush_every_s = flush_every_s
        self._queue: queue.Queue[list[Metric] | Callable[[], object] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="mlflow-metrics", daemon=True)
        self._thread.start()

    def log(self, metrics: dict[str, float], step: int, timestamp_ms: int | None = None) -> None:
        ts = timestamp_ms or int(time.time() * 1000)
        self._queue.put([Metric(k, float(v), ts, step) for k, v in metrics.items()])

    def log_rows(self, keys: list[str], rows: Iterable[Iterable[float]], steps: list[int],
                 timestamps_ms: list[int]) -> None:
        """Many steps of the same keys at once (the per-layer norm buffer)."""
        batch = [Metric(key, float(value), ts, step)
                 for row, step, ts in zip(rows, steps, timestamps_ms, strict=True)
                 for key, value in zip(keys, row, strict=True)]
        self._queue.put(batch)

    def call_soon(self, action: Callable[[], object]) -> None:
        """Run `action` on the logging thread, in order with the metrics (params and small
        artifacts of the run start, so they overlap with training instead of delaying it)."""
        self._queue.put(action)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"logging to MLflow failed: {self._error}") from self._error

    def _drain(self) -> None:
        done = False
        while not done:
            batch, done = self._collect()
            self._send(batch)

    def _collect(self) -> tuple[list[Metric], bool]:
        """Everything queued so far (waiting up to flush_every_s for the first item), and
        whether the close marker was among it."""
        try:
            item = self._queue.get(timeout=self._flush_every_s)
        except queue.Empty:
            return [], False
        batch: list[Metric] = []
        while item is not None:
            if callable(item):
                self._send(batch)
                batch = []
                self._run(item)
            else:
                batch.extend(item)
            if self._queue.empty():
                return batch, False
            item = self._queue.get_nowait()
        return batch, True

    def _run(self, action: Callable[[], object]) -> None:
        if self._error is not None:
            return
        try:
            action()
        except Exception as exc:  # keep the thread alive; close() reports it
            self._error = exc

    def _send(self, batch: list[Metric]) -> None:
        if self._error is not None or not batch:
            return
        try:
            self._writer.write(self._run_id, batch)
        except Exception as exc:  # keep the thread alive; close() reports it
            self._error = exc
