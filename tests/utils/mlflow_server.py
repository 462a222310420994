"""A real `mlflow server` in a subprocess, for tests and benches."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from tests.utils.waiting import wait_until

# MLflow 3's server also starts a job runner with seven huey consumer processes (for its GenAI
# jobs): on a 2-core machine they take most of a core for the first ten seconds and are never
# used here.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def start_mlflow_server(backend_uri: str, port: int, root: Path) -> subprocess.Popen:
    """Started and answering, or RuntimeError."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", backend_uri,
         "--default-artifact-root", (root / "artifacts").as_uri()],
        env={**os.environ, **SERVER_ENV}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")

    def answers() -> bool:
        assert process.poll() is None, "mlflow server exited"
        client.search_experiments(max_results=1)
        return True

    try:
        wait_until(answers, 90, "mlflow server to answer", every=0.5, ignoring=(Exception,))
    except AssertionError:
        stop_mlflow_server(process)
        raise RuntimeError("mlflow server did not start") from None
    return process


def stop_mlflow_server(server: subprocess.Popen) -> None:
    """The server and its uvicorn worker, as a process group (a busy machine can take a
    while to shut it down politely)."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    except ProcessLookupError:
        return
