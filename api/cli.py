"""The `layerwise` command: serve, dispatcher, submit, status, list, cancel, sweep, sweeps,
sweep-status, sweep-cancel, catalog, ui, compare."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.client import LayerwiseClient, LayerwiseError, load_spec_file

app = typer.Typer(help="Layerwise: train and dissect deep neural networks.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()

UrlOpt = Annotated[str | None, typer.Option(help="API URL (env LAYERWISE_URL)")]
TokenOpt = Annotated[str | None, typer.Option(help="bearer token (env LAYERWISE_TOKEN)")]


def _client(url: str | None, token: str | None) -> LayerwiseClient:
    return LayerwiseClient(url, token=token)


def _fail(exc: Exception) -> None:
    console.print(f"[red]{exc}[/red]")
    raise typer.Exit(1)


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000,
          dispatcher: Annotated[bool, typer.Option(help="run the dispatcher in-process")] = True,
          access_log: Annotated[bool, typer.Option(help=(
              "log every request (a tenth of a submission's cost; /metrics has API latency "
              "by route and status either way)"))] = False,
          ) -> None:
    """Start the API (and the dispatcher) with the settings from LAYERWISE_* variables."""
    import uvicorn

    from api.app import create_app
    from api.auth import TokenConfigError
    try:
        service = create_app(dispatcher=dispatcher)
    except TokenConfigError as exc:
        console.print(f"[red]cannot start:[/red] {exc}")
        raise typer.Exit(2) from None
    uvicorn.run(service, host=host, port=port, log_level="info", access_log=access_log)


@app.command("dispatcher")
def run_dispatcher() -> None:
    """Run only the dispatcher (queue -> Ray), beside an API started with --no-dispatcher."""
    from services.dispatcher import Dispatcher
    from services.settings import Settings
    from services.store import JobStore
    from services.tracking_store import prepare_tracking_store

    settings = Settings()
    prepare_tracking_store(settings.tracking_uri)
    dispatcher = Dispatcher(JobStore(settings.job_store_url), settings)
    dispatcher.start()
    stopping = threading.Event()
    for stop_signal in (signal.SIGTERM, signal.SIGINT):  # set before anyone is told it runs
        signal.signal(stop_signal, lambda *_: stopping.set())
    console.print("dispatcher running; Ctrl-C or SIGTERM stops it")
    stopping.wait()
    dispatcher.stop()


@app.command()
def submit(file: Annotated[str, typer.Argument(help="spec file, YAML or JSON")],
           wait: Annotated[bool, typer.Option(help="follow until the job ends")] = False,
           url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Submit an experiment spec."""
    with _client(url, token) as client:
        try:
            record = client.submit(load_spec_file(file))
        except (LayerwiseError, ValueError, OSError) as exc:
            _fail(exc)
        console.print(f"submitted [bold]{record['id']}[/bold] ({record['param_count']} "
                      "parameters)")
        if wait:
            record = _follow(client, record["id"])
            _show_outcome(record)
            if record["status"] != "succeeded":
                raise typer.Exit(1)


def _follow(client: LayerwiseClient, job_id: str) -> dict[str, Any]:
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn(
        "epoch {task.completed}/{task.total}"), TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("queued", total=None, loss="")

        def update(record: dict[str, Any]) -> None:
            p = record["progress"]
            loss = p.get("metrics", {}).get("train/loss")
            progress.update(task, description=record["status"], completed=p.get("epoch", 0),
                            total=p.get("epochs") or None,
                            loss=f"loss {loss:.4f}" if loss is not None else "")

        return client.wait(job_id, on_update=update)


def _show_outcome(record: dict[str, Any]) -> None:
    color = "green" if record["status"] == "succeeded" else "red"
    console.print(f"[{color}]{record['status']}[/{color}]")
    if record.get("error"):
        console.print(record["error"])
    table = Table("metric", "value")
    for key, value in sorted((record.get("result") or {}).items()):
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    if record.get("diagnosis"):
        console.print(f"diagnosis: [bold]{record['diagnosis']['verdict']}[/bold]")
    if record.get("mlflow_run_id"):
        ui = os.environ.get("LAYERWISE_MLFLOW_UI_URL", "http://127.0.0.1:5000")
        console.print(f"MLflow run: {ui}/#/experiments/{record['mlflow_experiment_id']}"
                      f"/runs/{record['mlflow_run_id']}")


