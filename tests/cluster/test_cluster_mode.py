"""Cluster mode without containers: the compose topology as local processes.

A Ray head and a second Ray node with its own custom resource, an MLflow server with the
PostgreSQL backend and artifact serving, and the API joining through RAY_ADDRESS. An
experiment and a sweep that need the custom resource run on the second node, and their
metrics and models reach the MLflow server over HTTP. Everything started here is stopped here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from api.client import LayerwiseClient
from tests.utils.mlflow_server import SERVER_ENV
from tests.utils.postgres import POSTGRES_URL, fresh_database
from tests.utils.server import free_port
from tests.utils.service_process import stop_process_group
from tests.utils.specs import mlp_spec
from tests.utils.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.postgres,
              pytest.mark.skipif(POSTGRES_URL is None, reason="LAYERWISE_TEST_POSTGRES_URL is "
                                 "not set (.ci/run sets it): the MLflow server needs PostgreSQL")]
BIN = Path(sys.executable).parent


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    # `ray start --head --block` takes SIGTERM's full 30 s to exit with a node still attached
    # (the worker node is stopped first); SIGKILL to its group after a short grace ends it.
    is_ray = "ray" in Path(str(process.args[0])).name
    stop_process_group(process, grace=5 if is_ray else 30)


def _wait(check, what: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    def up() -> bool:
        assert process.poll() is None or "ray start" in what, \
            f"{what} exited: {log.read_text()[-3000:]}"
        return check()

    wait_until(up, timeout, lambda: f"{what} to come up: {log.read_text()[-3000:]}",
               every=0.5, ignoring=(Exception,))  # an exception: not up yet


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict]:
    workdir = Path(tempfile.mkdtemp(prefix="lwc"))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "COLUMNS": "200"}
    env.pop("RAY_ADDRESS", None)
    ray_port, mlflow_port, api_port = free_port(), free_port(), free_port()
    processes: list[subprocess.Popen] = []
    try:
        head_log = workdir / "head.log"
        processes.append(_start([str(BIN / "ray"), "start", "--head", f"--port={ray_port}",
                                 "--num-cpus=1", "--include-dashboard=false", "--block",
                                 f"--temp-dir={workdir / 'ray'}"], env, head_log))
        address = f"127.0.0.1:{ray_port}"
        worker_log = workdir / "worker.log"
        _wait(lambda: _listening(ray_port), "ray start --head", processes[-1], head_log)
        processes.append(_start([str(BIN / "ray"), "start", f"--address={address}",
                                 "--num-cpus=1", '--resources={"worker_node": 1}', "--block"],
                                env, worker_log))
        backend = fresh_database("layerwise_cluster_mlflow")
        mlflow_log = workdir / "mlflow.log"
        processes.append(_start([sys.executable, "-m", "mlflow", "server", "--host",
                                 "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
                                 "--backend-store-uri", backend, "--serve-artifacts",
                                 "--artifacts-destination", str(workdir / "mlartifacts")],
                                {**env, **SERVER_ENV}, mlflow_log))
        tracking = f"http://127.0.0.1:{mlflow_port}"
        _wait(lambda: MlflowClient(tracking).search_experiments(max_results=1) is not None,
              "mlflow server", processes[-1], mlflow_log)
        api_env = {**env, "RAY_ADDRESS": address, "LAYERWISE_HOME": str(workdir / "home"),
                   "LAYERWISE_DATABASE_URL": fresh_database("layerwise_cluster_jobs"),
                   "LAYERWISE_MLFLOW_TRACKING_URI": tracking}
        api_log = workdir / "api.log"
        processes.append(_start([sys.executable, "-m", "api.cli", "serve", "--port",
                                 str(api_port)], api_env, api_log))
        client = LayerwiseClient(f"http://127.0.0.1:{api_port}")
        _wait(client.ready, "api", processes[-1], api_log, timeout=180)
        yield {"client": client, "tracking": tracking, "address": address, "workdir": workdir}
    finally:
        for process in reversed(processes):
            _stop(process)


def _worker_nodes(address: str) -> set[str]:
    """Ids of the nodes that have the custom resource, asked of the cluster from outside."""
    nodes = subprocess.run([sys.executable, "-c", (
        f"import json, ray; ray.init(address='{address}', log_to_driver=False); "
        "print(json.dumps([[n['NodeID'], n['Resources'].get('worker_node', 0)] "
        "for n in ray.nodes() if n['Alive']]))")],
        capture_output=True, text=True, timeout=120, env={**os.environ,
                                                          "RAY_AUTH_MODE": "token"})
    assert nodes.returncode == 0, nodes.stderr[-2000:]
    return {node for node, mark in json.loads(nodes.stdout) if mark}


def test_an_experiment_runs_on_the_worker_node_and_logs_to_the_mlflow_server(cluster):

    client = cluster["client"]
    job = client.submit(mlp_spec(resources={"custom": {"worker_node": 1}},
                                 training={"epochs": 2}))
    done = client.wait(job.id, timeout=300)
    assert done.status == "succeeded", done.error
    assert done.result["node_id"] in _worker_nodes(cluster["address"])
    mlflow = MlflowClient(cluster["tracking"])
    run = mlflow.get_run(done.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert len(mlflow.get_metric_history(run.info.run_id, "grad_norm/layers.0")) == \
        done.progress.step
    models = mlflow.search_logged_models(experiment_ids=[done.mlflow_experiment_id])
    assert any(m.source_run_id == run.info.run_id for m in models)
    artifacts = {a.path for a in mlflow.list_artifacts(run.info.run_id)}
    assert {"spec.yaml", "layers.json"} <= artifacts


def test_a_sweep_runs_its_trials_on_the_worker_node_and_logs_to_the_mlflow_server(cluster):
    client = cluster["client"]
    base = mlp_spec(resources={"custom": {"worker_node": 1}}, training={"epochs": 1},
                    diagnostics={"plots": False})
    sweep = client.submit_sweep({"base": base, "space": {
        "optimizer.lr": {"type": "grid", "values": [0.01, 0.003]}},
        "search": {"algorithm": "grid", "metric": "val/accuracy", "mode": "max",
                   "log_models": "all"}})  # every trial's model reaches the server
    done = client.wait_sweep(sweep.id, timeout=300, poll_s=0.5)
    assert done.status == "succeeded", done.error
    trials = done.trials
    assert len(trials) == 2 and all(t.status == "succeeded" for t in trials)
    assert {t.node_id for t in trials} <= _worker_nodes(cluster["address"])
    mlflow = MlflowClient(cluster["tracking"])
    for trial in trials:
        run = mlflow.get_run(trial.mlflow_run_id)
        assert run.info.status == "FINISHED" and "val/accuracy" in run.data.metrics
        assert "model" in {a.path for a in mlflow.list_artifacts(run.info.run_id)}
