"""How buffered metrics reach MLflow.

MLflow's SQL store spends 0.3-0.7 ms per metric in `log_batch` (ORM objects, per-key
latest-metric bookkeeping): per-layer norms at every step of a 0.5 ms training step cannot keep
up. When the worker can reach the tracking database itself (a sqlite:// or postgresql://
tracking URI), `SqlBulkWriter` inserts rows into MLflow's own tables, described by MLflow's
own SQLAlchemy models, with one executemany per batch (about 100x faster) and maintains
`latest_metrics` the same way MLflow does. Any other URI (an MLflow server) gets
`ClientWriter`: plain `log_batch` calls of up to 1000 metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

MAX_METRICS_PER_CALL = 1000
SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


class MetricWriter(Protocol):
    def write(self, run_id: str, metrics: Sequence[Metric]) -> None: ...


class ClientWriter:
    def __init__(self, client: MlflowClient):
        self.client = client

    def write(self, run_id: str, metrics: Sequence[Metric]) -> None:
        for start in range(0, len(metrics), MAX_METRICS_PER_CALL):
            chunk = list(metrics[start:start + MAX_METRICS_PER_CALL])
            self.client.log_batch(run_id, metrics=chunk, synchronous=True)


class SqlBulkWriter:
    """Bulk inserts through the engine of MLflow's own SqlAlchemyStore for this URI."""

    def __init__(self, client: MlflowClient):
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric

        self.store = client._tracking_client.store
        self.engine = self.store.engine
        self.metrics = SqlMetric.__table__
        self.latest = SqlLatestMetric.__table__
        self.fallback = ClientWriter(client)

    def write(self, run_id: str, metrics: Sequence[Metric]) -> None:
        from sqlalchemy import and_, delete, insert, select
        from sqlalchemy.exc import IntegrityError

        rows = []
        newest: dict[str, dict] = {}
        for metric in metrics:
            is_nan, value = self.store.sanitize_metric_value(float(metric.value))
            row = {"run_uuid": run_id, "key": metric.key, "value": value,
                   "timestamp": metric.timestamp, "step": metric.step, "is_nan": is_nan}
            rows.append(row)
            best = newest.get(metric.key)
            if best is None or _order(row) > _order(best):
                newest[metric.key] = row
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(self.metrics), rows)
                stored = {r.key: r._asdict() for r in connection.execute(
                    select(self.latest).where(and_(self.latest.c.run_uuid == run_id,
                                                   self.latest.c.key.in_(list(newest)))))}
                replace = [row for key, row in newest.items()
                           if key not in stored or _order(row) > _order(stored[key])]
                if replace:
                    connection.execute(delete(self.latest).where(and_(
                        self.latest.c.run_uuid == run_id,
                        self.latest.c.key.in_([r["key"] for r in replace]))))
                    connection.execute(insert(self.latest), replace)
        except IntegrityError:
            # A metric identical in key, step, timestamp and value is already stored (a
            # resumed run re-sending its tail): MLflow's own path skips duplicates.
            self.fallback.write(run_id, metrics)


def _order(row: dict) -> tuple:
    """MLflow's "more recent" order for latest metrics: step, then timestamp, then value."""
    return (row["step"], row["timestamp"], row["value"])


def writer_for(client: MlflowClient, tracking_uri: str) -> MetricWriter:
    if tracking_uri.split(":", 1)[0].split("+", 1)[0] in SQL_SCHEMES:
        return SqlBulkWriter(client)
    return ClientWriter(client)
