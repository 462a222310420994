"""Each metric writer stores exactly what MLflow's own log_batch stores: the bulk SQL writer
on SQLite and PostgreSQL, the REST writer on a real `mlflow server`."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tests.utils.mlflow_server import start_mlflow_server, stop_mlflow_server
from tests.utils.postgres import fresh_database, needs_postgres
from tests.utils.server import free_port
from tests.utils.waiting import wait_until
from workers.tracking.metric_sink import MetricSink
from workers.tracking.metric_writers import (
    ClientWriter,
    MetricColumns,
    RestWriter,
    SqlBulkWriter,
    writer_for,
)


def _metrics(offset: int, n: int = 40) -> MetricColumns:
    values = [0.5, float("nan"), float("inf"), -2.0, 3.25, float("-inf")]
    return MetricColumns([f"k{i % 3}" for i in range(n)],
                         np.array([values[i % 6] + offset for i in range(n)]),
                         np.array([1000 + i for i in range(n)]),
                         np.array([offset * 100 + i for i in range(n)]))


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(the server's URL, its backend store's URI)"""
    root = tmp_path_factory.mktemp("mlflow-server")
    port, backend = free_port(), f"sqlite:///{root / 'server.db'}"
    server = start_mlflow_server(backend, port, root)
    try:
        yield f"http://127.0.0.1:{port}", backend
    finally:
        stop_mlflow_server(server)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=[needs_postgres,
                                                                   pytest.mark.postgres]),
                        pytest.param("server", marks=pytest.mark.slow)])
def tracking_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    if request.param == "postgres":
        # A database per test: MLflow's store, cached per URI, assumes its tables stay.
        return fresh_database(f"lw_{request.node.originalname[:55]}")
    return request.getfixturevalue("mlflow_server")[0]


def test_writer_stores_what_log_batch_stores(tracking_uri):
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.create_experiment(f"w{free_port()}")
    fast_run = client.create_run(experiment).info.run_id
    plain_run = client.create_run(experiment).info.run_id
    fast, plain = writer_for(client, tracking_uri), ClientWriter(client)
    expected = RestWriter if tracking_uri.startswith("http") else SqlBulkWriter
    assert isinstance(fast, expected)
    for offset in (1, 0):  # the second batch is older: latest_metrics must keep the first
        fast.write(fast_run, _metrics(offset))
        plain.write(plain_run, _metrics(offset))
    fast.write(fast_run, _metrics(0, 5))  # exact duplicates are skipped, as MLflow does
    plain.write(plain_run, _metrics(0, 5))

    def latest(run_id):
        return {k: ("nan" if math.isnan(v) else v)
                for k, v in client.get_run(run_id).data.metrics.items()}

    assert latest(fast_run) == latest(plain_run)
    assert set(latest(fast_run)) == {"k0", "k1", "k2"}
    for key in ("k0", "k1", "k2"):
        def history(run_id, key=key):
            return sorted((m.step, m.timestamp, "nan" if math.isnan(m.value) else m.value)
                          for m in client.get_metric_history(run_id, key))
        assert history(fast_run) == history(plain_run)
        assert len(history(fast_run)) == 2 * sum(1 for i in range(40) if i % 3 == int(key[1]))


def test_writer_stores_params_once_and_refuses_a_changed_value(tracking_uri):
    client = MlflowClient(tracking_uri=tracking_uri)
    run_id = client.create_run(client.create_experiment(f"p{free_port()}")).info.run_id
    writer = writer_for(client, tracking_uri)
    params = [Param(f"model.layer{i}", str(i)) for i in range(130)]  # over one log_batch
    writer.write_params(run_id, params)
    writer.write_params(run_id, params[:3])  # a retried call: the same values again
    assert client.get_run(run_id).data.params == {p.key: p.value for p in params}
    with pytest.raises(MlflowException, match="Changing param values is not allowed"):
        writer.write_params(run_id, [Param("model.layer0", "changed")])
    assert client.get_run(run_id).data.params["model.layer0"] == "0"


def test_columns_from_rows_repeat_steps_and_timestamps_per_key():
    columns = MetricColumns.from_rows(["a", "b"], [[1.0, 2.0], [3.0, 4.0]], [7, 8], [70, 80])
    assert columns.keys == ["a", "b", "a", "b"]
    assert columns.values.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert columns.steps.tolist() == [7, 7, 8, 8]
    assert columns.timestamps.tolist() == [70, 70, 80, 80]
    joined = MetricColumns.concat([columns, MetricColumns.from_dict({"c": 5.0}, 9, 90)])
    assert [m.key for m in joined.metrics()] == ["a", "b", "a", "b", "c"]
    assert [len(c) for c in joined.chunks(2)] == [2, 2, 1]