@app.command()
def status(job_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show one job."""
    with _client(url, token) as client:
        try:
            record = client.get(job_id)
        except LayerwiseError as exc:
            _fail(exc)
        p = record["progress"]
        console.print(f"{record['id']}  {record['status']}  epoch {p['epoch']}/{p['epochs']}  "
                      f"step {p['step']}  attempts {record['attempts']}")
        if record["status"] in ("succeeded", "failed", "cancelled"):
            _show_outcome(record)


@app.command("list")
def list_jobs(status: Annotated[str | None, typer.Option()] = None, limit: int = 20,
              url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List recent experiments."""
    with _client(url, token) as client:
        try:
            page = client.list(status=status, limit=limit)
        except LayerwiseError as exc:
            _fail(exc)
        table = Table("id", "name", "kind", "status", "epoch", "created")
        for r in page["data"]:
            table.add_row(r["id"], r["name"] or "", r["spec"]["model"]["kind"], r["status"],
                          f"{r['progress']['epoch']}/{r['progress']['epochs']}",
                          r["created_at"][:19])
        console.print(table)


@app.command()
def cancel(job_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a queued or running job."""
    with _client(url, token) as client:
        try:
            record = client.cancel(job_id)
        except LayerwiseError as exc:
            _fail(exc)
        console.print(f"{record['id']} {record['status']}")


@app.command()
def sweep(file: Annotated[str, typer.Argument(help="sweep spec file, YAML or JSON")],
          wait: Annotated[bool, typer.Option(help="follow with a live table of trials")] = False,
          url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Submit a sweep: a base experiment and a search space, run on Ray Tune."""
    with _client(url, token) as client:
        try:
            record = client.submit_sweep(load_spec_file(file))
        except (LayerwiseError, ValueError, OSError) as exc:
            _fail(exc)
        console.print(f"submitted sweep [bold]{record['id']}[/bold] "
                      f"({record['trials_total']} trials)")
        if wait:
            with Live(_sweep_view(record), console=console, refresh_per_second=4) as live:
                record = client.wait_sweep(record["id"],
                                           on_update=lambda r: live.update(_sweep_view(r)))
            _show_sweep_outcome(record)
            if record["status"] != "succeeded":
                raise typer.Exit(1)


@app.command("sweep-status")
def sweep_status(sweep_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show one sweep: its trials and the best so far."""
    with _client(url, token) as client:
        try:
            record = client.get_sweep(sweep_id)
        except LayerwiseError as exc:
            _fail(exc)
        console.print(_sweep_view(record))
        if record["status"] in ("succeeded", "failed", "cancelled"):
            _show_sweep_outcome(record)


@app.command("sweeps")
def list_sweeps(status: Annotated[str | None, typer.Option()] = None, limit: int = 20,
                url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List recent sweeps."""
    with _client(url, token) as client:
        try:
            page = client.list_sweeps(status=status, limit=limit)
        except LayerwiseError as exc:
            _fail(exc)
        table = Table("id", "name", "status", "trials", "best", "created")
        for r in page["data"]:
            best = r["best"]["metric"] if r["best"] else None
            table.add_row(r["id"], r["name"] or "", r["status"],
                          f"{r['trials_done']}/{r['trials_total']}",
                          f"{r['metric']} {best:.4g}" if best is not None else "",
                          r["created_at"][:19])
        console.print(table)


@app.command("sweep-cancel")
def sweep_cancel(sweep_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a queued or running sweep; every running trial stops."""
    with _client(url, token) as client:
        try:
            record = client.cancel_sweep(sweep_id)
        except LayerwiseError as exc:
            _fail(exc)
        console.print(f"{record['id']} {record['status']}")


def _sweep_view(record: dict[str, Any]) -> Group:
    """The sweep's status line and its live trial table."""
    best = record.get("best")
    head = (f"sweep {record['id']}  [bold]{record['status']}[/bold]  trials "
            f"{record['trials_done']}/{record['trials_total']}")
    if best:
        head += f"  best {record['metric']} {best['metric']:.4g} ({best['trial_id']})"
    table = Table("trial", "status", "values", "epoch", record["metric"], "MLflow run")
    for trial in record.get("trials", []):
        values = ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in trial["params"].items())
        if trial.get("repeat"):
            values += f", seed+{trial['repeat']}"
        metric = trial.get("metric")
        table.add_row(trial["trial_id"], trial["status"], values, str(trial.get("epoch", "")),
                      f"{metric:.4g}" if metric is not None else "",
                      (trial.get("mlflow_run_id") or "")[:12])
    return Group(head, table)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _show_sweep_outcome(record: dict[str, Any]) -> None:
    color = "green" if record["status"] == "succeeded" else "red"
    console.print(f"[{color}]{record['status']}[/{color}]")
    if record.get("error"):
        console.print(record["error"])
    best = record.get("best")
    if best:
        console.print(f"best trial {best['trial_id']}: {record['metric']} = "
                      f"{best['metric']:.4g} with {best['params']}")
    for config in (record.get("configurations") or [])[:5]:
        if config.get("ci95"):
            low, high = config["ci95"]
            console.print(f"  {config['params']}: mean {config['mean']:.4g}, 95% interval "
                          f"[{low:.4g}, {high:.4g}] over {config['n']} seeds")
    if record.get("mlflow_run_id"):
        ui = os.environ.get("LAYERWISE_MLFLOW_UI_URL", "http://127.0.0.1:5000")
        console.print(f"MLflow parent run: {ui}/#/experiments/{record['mlflow_experiment_id']}"
                      f"/runs/{record['mlflow_run_id']}")


@app.command()
def catalog(url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List model kinds and datasets."""
    with _client(url, token) as client:
        try:
            entries = client.catalog()
        except LayerwiseError as exc:
            _fail(exc)
        table = Table("model kind", "description")
        for model in entries["models"]:
            table.add_row(model["kind"], model["description"])
        console.print(table)
        table = Table("dataset", "description")
        for dataset in entries["datasets"]:
            table.add_row(dataset["name"], dataset["description"])
        console.print(table)


@app.command()
def ui(port: int = 5000, host: str = "127.0.0.1") -> None:
    """Open the MLflow UI on the service's tracking store."""
    from services.settings import Settings

    settings = Settings()
    console.print(f"MLflow UI on http://{host}:{port} (tracking store {settings.tracking_uri})")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
               settings.tracking_uri, "--host", host, "--port", str(port), "--workers", "1"]
    raise typer.Exit(subprocess.call(command))


@app.command()
def compare(job_ids: Annotated[list[str], typer.Argument(help="two or more job ids")],
            metric: Annotated[str, typer.Option(help="grad_norm, update_norm or weight_norm")
                              ] = "grad_norm",
            out: Annotated[str, typer.Option(help="where to save the figure (PNG)")
                           ] = "compare.png",
            url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Several runs' per-layer curves side by side: a table here, a figure in --out."""
    with _client(url, token) as client:
        try:
            table = client.compare(job_ids, metric=metric)
            png = client.compare_png(job_ids, metric=metric)
        except LayerwiseError as exc:
            _fail(exc)
    layers = list(dict.fromkeys(s["layer"] for run in table["runs"] for s in run["layers"]))
    view = Table("run", "kind", "verdict", "first/last", *layers)
    for run in table["runs"]:
        medians = {s["layer"]: s["median"] for s in run["layers"]}
        ratio = run["first_last_ratio"]
        view.add_row(run["name"] or run["id"][:8], run["model_kind"], run["verdict"] or "",
                     f"{ratio:.2e}" if ratio is not None else "",
                     *[f"{medians[layer]:.2e}" if medians.get(layer) is not None else ""
                       for layer in layers])
    console.print(f"median {metric} per layer")
    console.print(view)
    with open(out, "wb") as handle:
        handle.write(png)
    console.print(f"figure: {out}")


if __name__ == "__main__":
    app()
