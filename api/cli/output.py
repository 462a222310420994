"""What the `layerwise` command prints: its consoles, failures, the one line it says when the
service cannot be reached, and the views of jobs and sweeps."""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console, Group
from rich.table import Column, Table

from api.client import ServiceUnreachable

console = Console()
err_console = Console(stderr=True)


class LayerwiseApp(typer.Typer):
    """The app, with no traceback when the service cannot be reached: one line and its fix."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ServiceUnreachable as exc:
            if exc.timed_out:
                hint = ("it may be overloaded or stuck; check its logs and /readyz, or pass "
                        "--url / set LAYERWISE_URL if it runs elsewhere")
            else:
                hint = ("start it with `make run` (or `layerwise serve`), or pass --url / set "
                        "LAYERWISE_URL")
            err_console.print(f"{exc}; {hint}", style="red", markup=False, highlight=False,
                              soft_wrap=True)
            sys.exit(2)


def fail(exc: Exception | str) -> NoReturn:
    console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def epochs(record: dict[str, Any]) -> int | None:
    """The job's epochs: its progress's, or until the first epoch reports, its spec's."""
    total = record["progress"].get("epochs")
    if not total:
        training = (record.get("spec") or {}).get("training") or {}
        total = training.get("epochs") if isinstance(training, dict) else None
    return total if isinstance(total, int) and total > 0 else None


def id_column() -> Column:
    """Whole ids, never cut (folded only in a very narrow terminal), so that one can be pasted
    into status or cancel."""
    return Column("id", no_wrap=True, overflow="fold", min_width=32)


def created(record: dict[str, Any]) -> str:
    """MM-DD HH:MM (UTC): the year and seconds would cost the ids their room."""
    return str(record["created_at"])[5:16].replace("T", " ")


def show_outcome(record: dict[str, Any]) -> None:
    _show_status(record)
    table = Table("metric", "value")
    for key, value in sorted((record.get("result") or {}).items()):
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    if record.get("diagnosis"):
        console.print(f"diagnosis: [bold]{record['diagnosis']['verdict']}[/bold]")
    _show_mlflow_run("MLflow run", record)


def sweep_view(record: dict[str, Any]) -> Group:
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


def show_sweep_outcome(record: dict[str, Any]) -> None:
    _show_status(record)
    best = record.get("best")
    if best:
        console.print(f"best trial {best['trial_id']}: {record['metric']} = "
                      f"{best['metric']:.4g} with {best['params']}")
    for config in (record.get("configurations") or [])[:5]:
        if config.get("ci95"):
            low, high = config["ci95"]
            console.print(f"  {config['params']}: mean {config['mean']:.4g}, 95% interval "
                          f"[{low:.4g}, {high:.4g}] over {config['n']} seeds")
    _show_mlflow_run("MLflow parent run", record)


def _show_status(record: dict[str, Any]) -> None:
    """The final status, green for success, and the error if there is one."""
    color = "green" if record["status"] == "succeeded" else "red"
    console.print(f"[{color}]{record['status']}[/{color}]")
    if record.get("error"):
        console.print(record["error"])


def _show_mlflow_run(label: str, record: dict[str, Any]) -> None:
    """The link to the record's MLflow run in the UI, when it has one."""
    if record.get("mlflow_run_id"):
        ui = os.environ.get("LAYERWISE_MLFLOW_UI_URL", "http://127.0.0.1:5000")
        console.print(f"{label}: {ui}/#/experiments/{record['mlflow_experiment_id']}"
                      f"/runs/{record['mlflow_run_id']}")
