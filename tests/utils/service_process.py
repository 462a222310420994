"""`layerwise serve` as a process of its own, for tests that measure the API's own memory or
need it to outlive a request that would crash it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from tests.utils.server import free_port
from tests.utils.waiting import wait_until

LAYERWISE = [str(Path(sys.executable).parent / "layerwise")]


@contextmanager
def service_process(home: Path, *, dispatcher: bool = False,
                    env: dict[str, str] | None = None) -> Iterator[tuple[str, psutil.Process]]:
    """The service on a free port with its home in `home`; yields (url, its process)."""
    port = free_port()
    environment = {**os.environ, "LAYERWISE_HOME": str(home / "home"),
                   "LAYERWISE_DATA_ROOTS": str(home / "data"), **(env or {})}
    for unset in ("LAYERWISE_DATABASE_URL", "LAYERWISE_MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        if unset not in (env or {}):
            environment.pop(unset, None)
    args = [*LAYERWISE, "serve", "--port", str(port)]
    if not dispatcher:
        args.append("--no-dispatcher")
    process = subprocess.Popen(args, cwd=home, env=environment, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200

        wait_until(healthy, 120, "the service to answer /healthz", every=0.2,
                   ignoring=(httpx.TransportError,))
        yield url, psutil.Process(process.pid)
    finally:
        stop_process_group(process)


def stop_process_group(process: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM to the process's group (it was started in a session of its own), SIGKILL
    after `grace` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
