"""How buffered metrics reach MLflow.

Metrics travel as columns (`MetricColumns`), not as one `mlflow.entities.Metric` per value:
per-layer norms at every step are thousands of values a second, and a Python object per value
costs the training thread's interpreter lock as much as the training does.

MLflow's SQL store spends about as long per metric in `log_batch` (ORM objects, per-key
latest-metric bookkeeping) as a small model spends on a training step (BENCHMARKS.md): per-layer
norms at every step cannot keep up. When the worker can reach the tracking database itself (a
sqlite:// or postgresql:// tracking URI, or `LAYERWISE_MLFLOW_BACKEND_URI` next to a server),
`SqlBulkWriter` inserts rows into MLflow's own `metrics` table, many rows per statement, and
maintains `latest_metrics` the same way MLflow does. An MLflow server gets `RestWriter`: the
server's log-batch endpoint in requests of 1000 metrics, the JSON built straight from the
columns (MLflow's client builds a protobuf message per metric and converts it to JSON twice,
several times the cost of building the JSON directly). Any other store gets `ClientWriter`, and
so does every store when the installed MLflow is not one the first two were tested with
(services/mlflow_internals.py holds what they use of MLflow's internals, and says which).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any, Protocol

import numpy as np
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from services.mlflow_internals import (
    METRIC_COLUMNS,
    RestLogBatch,
    check_mlflow_version,
    metric_tables,
    sql_engine,
    stored_values,
)
from services.tracking_store import tracking_client

MAX_METRICS_PER_CALL = 1000  # MLflow's limits for one log_batch
MAX_PARAMS_PER_CALL = 100
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
# 6 x 150 = 900 parameters: under every database's limit (SQLite before 3.32 allows 999).
ROWS_PER_STATEMENT = 150


@dataclass
class MetricColumns:
    """Metric values as parallel columns: keys[i] had values[i] at steps[i], timestamps[i]."""

    keys: list[str]
    values: np.ndarray  # float64
    timestamps: np.ndarray  # int64, ms
    steps: np.ndarray  # int64

    @classmethod
    def from_dict(cls, metrics: dict[str, float], step: int, timestamp_ms: int
                  ) -> MetricColumns:
        n = len(metrics)
        return cls(list(metrics), np.fromiter(metrics.values(), np.float64, n),
                   np.full(n, timestamp_ms, np.int64), np.full(n, step, np.int64))

    @classmethod
    def from_rows(cls, keys: list[str], rows: Any, steps: Sequence[int],
                  timestamps_ms: Sequence[int]) -> MetricColumns:
        """rows is (len(steps), len(keys)): one row per step, as the norm buffers hold them."""
        values = np.asarray(rows, dtype=np.float64).reshape(len(steps), len(keys))
        return cls(list(keys) * len(steps), values.ravel(),
                   np.repeat(np.asarray(timestamps_ms, np.int64), len(keys)),
                   np.repeat(np.asarray(steps, np.int64), len(keys)))

    @classmethod
    def concat(cls, parts: Sequence[MetricColumns]) -> MetricColumns:
        if len(parts) == 1:
            return parts[0]
        return cls([key for part in parts for key in part.keys],
                   np.concatenate([p.values for p in parts]),
                   np.concatenate([p.timestamps for p in parts]),
                   np.concatenate([p.steps for p in parts]))

    def __len__(self) -> int:
        return len(self.keys)

    def chunks(self, size: int) -> Iterator[MetricColumns]:
        for start in range(0, len(self), size):
            end = start + size
            yield MetricColumns(self.keys[start:end], self.values[start:end],
                                self.timestamps[start:end], self.steps[start:end])

    def metrics(self) -> list[Metric]:
        return [Metric(k, v, t, s) for k, v, t, s in zip(
            self.keys, self.values.tolist(), self.timestamps.tolist(), self.steps.tolist(),
            strict=True)]


class MetricWriter(Protocol):
    def write(self, run_id: str, metrics: MetricColumns) -> None: ...

    def write_params(self, run_id: str, params: list[Param]) -> None: ...


class ClientWriter:
    """MLflow's own client: log_batch calls of up to 1000 metrics or 100 params."""

    def __init__(self, client: MlflowClient):
        self.client = client

    def write(self, run_id: str, metrics: MetricColumns) -> None:
        for chunk in metrics.chunks(MAX_METRICS_PER_CALL):
            self.client.log_batch(run_id, metrics=chunk.metrics(), synchronous=True)

    def write_params(self, run_id: str, params: list[Param]) -> None:
        for start in range(0, len(params), MAX_PARAMS_PER_CALL):
            self.client.log_batch(run_id, params=params[start:start + MAX_PARAMS_PER_CALL])


