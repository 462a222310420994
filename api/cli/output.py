"""What the `layerwise` command prints: its consoles, failures, the one line it says when the
service cannot be reached, and the views of jobs and sweeps."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer
from rich.console import Console, Group
from rich.table import Column, Table

from api.cli.ui_link import ui_url
from api.client import ServiceUnreachable
from api.schemas import AttemptEntry
from services.contract.trial_status import status_label
from services.records import JobRecord, Progress
from services.run_comparison import Comparison
from services.sweep_table import SweepRecord, TrialRow

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


def live_verdict(progress: Progress) -> str:
    """The live diagnosis of a running job in a few words: its verdict and, when it is a
    problem, the fix it suggests ("" before the first epoch's diagnosis)."""
    diagnosis = progress.diagnosis or {}
    verdict = diagnosis.get("verdict")
    if not verdict:
        return ""
    findings = diagnosis.get("findings") or []
    fix = findings[0].get("fix") if findings and isinstance(findings[0], dict) else None
    changes = ", ".join(f"{path}: {value}" for path, value in (fix or {}).items())
    return f"diagnosis {verdict}" + (f" (try {changes})" if changes else "")


def epochs(record: JobRecord) -> int | None:
    """The job's epochs: its progress's, or until the first epoch reports, its spec's."""
    total: Any = record.progress.epochs
    if not total:
        training = record.spec.get("training") or {}
        total = training.get("epochs") if isinstance(training, dict) else None
    return total if isinstance(total, int) and total > 0 else None


# The metric a run is judged by at a glance, as a repair is judged: validation accuracy when
# the run measures one (a classifier), validation loss otherwise; short, under a `val` title.
HEADLINE_METRICS = {"val/accuracy": "acc", "val/loss": "loss"}


def headline(record: JobRecord) -> str:
    """`acc 0.9123` (val/accuracy) from the job's result, or while it runs its last epoch's."""
    metrics = record.result or record.progress.metrics or {}
    for key, short in HEADLINE_METRICS.items():
        value = metrics.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return f"{short} {value:.4g}"
    return ""


def job_verdict(record: JobRecord) -> str:
    """The final diagnosis's verdict; while the job runs, the live one (`vanishing so far`)."""
    final = (record.diagnosis or {}).get("verdict")
    if final:
        return str(final)
    live = (record.progress.diagnosis or {}).get("verdict")
    return f"{live} so far" if live and record.status == "running" else ""


def id_column() -> Column:
    """Whole ids, never cut (folded only in a very narrow terminal), so that one can be pasted
    into status or cancel."""
    return Column("id", no_wrap=True, overflow="fold", min_width=32)


def created(record: JobRecord | SweepRecord) -> str:
    """MM-DD HH:MM (UTC): the year and seconds would cost the ids their room."""
    return record.created_at.isoformat()[5:16].replace("T", " ")


def show_outcome(record: JobRecord) -> None:
    _show_status(record)
    table = Table("metric", "value")
    for key, value in sorted((record.result or {}).items()):
        # metrics only: the result also holds what is not one (node_id, the expectations)
        if isinstance(value, int | float) and not isinstance(value, bool):
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    show_expectations((record.result or {}).get("expectations"))
    if record.diagnosis:
        console.print(f"diagnosis: [bold]{record.diagnosis['verdict']}[/bold]")
    _show_mlflow_run("MLflow run", record)


def sweep_view(record: SweepRecord) -> Group:
    """The sweep's status line and its live trial table."""
    best = record.best
    head = f"sweep {record.id}  [bold]{record.status}[/bold]  {trials_counts(record)}"
    if best:
        head += f"  best {record.metric} {best.metric:.4g} ({best.trial_id})"
    table = Table("trial", "status", "values", "epoch", record.metric, "verdict",
                  "MLflow run")
    for trial in record.trials:
        values = ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in trial.params.items())
        if trial.repeat:
            values += f", seed+{trial.repeat}"
        metric = trial.metric
        table.add_row(trial.trial_id, _trial_status(trial), values,
                      str(trial.epoch), f"{metric:.4g}" if metric is not None else "",
                      trial.verdict or "", (trial.mlflow_run_id or "")[:12])
    stops = stops_line(record)
    return Group(head, table, *([stops] if stops else []), *attempt_lines(record))


