"""The commands that run the service's own processes: `serve` (the API, and the dispatcher in
it; or several API processes beside one dispatcher: `api_processes.py`), `dispatcher` alone,
and `ui` (MLflow's UI on the tracking store).

Each imports what it runs inside its body: the client commands (`layerwise status`) load this
module too, and must not pay for FastAPI, Ray and torch on every call."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Annotated

import typer

from api.cli import ui_link
from api.cli.output import console

if TYPE_CHECKING:
    from fastapi import FastAPI


def serve(host: str = "127.0.0.1", port: int = 8000,
          dispatcher: Annotated[bool, typer.Option(help="run the dispatcher in-process")] = True,
          access_log: Annotated[bool, typer.Option(help=(
              "log every request (a tenth of a submission's cost; /metrics has API latency "
              "by route and status either way)"))] = False,
          workers: Annotated[int, typer.Option(min=1, help=(
              "API processes on the port; with more than one, the dispatcher runs in a "
              "process of its own beside them (docs/operations.md)"))] = 1,
          ) -> None:
    """Start the API (and the dispatcher) with the settings from LAYERWISE_* variables."""
    from api.auth import TokenConfigError
    try:
        service = _checked_app(dispatcher=dispatcher, workers=workers)
    except TokenConfigError as exc:
        console.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(2) from None
    if service is None:
        from api.cli.api_processes import run_api_processes

        run_api_processes(host, port, workers, dispatcher=dispatcher, access_log=access_log)
        return
    import uvicorn

    uvicorn.run(service, host=host, port=port, log_level="info", access_log=access_log)


def _checked_app(*, dispatcher: bool, workers: int) -> FastAPI | None:
    """The one process's app; None for several processes, each of which builds its own (its
    tokens checked here first, so that a bad table stops the start with its reason).
    Raises TokenConfigError."""
    # Lazy: the app imports the dispatcher, Ray and torch, which `layerwise status` must not.
    if workers > 1:
        from api.auth import TokenTable
        from services.settings import Settings

        settings = Settings()
        TokenTable(settings.api_tokens, settings.admin_tokens)
        return None
    from api.app import create_app

    return create_app(dispatcher=dispatcher)


def run_dispatcher() -> None:
    """Run only the dispatcher (queue -> Ray), beside an API started with --no-dispatcher."""
    # Lazy: the dispatcher imports Ray, MLflow and torch, which `layerwise status` must not.
    from api.service import build_service
    from services.settings import Settings

    service = build_service(Settings())
    service.start()
    stopping = threading.Event()
    for stop_signal in (signal.SIGTERM, signal.SIGINT):  # set before anyone is told it runs
        signal.signal(stop_signal, lambda *_: stopping.set())
    console.print("dispatcher running; Ctrl-C or SIGTERM stops it")
    stopping.wait()
    service.stop()


def ui(port: int = 5000, host: str = "127.0.0.1") -> None:
    """Open the MLflow UI on the service's tracking store."""
    # Lazy: the settings need pydantic-settings, which the client commands do without.
    from services.settings import Settings

    settings = Settings()
    url = f"http://{ui_link.link_host(host)}:{port}"
    console.print(f"MLflow UI on {url} (tracking store {settings.tracking_uri}); while it runs, "
                  "the run links other commands print point here")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
               settings.tracking_uri, "--host", host, "--port", str(port), "--workers", "1"]
    recorded = ui_link.record(url, settings.home_dir)
    try:
        code = subprocess.call(command)
    finally:
        ui_link.forget(recorded)
    raise typer.Exit(code)