def test_sink_flushes_everything_on_close_and_reports_failures(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(tracking_uri=uri)
    run_id = client.create_run(client.create_experiment("s")).info.run_id
    sink = MetricSink(writer_for(client, uri), run_id, flush_every_s=0.01)
    for step in range(500):
        sink.log({"a": step, "b": -step}, step=step)
    sink.log_rows(["c", "d"], np.ones((3, 2)), [0, 1, 2], [5, 5, 5])
    sink.close()
    assert len(client.get_metric_history(run_id, "a")) == 500
    assert [m.step for m in client.get_metric_history(run_id, "d")] == [0, 1, 2]

    class Broken:
        def write(self, run_id, metrics):
            raise OSError("disk full")

    broken = MetricSink(Broken(), run_id, flush_every_s=0.01)
    broken.log({"a": 1.0}, step=0)
    with pytest.raises(RuntimeError, match="disk full"):
        broken.close()


def test_sink_makes_logging_wait_when_the_writer_falls_behind():
    """A store slower than the training bounds the backlog: logging waits, nothing is lost."""
    written: list[int] = []

    class Slow:
        def write(self, run_id, metrics):
            time.sleep(0.02)  # the slow store under test, not a wait for anything
            written.append(len(metrics))

    sink = MetricSink(Slow(), "run", flush_every_s=0.0, max_pending=100)
    for start in range(0, 1000, 50):
        sink.log_rows(["a"], np.ones((50, 1)), list(range(start, start + 50)), [0] * 50)
    sink.close()
    assert sum(written) == 1000
    assert max(written) <= 150  # never more than the bound and one batch behind
    assert sink.waited_s > 0


def test_sink_writes_what_arrives_within_its_interval_at_once(tmp_path):
    """The first item after a quiet spell is written at once; what follows within the
    interval waits and is written together."""
    writes: list[int] = []

    class Counting:
        def write(self, run_id, metrics):
            writes.append(len(metrics))

    sink = MetricSink(Counting(), "r", flush_every_s=5.0)
    sink.log({"a": 0.0}, step=0)
    # Written before the interval would have ended; close() then writes the rest at once.
    wait_until(lambda: writes == [1], 4.0, "the first metric to be written at once",
               every=0.01)
    for step in range(1, 50):
        sink.log({"a": float(step)}, step=step)
    sink.close()
    assert writes == [1, 49]


@pytest.mark.slow
def test_metrics_go_straight_to_the_servers_database_when_given(mlflow_server, tmp_path):
    """LAYERWISE_MLFLOW_BACKEND_URI: the run is the server's; its metrics are inserted into the
    server's database, and the server serves them."""
    from services.contract.spec import ExperimentSpec
    from tests.utils.specs import mlp_spec
    from workers.tracking.run_tracker import RunTracker

    url, backend = mlflow_server
    spec = ExperimentSpec.model_validate(mlp_spec())
    tracker = RunTracker.start(spec, job_id="direct", tracking_uri=url, home=str(tmp_path),
                               metrics_uri=backend)
    assert isinstance(tracker.sink._writer, SqlBulkWriter)
    tracker.sink.log_rows(["grad_norm/a", "grad_norm/b"], np.arange(6.0).reshape(3, 2),
                          [0, 1, 2], [10, 11, 12])
    tracker.finish("FINISHED")
    served = MlflowClient(url)
    assert [m.value for m in served.get_metric_history(tracker.run_id, "grad_norm/b")] == \
        [1.0, 3.0, 5.0]
    assert served.get_run(tracker.run_id).data.metrics["grad_norm/a"] == 4.0

    elsewhere = f"sqlite:///{tmp_path / 'not-the-server.db'}"
    with pytest.raises(ValueError, match="LAYERWISE_MLFLOW_BACKEND_URI .* does not hold run"):
        RunTracker.start(spec, job_id="lost", tracking_uri=url, home=str(tmp_path),
                         metrics_uri=elsewhere)
    with pytest.raises(ValueError, match="must be the MLflow server's database URI"):
        writer_for(served, url, metrics_uri=url)


def test_an_unsupported_mlflow_writes_through_mlflows_own_client(monkeypatch, tmp_path):
    """Outside the MLflow versions the fast paths were tested with, metrics, params and
    artifacts take MLflow's public client, and still arrive."""
    from services import mlflow_internals
    from services.contract.spec import ExperimentSpec
    from tests.utils.specs import mlp_spec
    from workers.tracking.run_tracker import RunTracker

    monkeypatch.setattr(mlflow_internals, "installed_mlflow_version", lambda: "99.0.0")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(tracking_uri=uri)
    assert type(writer_for(client, uri)) is ClientWriter
    tracker = RunTracker.start(ExperimentSpec.model_validate(mlp_spec()), job_id="public",
                               tracking_uri=uri, home=str(tmp_path))
    assert type(tracker.writer) is ClientWriter
    assert isinstance(tracker.artifacts, mlflow_internals.ClientArtifacts)
    tracker.log_text("hello", "notes/hello.txt")
    tracker.sink.log_rows(["grad_norm/a"], np.arange(3.0).reshape(3, 1), [0, 1, 2], [5, 6, 7])
    tracker.finish("FINISHED")
    assert [m.value for m in client.get_metric_history(tracker.run_id, "grad_norm/a")] == \
        [0.0, 1.0, 2.0]
    assert client.get_run(tracker.run_id).data.params["training.epochs"] == "2"
    assert [f.path for f in client.list_artifacts(tracker.run_id, "notes")] == \
        ["notes/hello.txt"]