def trials_counts(record: SweepRecord) -> str:
    """`trials 7/9, 4 stopped, 1 failed`: the trials that ended (stopped and failed ones
    included) of those the sweep runs."""
    text = f"trials {record.trials_done}/{record.trials_total}"
    if record.trials_stopped:
        text += f", {record.trials_stopped} stopped"
    if record.trials_failed:
        text += f", {record.trials_failed} failed"
    return text


def _trial_status(trial: TrialRow) -> str:
    """`succeeded`, `stopped: <verdict>` (search.stop_on), `stopped: scheduler`, `failed`..."""
    return status_label({"status": trial.status, "stop_reason": trial.stop_reason})


def stops_line(record: SweepRecord) -> str | None:
    """The trials search.stop_on stopped, per verdict, and the CPU-seconds they saved."""
    stopped = record.stopped_on_diagnosis
    if not stopped:
        return None
    counts = ", ".join(f"{verdict} {n}" for verdict, n in stopped.items())
    return (f"stopped on their diagnosis: {counts}; about "
            f"{record.cpu_seconds_saved or 0.0:.0f} CPU-seconds saved")


def comparison_view(table: Comparison, width: int) -> Group:
    """`layerwise compare`'s tables, readable at `width` columns: the runs, numbered, with
    their verdicts; then the median per layer with a row per layer and a column per run,
    split into several tables when the runs do not fit side by side, so no number is cut."""
    runs = table.runs
    head = Table("#", Column("run", overflow="fold"), Column("id", no_wrap=True), "kind",
                 Column("verdict", overflow="fold"), Column("first/last", no_wrap=True))
    for number, run in enumerate(runs, 1):
        ratio = run.first_last_ratio
        head.add_row(str(number), run.name or "", run.id[:8], run.model_kind,
                     run.verdict or "", f"{ratio:.2e}" if ratio is not None else "")
    layers = list(dict.fromkeys(s.layer for run in runs for s in run.layers))
    medians = [{s.layer: s.median for s in run.layers} for run in runs]
    layer_width = min(max((len(layer) for layer in layers), default=5), max(12, width // 3))
    per_table = max(1, (width - layer_width - 4) // 11)  # a number is 8 wide, 3 of borders
    parts: list[Any] = [head, f"median {table.metric} per layer (columns: run #)"]
    for start in range(0, len(runs), per_table):
        numbers = range(start, min(start + per_table, len(runs)))
        view = Table(Column("layer", overflow="fold", max_width=layer_width),
                     *[Column(f"#{n + 1}", no_wrap=True, justify="right") for n in numbers])
        for layer in layers:
            view.add_row(layer, *[f"{medians[n][layer]:.2e}"
                                  if medians[n].get(layer) is not None else ""
                                  for n in numbers])
        parts.append(view)
    return Group(*parts)


def show_expectations(expectations: list[dict[str, Any]] | None) -> None:
    """Each of the job's `expect:` with what was observed and whether it held."""
    if not expectations:
        return
    table = Table("expectation", "observed", "held")
    for row in expectations:
        table.add_row(expectation_text(row["expect"]), observed_text(row["observed"]),
                      "[green]yes[/green]" if row["held"] else "[red]NO[/red]")
    console.print(table)


def expectation_text(expect: dict[str, Any]) -> str:
    """An expectation as a spec writes it, on one line."""
    if "diagnosis" in expect:
        return f"diagnosis: {expect['diagnosis']}"
    if "compare" in expect:
        c = expect["compare"]
        return (f"{c['metric']}: {_values(c['better'])} better than {_values(c['worse'])} "
                f"(confidence {c['confidence']:g})")
    bounds = " and ".join(f"{op} {expect[op]:g}" for op in (">=", "<=", ">", "<")
                          if op in expect)
    where = f" where {_values(expect['where'])}" if expect.get("where") else ""
    return f"{expect['metric']} {bounds}{where}"


def observed_text(observed: Any) -> str:
    if isinstance(observed, dict) and "better_mean" in observed:
        means = ", ".join(f"{_short(observed[k]) if observed[k] is not None else '-'}"
                          for k in ("better_mean", "worse_mean"))
        p = observed.get("p_value")
        return f"means {means}; " + (f"p = {p:.3g}" if p is not None else observed["why"])
    if isinstance(observed, list):
        return ", ".join(str(v) for v in observed)
    return "-" if observed is None else _short(observed)


def _values(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in values.items())


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def show_sweep_outcome(record: SweepRecord) -> None:
    _show_status(record)
    best = record.best
    if best:
        console.print(f"best trial {best.trial_id}: {record.metric} = "
                      f"{best.metric:.4g} with {best.params}")
    for config in (record.configurations or [])[:5]:
        if config.get("ci95"):
            low, high = config["ci95"]
            others = ", ".join(f"{label} {n}" for label, n in (config.get("statuses") or {})
                               .items() if label != "succeeded")
            console.print(f"  {config['params']}: mean {config['mean']:.4g}, 95% interval "
                          f"[{low:.4g}, {high:.4g}] over {config['n']} seeds"
                          + (f" ({others})" if others else ""))
    if record.trial_statuses:
        console.print("trials: " + ", ".join(f"{label} {n}" for label, n
                                              in record.trial_statuses.items()))
    stops = stops_line(record)
    if stops:
        console.print(stops)
    importance = importance_line(record.importance)
    if importance:
        console.print(importance, markup=False, highlight=False, soft_wrap=True)
    show_expectations(record.expectations)
    _show_mlflow_run("MLflow parent run", record)


def importance_line(importance: dict[str, Any] | None) -> str | None:
    """Which swept values mattered (fANOVA importance over the finished trials), or why the
    sweep could not tell."""
    if not importance:
        return None
    if importance.get("skipped"):
        return f"importance: not computed ({importance['skipped']})"
    ranked = ", ".join(f"{path} {value:.2f}" for path, value in importance["params"].items())
    return (f"what mattered for {importance.get('metric', 'the metric')} "
            f"({importance.get('evaluator', 'fanova')} importance over "
            f"{importance.get('trials', '?')} trials): {ranked}")


def _show_status(record: JobRecord | SweepRecord) -> None:
    """The final status, green for success, the error if there is one, and why earlier
    attempts ended."""
    color = "green" if record.status == "succeeded" else "red"
    console.print(f"[{color}]{record.status}[/{color}]")
    if record.error:
        console.print(record.error)
    show_attempts(record)


def show_attempts(record: JobRecord | SweepRecord) -> None:
    for line in attempt_lines(record):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def attempt_lines(record: JobRecord | SweepRecord) -> list[str]:
    """One line per attempt that ended before the job did: its cause, whether it counted
    against max_attempts (the service's own trouble does not), and Ray's words."""
    lines = []
    for logged in record.attempt_log:
        # An experiment's entries come typed (`ExperimentRecord`), a sweep's as stored.
        entry = logged.model_dump() if isinstance(logged, AttemptEntry) else logged
        counted = "counted" if entry.get("counted", True) else "not counted"
        detail = f": {entry['detail']}" if entry.get("detail") else ""
        lines.append(f"attempt {entry.get('attempt', '?')} ended early: "
                     f"{entry.get('cause', 'unknown')} ({counted}){detail}")
    return lines


def _show_mlflow_run(label: str, record: JobRecord | SweepRecord) -> None:
    """The link to the record's MLflow run in the UI, when it has one."""
    if record.mlflow_run_id:
        # the query opens MLflow's model-training view, whatever its GenAI toggle last said
        console.print(f"{label}: {ui_url()}/#/experiments/{record.mlflow_experiment_id}"
                      f"/runs/{record.mlflow_run_id}?workflowType=machine_learning")
