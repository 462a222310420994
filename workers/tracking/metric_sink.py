"""Buffered MLflow metric logging off the training thread.

Per-step `log_batch` calls cost several times a small model's training step, on SQLite and over
HTTP alike (BENCHMARKS.md), so metrics are queued as columns and a background thread writes what
arrived within `flush_every_s` (0.25 s) in one go (see `metric_writers` for how). Writing a few
times a second rather than at each arrival keeps the thread's share of the interpreter lock,
which the training thread waits for, to a few large calls.

A run continued after a crash retrains from its last checkpoint the epochs it had already
logged past it: the sink drops every (key, step) the run already holds (`logged`), so each
appears in MLflow once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from workers.tracking.metric_writers import MetricColumns, MetricWriter

# Values queued and not yet written before `log` waits for the writer: about 32 MB of
# columns. Per-layer norms at every step of a fast training outrun a stock MLflow server
# (BENCHMARKS.md); an unbounded queue grew by gigabytes an hour.
MAX_PENDING_VALUES = 1_000_000


class MetricSink:
    """Accepts metrics from the training thread; one daemon thread writes them to MLflow.

    `close()` waits until everything queued is written and re-raises a logging failure, so a
    run never ends "finished" with metrics silently missing. When `max_pending` values wait
    to be written, logging more waits for the writer: the training slows down to what the
    store takes rather than holding an ever larger backlog in memory.
    """

    def __init__(self, writer: MetricWriter, run_id: str, *, flush_every_s: float = 0.25,
                 max_pending: int = MAX_PENDING_VALUES, logged: dict[str, int] | None = None):
        """logged: key -> the last step the run already holds; steps up to it are dropped."""
        self._writer = writer
        self._logged = dict(logged or {})
        self._logged_through = max(self._logged.values(), default=-1)
        self._run_id = run_id
        self._flush_every_s = flush_every_s
        self._queue: queue.SimpleQueue[MetricColumns | Callable[[], object] | None] = (
            queue.SimpleQueue())
        self._error: BaseException | None = None
        self._last_send = 0.0
        self._max_pending = max_pending
        self._pending = 0  # values queued or being written
        self._room = threading.Condition()
        self.waited_s = 0.0  # how long logging waited for the writer, in all
        self._thread = threading.Thread(target=self._drain, name="mlflow-metrics", daemon=True)
        self._thread.start()

    def log(self, metrics: dict[str, float], step: int, timestamp_ms: int | None = None) -> None:
        if step <= self._logged_through:
            metrics = {k: v for k, v in metrics.items() if step > self._logged.get(k, -1)}
        if metrics:
            self._put(MetricColumns.from_dict(
                metrics, step, timestamp_ms or int(time.time() * 1000)))

    def log_rows(self, keys: list[str], rows: Any, steps: Sequence[int],
                 timestamps_ms: Sequence[int]) -> None:
        """Many steps of the same keys at once (the per-layer norm buffer): rows is
        (len(steps), len(keys)), a nested list or an array."""
        if not len(steps):
            return
        if self._logged_through >= 0 and min(steps) <= self._logged_through:
            self._log_new_rows(keys, rows, steps, timestamps_ms)
        else:
            self._put(MetricColumns.from_rows(keys, rows, steps, timestamps_ms))

    def _log_new_rows(self, keys: list[str], rows: Any, steps: Sequence[int],
                      timestamps_ms: Sequence[int]) -> None:
        """The rows of each key at steps after its last logged one (a resumed run's first
        blocks), keys with the same last step together."""
        values = np.asarray(rows, dtype=np.float64).reshape(len(steps), len(keys))
        step_array = np.asarray(steps, dtype=np.int64)
        times = np.asarray(timestamps_ms, dtype=np.int64)
        columns_by_last: dict[int, list[int]] = {}
        for column, key in enumerate(keys):
            columns_by_last.setdefault(self._logged.get(key, -1), []).append(column)
        for last, columns in columns_by_last.items():
            new = step_array > last
            if new.any():
                self._put(MetricColumns.from_rows([keys[c] for c in columns],
                                                  values[np.ix_(new, np.array(columns))],
                                                  step_array[new].tolist(),
                                                  times[new].tolist()))

    def _put(self, columns: MetricColumns) -> None:
        with self._room:
            if self._pending >= self._max_pending:
                started = time.monotonic()
                # A failed writer drops what it gets (close() reports why): no wait then.
                while self._pending >= self._max_pending and self._error is None:
                    self._room.wait(timeout=1.0)
                self.waited_s += time.monotonic() - started
            self._pending += len(columns)
        self._queue.put(columns)

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

    def _collect(self) -> tuple[list[MetricColumns], bool]:
        """What arrives until flush_every_s after the last write began (at once when that is
        past: a backlog or the first item after a quiet spell), actions run in order on the
        way, and whether the close marker was among it."""
        item = self._queue.get()
        deadline = self._last_send + self._flush_every_s
        batch: list[MetricColumns] = []
        while item is not None:
            if callable(item):
                self._send(batch)
                batch = []
                self._run(item)
            else:
                batch.append(item)
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return batch, False
        return batch, True

    def _run(self, action: Callable[[], object]) -> None:
        if self._error is not None:
            return
        try:
            action()
        except Exception as exc:  # keep the thread alive; close() reports it
            self._error = exc

    def _send(self, batch: list[MetricColumns]) -> None:
        if not batch:
            return
        try:
            if self._error is None:
                self._last_send = time.monotonic()
                self._writer.write(self._run_id, MetricColumns.concat(batch))
        except Exception as exc:  # keep the thread alive; close() reports it
            self._error = exc
        finally:
            with self._room:
                self._pending -= sum(len(columns) for columns in batch)
                self._room.notify_all()