class RestWriter:
    """An MLflow server's log-batch endpoint, with the client's credentials, headers and
    retries, in JSON built straight from the columns."""

    def __init__(self, client: MlflowClient):
        self.client = client
        self.client_writer = ClientWriter(client)  # params: a run's are one request
        self.log_batch = RestLogBatch(client)

    def write(self, run_id: str, metrics: MetricColumns) -> None:
        for chunk in metrics.chunks(MAX_METRICS_PER_CALL):
            self.log_batch.post({"run_id": run_id, "metrics": [
                {"key": k, "value": _json_double(v), "timestamp": t, "step": s}
                for k, v, t, s in zip(chunk.keys, chunk.values.tolist(),
                                      chunk.timestamps.tolist(), chunk.steps.tolist(),
                                      strict=True)]})

    def write_params(self, run_id: str, params: list[Param]) -> None:
        self.client_writer.write_params(run_id, params)


def _json_double(value: float) -> float | str:
    """Protobuf's JSON form of a double: NaN and infinities are strings (JSON has none)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


class SqlBulkWriter:
    """Bulk inserts through the engine of MLflow's own SqlAlchemyStore for this URI."""

    def __init__(self, client: MlflowClient):
        self.client = client
        engine = sql_engine(client)
        if engine is None:
            raise ValueError("SqlBulkWriter needs a client of MLflow's SQL tracking store")
        self.engine = engine
        tables = metric_tables()
        self.metrics, self.latest, self.params = (tables.metrics, tables.latest_metrics,
                                                  tables.params)
        self.fallback = ClientWriter(client)
        self._marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(
            self.engine.dialect.paramstyle)
        self._statements: dict[int, str] = {}

    def _insert_sql(self, rows: int) -> str:
        """INSERT of `rows` rows in one statement, in the driver's own parameter style."""
        if rows not in self._statements:
            quote = self.engine.dialect.identifier_preparer.quote
            one = f"({', '.join([str(self._marker)] * len(METRIC_COLUMNS))})"
            columns = ", ".join(map(quote, METRIC_COLUMNS))
            self._statements[rows] = (f"INSERT INTO {quote(self.metrics.name)} ({columns}) "
                                      f"VALUES {', '.join([one] * rows)}")
        return self._statements[rows]

    def write(self, run_id: str, metrics: MetricColumns) -> None:
        from sqlalchemy.exc import IntegrityError

        values, is_nan = stored_values(metrics.values)
        timestamps, steps = metrics.timestamps.tolist(), metrics.steps.tolist()
        try:
            with self.engine.begin() as connection:
                self._insert(connection, list(zip(repeat(run_id), metrics.keys, values,
                                                  timestamps, steps, is_nan)))
                self._update_latest(connection, run_id, _newest_per_key(
                    metrics.keys, steps, timestamps, values, is_nan))
        except IntegrityError:
            # A metric identical in key, step, timestamp and value is already stored (a
            # resumed run re-sending its tail): MLflow's own path skips duplicates.
            self.fallback.write(run_id, metrics)

    def write_params(self, run_id: str, params: list[Param]) -> None:
        """A new run's params in one transaction. MLflow's log_batch loads the run twice and
        builds an ORM object per param: a large share of a short sweep trial's MLflow work
        (BENCHMARKS.md). Params already stored (a retried call) go through
        MLflow's path, which accepts the same values again and refuses changed ones."""
        from sqlalchemy import insert
        from sqlalchemy.exc import IntegrityError

        if not params:
            return
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(self.params), [
                    {"run_uuid": run_id, "key": p.key, "value": p.value} for p in params])
        except IntegrityError:
            self.fallback.write_params(run_id, params)

    def _insert(self, connection: Any, rows: list[tuple]) -> None:
        """Many rows per statement: the driver binds a statement's parameters holding the
        interpreter lock and runs it without, so an executemany (one run per row) handed the
        lock to and from the training thread thousands of times a second, which slowed
        training measurably per metric. A driver with named parameters goes through
        SQLAlchemy."""
        if self._marker is None:
            from sqlalchemy import insert

            connection.execute(insert(self.metrics), [
                dict(zip(METRIC_COLUMNS, row, strict=True)) for row in rows])
            return
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start:start + ROWS_PER_STATEMENT]
            connection.exec_driver_sql(self._insert_sql(len(chunk)),
                                       tuple(chain.from_iterable(chunk)))

    def _update_latest(self, connection: Any, run_id: str, newest: dict[str, tuple]) -> None:
        """latest_metrics keeps, per key, the most recent value by (step, timestamp, value)."""
        from sqlalchemy import and_, delete, insert, select

        latest = self.latest
        stored = {r.key: (r.step, r.timestamp, r.value) for r in connection.execute(
            select(latest.c.key, latest.c.step, latest.c.timestamp, latest.c.value).where(
                and_(latest.c.run_uuid == run_id, latest.c.key.in_(list(newest)))))}
        replace = {key: row for key, row in newest.items()
                   if key not in stored or row[:3] > stored[key]}
        if not replace:
            return
        connection.execute(delete(latest).where(and_(latest.c.run_uuid == run_id,
                                                     latest.c.key.in_(list(replace)))))
        connection.execute(insert(latest), [
            {"run_uuid": run_id, "key": key, "step": step, "timestamp": timestamp,
             "value": value, "is_nan": nan}
            for key, (step, timestamp, value, nan) in replace.items()])


