"""`layerwise serve --workers N` with N > 1: N API processes on one port (uvicorn's workers,
each an app without a dispatcher: `api.app.create_replica_app`) beside ONE dispatcher in a
process of its own (`layerwise dispatcher`). They share the job store (SQLite in WAL mode, or
PostgreSQL) and nothing else: a submission is checked and stored by whichever process took
the request, once per Idempotency-Key (the store's unique key), and the dispatcher finds it
at its next poll of the queue.

One process's interpreter lock bounds what it checks per second (a dry run is Python: pydantic,
the model's modules, one step); N processes pass up to N times as many on N cores
(BENCHMARKS.md, row 4).

The dispatcher is a child of this process: it ends with it (SIGTERM, as `layerwise dispatcher`
stops), and if it ends first the API processes are stopped too, so that a supervisor (systemd,
Docker) restarts the whole service instead of leaving an API whose queue no longer moves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import typer

from api.cli.output import console

DISPATCHER_STOP_S = 60  # it finishes its tick, stops its jobs' Ray work and ends its Ray


def run_api_processes(host: str, port: int, workers: int, *, dispatcher: bool,
                      access_log: bool) -> None:
    """Serve until SIGINT or SIGTERM; raises typer.Exit(1) when the dispatcher died first."""
    # Lazy: uvicorn is the server's, which the client commands do without.
    import uvicorn

    child = _start_dispatcher() if dispatcher else None
    stopping = threading.Event()
    died: list[int] = []
    if child is not None:
        threading.Thread(target=_watch, args=(child, stopping, died), name="dispatcher-watch",
                         daemon=True).start()
    try:
        uvicorn.run("api.app:create_replica_app", factory=True, host=host, port=port,
                    workers=workers, log_level="info", access_log=access_log)
    finally:
        stopping.set()
        if child is not None:
            _stop(child)
    if died:
        console.print(f"[red]the dispatcher ended with exit code {died[0]}[/red]; the API "
                      "processes were stopped with it")
        raise typer.Exit(1)


def _start_dispatcher() -> subprocess.Popen[bytes]:
    """`layerwise dispatcher` with this process's environment (the same LAYERWISE_* settings);
    its output goes where this process's does."""
    return subprocess.Popen([sys.executable, "-m", "api.cli", "dispatcher"])


def _watch(child: subprocess.Popen[bytes], stopping: threading.Event, died: list[int]) -> None:
    """When the dispatcher ends before the API processes do, stop them: uvicorn's supervisor
    takes SIGTERM as its own shutdown. Exit code 0 is a dispatcher that was told to stop (a
    Ctrl-C reaches the whole process group)."""
    code = child.wait()
    if stopping.is_set():
        return
    if code != 0:
        died.append(code)
    os.kill(os.getpid(), signal.SIGTERM)


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=DISPATCHER_STOP_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
