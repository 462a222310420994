"""Two API replicas and a dispatcher started at the same moment on fresh stores all come up:
none loses the race to create the job table or MLflow's schema."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from api.client import LayerwiseClient
from tests.utils.server import free_port
from tests.utils.service_process import LAYERWISE, stop_process_group
from tests.utils.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_replicas_and_a_dispatcher_started_together_on_fresh_stores_all_start(tmp_path: Path):
    home = tmp_path / "home"
    (tmp_path / "data").mkdir()
    env = {**os.environ, "LAYERWISE_HOME": str(home), "LAYERWISE_DATA_ROOTS": str(
        tmp_path / "data"), "LAYERWISE_RAY_NUM_CPUS": "1", "COLUMNS": "200"}
    for unset in ("LAYERWISE_DATABASE_URL", "LAYERWISE_MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        env.pop(unset, None)
    ports = [free_port(), free_port()]
    commands = [[*LAYERWISE, "serve", "--no-dispatcher", "--port", str(port)] for port in ports]
    commands.append([*LAYERWISE, "dispatcher"])
    logs = [tmp_path / f"process-{i}.log" for i in range(len(commands))]
    processes = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log.open("w"),
                                  stderr=subprocess.STDOUT, start_new_session=True)
                 for command, log in zip(commands, logs, strict=True)]
    try:
        def all_up() -> bool:
            for process, log in zip(processes, logs, strict=True):
                assert process.poll() is None, log.read_text()[-3000:]
            return (all(LayerwiseClient(f"http://127.0.0.1:{port}").ready() for port in ports)
                    and "dispatcher running" in logs[-1].read_text())

        wait_until(all_up, 120, "both replicas ready and the dispatcher running", every=0.3)
        time.sleep(1)  # a process that failed just after it said so would have exited now
        assert [p.poll() for p in processes] == [None] * 3
    finally:
        for process in processes:  # all told at once: each stops in seconds, Ray's the longest
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            stop_process_group(process)
    assert (home / "mlflow.db.migrate.lock").exists()