def _newest_per_key(keys: list[str], steps: list[int], timestamps: list[int],
                    values: list[float], is_nan: list[bool]) -> dict[str, tuple]:
    """key -> (step, timestamp, value, is_nan) of its most recent metric, in MLflow's order:
    step, then timestamp, then value."""
    newest: dict[str, tuple] = {}
    for key, step, timestamp, value, nan in zip(keys, steps, timestamps, values, is_nan,
                                                strict=True):
        best = newest.get(key)
        if best is None or (step, timestamp, value) > best[:3]:
            newest[key] = (step, timestamp, value, nan)
    return newest


def writer_for(client: MlflowClient, tracking_uri: str, metrics_uri: str | None = None
               ) -> MetricWriter:
    """The fastest writer for the store: its database when the worker can reach it
    (`metrics_uri`, an MLflow server's backend store, or a database tracking URI), else the
    server's REST API, else MLflow's client; MLflow's client whatever the store when the
    installed MLflow is not one the fast writers were tested with."""
    if metrics_uri is not None:
        if _scheme(metrics_uri) not in SQL_SCHEMES:
            raise ValueError(f"LAYERWISE_MLFLOW_BACKEND_URI must be the MLflow server's "
                             f"database URI (one of {', '.join(SQL_SCHEMES)}), not "
                             f"{metrics_uri.split(':', 1)[0]}://...")
        client, tracking_uri = tracking_client(metrics_uri), metrics_uri
    if not check_mlflow_version():
        return ClientWriter(client)
    scheme = _scheme(tracking_uri)
    if scheme in SQL_SCHEMES:
        return SqlBulkWriter(client)
    if scheme in ("http", "https"):
        return RestWriter(client)
    return ClientWriter(client)


def _scheme(uri: str) -> str:
    return uri.split(":", 1)[0].split("+", 1)[0]
