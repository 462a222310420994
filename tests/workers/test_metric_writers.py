"""The bulk SQL metric writer stores exactly what MLflow's own log_batch stores."""

from __future__ import annotations

import math

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from workers.metric_sink import MetricSink
from workers.metric_writers import ClientWriter, SqlBulkWriter, writer_for


def _metrics(offset: int) -> list[Metric]:
    values = [0.5, float("nan"), float("inf"), -2.0, 3.25]
    return [Metric(f"k{i % 3}", values[i % 5] + offset, 1000 + i, offset * 100 + i)
            for i in range(40)]


def test_bulk_writer_matches_log_batch(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("w")
    bulk_run = client.create_run(experiment).info.run_id
    plain_run = client.create_run(experiment).info.run_id
    bulk, plain = writer_for(client, uri), ClientWriter(client)
    assert isinstance(bulk, SqlBulkWriter)
    for offset in (1, 0):  # the second batch is older: latest_metrics must keep the first
        bulk.write(bulk_run, _metrics(offset))
        plain.write(plain_run, _metrics(offset))
    bulk.write(bulk_run, _metrics(0)[:5])  # exact duplicates are skipped, as MLflow does
    plain.write(plain_run, _metrics(0)[:5])

    def latest(run_id):
        return {k: ("nan" if math.isnan(v) else v)
                for k, v in client.get_run(run_id).data.metrics.items()}

    assert latest(bulk_run) == latest(plain_run)
    for key in ("k0", "k1", "k2"):
        def history(run_id, key=key):
            return sorted((m.step, m.timestamp, "nan" if math.isnan(m.value) else m.value)
                          for m in client.get_metric_history(run_id, key))
        assert history(bulk_run) == history(plain_run)


def test_sink_flushes_everything_on_close_and_reports_failures(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("s")).info.run_id
    sink = MetricSink(writer_for(client, uri), run_id, flush_every_s=0.01)
    for step in range(500):
        sink.log({"a": step, "b": -step}, step=step)
    sink.close()
    assert len(client.get_metric_history(run_id, "a")) == 500

    class Broken:
        def write(self, run_id, metrics):
            raise OSError("disk full")

    broken = MetricSink(Broken(), run_id, flush_every_s=0.01)
    broken.log({"a": 1.0}, step=0)
    with pytest.raises(RuntimeError, match="disk full"):
        broken.close()
