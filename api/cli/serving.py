"""The commands that run the service's own processes: `serve` (the API, and the dispatcher in
it), `dispatcher` alone, and `ui` (MLflow's UI on the tracking store).

Each imports what it runs inside its body: the client commands (`layerwise status`) load this
module too, and must not pay for FastAPI, Ray and torch on every call."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from typing import Annotated

import typer

from api.cli.output import console


def serve(host: str = "127.0.0.1", port: int = 8000,
          dispatcher: Annotated[bool, typer.Option(help="run the dispatcher in-process")] = True,
          access_log: Annotated[bool, typer.Option(help=(
              "log every request (a tenth of a submission's cost; /metrics has API latency "
              "by route and status either way)"))] = False,
          ) -> None:
    """Start the API (and the dispatcher) with the settings from LAYERWISE_* variables."""
    # Lazy: the app imports the dispatcher, Ray and torch, which `layerwise status` must not.
    import uvicorn

    from api.app import create_app
    from api.auth import TokenConfigError
    try:
        service = create_app(dispatcher=dispatcher)
    except TokenConfigError as exc:
        console.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(2) from None
    uvicorn.run(service, host=host, port=port, log_level="info", access_log=access_log)


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
    console.print(f"MLflow UI on http://{host}:{port} (tracking store {settings.tracking_uri})")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
               settings.tracking_uri, "--host", host, "--port", str(port), "--workers", "1"]
    raise typer.Exit(subprocess.call(command))
