"""The `layerwise` command: serve, dispatcher, submit, status, list, cancel, sweep, sweeps,
sweep-status, sweep-cancel, catalog, ui, compare."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from api.client import LayerwiseClient, LayerwiseError, ServiceUnreachable, load_spec_file

# A full id: what the service makes (uuid4 hex); anything else may be a prefix of one.
FULL_ID = re.compile(r"[0-9a-f]{32}")


class _Layerwise(typer.Typer):
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


app = _Layerwise(help="Layerwise: train and dissect deep neural networks.",
                 no_args_is_help=True, pretty_exceptions_enable=False)
console = Console()
err_console = Console(stderr=True)

UrlOpt = Annotated[str | None, typer.Option(help="API URL (env LAYERWISE_URL)")]
TokenOpt = Annotated[str | None, typer.Option(help="bearer token (env LAYERWISE_TOKEN)")]


def _client(url: str | None, token: str | None) -> LayerwiseClient:
    return LayerwiseClient(url, token=token)


def _fail(exc: Exception | str) -> NoReturn:
    console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _resolve(client: LayerwiseClient, given: str, *, sweeps: bool = False) -> str:
    """The full id `given` stands for: itself when it is one, else the one id of the caller's
    (newest few thousand) jobs or sweeps that starts with it; several fail with their ids;
    none leaves it as given, for the service's 404 to say so."""
    if FULL_ID.fullmatch(given):
        return given
    try:
        matches = client.match_ids(given, sweeps=sweeps, most=11)
    except LayerwiseError as exc:
        _fail(exc)
    if len(matches) > 1:
        what = "sweeps" if sweeps else "jobs"
        _fail(f"{given!r} is the start of several {what}' ids: {', '.join(matches[:10])}"
              f"{' and more' if len(matches) > 10 else ''}; give more of the id")
    return matches[0] if matches else given


def _call(client: LayerwiseClient, call: Callable[[str], dict[str, Any]], given: str, *,
          sweeps: bool = False) -> dict[str, Any]:
    """`call` on the id `given` stands for (a full id or a unique prefix)."""
    try:
        return call(_resolve(client, given, sweeps=sweeps))
    except LayerwiseError as exc:
        _fail(exc)


def _epochs(record: dict[str, Any]) -> int | None:
    """The job's epochs: its progress's, or until the first epoch reports, its spec's."""
    epochs = record["progress"].get("epochs")
    if not epochs:
        training = (record.get("spec") or {}).get("training") or {}
        epochs = training.get("epochs") if isinstance(training, dict) else None
    return epochs if isinstance(epochs, int) and epochs > 0 else None


def _is_sweep(spec: dict[str, Any]) -> bool:
    return "base" in spec and "space" in spec


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
    from services.settings import Settings
    from services.store import JobStore
    from services.tracking_store import prepare_tracking_store
    from workers.runtime.dispatcher import Dispatcher

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
    try:
        spec = load_spec_file(file)
    except (ValueError, OSError) as exc:
        _fail(exc)
    if _is_sweep(spec):
        _fail(f"{file} is a sweep (it has base: and space:); submit it with "
              f"`layerwise sweep {file}`")
    with _client(url, token) as client:
        try:
            record = client.submit(spec)
        except LayerwiseError as exc:
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
        "epoch {task.completed}/{task.fields[epochs]}"), TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("queued", total=None, loss="", epochs="?")

        def update(record: dict[str, Any]) -> None:
            p = record["progress"]
            loss = p.get("metrics", {}).get("train/loss")
            progress.update(task, description=record["status"], completed=p.get("epoch", 0),
                            total=_epochs(record), epochs=_epochs(record) or "?",
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
    """Show one job (its id, or the start of it)."""
    with _client(url, token) as client:
        record = _call(client, client.get, job_id)
        p = record["progress"]
        console.print(f"{record['id']}  {record['status']}  epoch {p['epoch']}/"
                      f"{_epochs(record) or '?'}  step {p['step']}  attempts "
                      f"{record['attempts']}", markup=False, highlight=False)
        if record.get("waiting"):
            console.print(f"waiting: {record['waiting']}", markup=False, highlight=False)
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
        table = Table(_id_column(), Column("name", overflow="fold"), "kind", "status", "epoch",
                      "created", box=box.SIMPLE_HEAD)
        for r in page["data"]:
            table.add_row(r["id"], r["name"] or "", r["spec"]["model"]["kind"], r["status"],
                          f"{r['progress']['epoch']}/{_epochs(r) or '?'}", _created(r))
        console.print(table)


@app.command()
def cancel(job_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a queued or running job (its id, or the start of it)."""
    with _client(url, token) as client:
        record = _call(client, client.cancel, job_id)
        console.print(f"{record['id']} {record['status']}")


@app.command()
def sweep(file: Annotated[str, typer.Argument(help="sweep spec file, YAML or JSON")],
          wait: Annotated[bool, typer.Option(help="follow with a live table of trials")] = False,
          url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Submit a sweep: a base experiment and a search space, run on Ray Tune."""
    try:
        spec = load_spec_file(file)
    except (ValueError, OSError) as exc:
        _fail(exc)
    if "model" in spec and not _is_sweep(spec):
        _fail(f"{file} is an experiment (it has model: and no base: and space:); submit it "
              f"with `layerwise submit {file}`")
    with _client(url, token) as client:
        try:
            record = client.submit_sweep(spec)
        except LayerwiseError as exc:
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
    """Show one sweep (its id, or the start of it): its trials and the best so far."""
    with _client(url, token) as client:
        record = _call(client, client.get_sweep, sweep_id, sweeps=True)
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
        table = Table(_id_column(), Column("name", overflow="fold"), "status", "trials", "best",
                      "created", box=box.SIMPLE_HEAD)
        for r in page["data"]:
            best = r["best"]["metric"] if r["best"] else None
            table.add_row(r["id"], r["name"] or "", r["status"],
                          f"{r['trials_done']}/{r['trials_total']}",
                          f"{r['metric']} {best:.4g}" if best is not None else "",
                          _created(r))
        console.print(table)


@app.command("sweep-cancel")
def sweep_cancel(sweep_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a queued or running sweep (its id, or the start of it); every running trial
    stops."""
    with _client(url, token) as client:
        record = _call(client, client.cancel_sweep, sweep_id, sweeps=True)
        console.print(f"{record['id']} {record['status']}")


def _id_column() -> Column:
    """Whole ids, never cut (folded only in a very narrow terminal), so that one can be pasted
    into status or cancel."""
    return Column("id", no_wrap=True, overflow="fold", min_width=32)


def _created(record: dict[str, Any]) -> str:
    """MM-DD HH:MM (UTC): the year and seconds would cost the ids their room."""
    return str(record["created_at"])[5:16].replace("T", " ")


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
def catalog(name: Annotated[str | None, typer.Argument(
                help="a model kind or a dataset: its fields, types, defaults and choices")
            ] = None,
            url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List model kinds and datasets; `catalog KIND` shows what a kind (or dataset) takes."""
    with _client(url, token) as client:
        try:
            entries = client.catalog()
        except LayerwiseError as exc:
            _fail(exc)
    if name is not None:
        _show_entry(entries, name)
        return
    table = Table("model kind", "description")
    for model in entries["models"]:
        table.add_row(model["kind"], model["description"])
    console.print(table)
    table = Table("dataset", "description")
    for dataset in entries["datasets"]:
        table.add_row(dataset["name"], dataset["description"])
    console.print(table)
    console.print("`layerwise catalog KIND` shows a kind's (or a dataset's) fields")


def _show_entry(entries: dict[str, Any], name: str) -> None:
    models = [m for m in entries["models"] if m["kind"] == name]
    datasets = [d for d in entries["datasets"] if d["name"] == name]
    if not models and not datasets:
        _fail(f"no model kind or dataset {name!r}; kinds: "
              f"{', '.join(m['kind'] for m in entries['models'])}; datasets: "
              f"{', '.join(d['name'] for d in entries['datasets'])}")
    for model in models:
        console.print(f"model kind [bold]{model['kind']}[/bold]: {model['description']}")
        if model.get("supports"):
            console.print(f"supports: {', '.join(model['supports'])}", markup=False)
        console.print(_fields_table(model["schema"], skip={"kind"}))
        console.print(f"in a spec: model: {{kind: {model['kind']}, <field>: <value>, ...}}",
                      markup=False, highlight=False)
    for dataset in datasets:
        console.print(f"dataset [bold]{dataset['name']}[/bold]: {dataset['description']}")
        console.print(_fields_table(dataset["params_schema"]))
        console.print(f"in a spec: data: {{name: {dataset['name']}, params: {{<field>: "
                      "<value>, ...}}", markup=False, highlight=False)


def _fields_table(schema: dict[str, Any], *, skip: set[str] | None = None) -> Table:
    """A pydantic JSON schema's fields: name, type, default, choices, description; an object
    field's own fields follow it as `field.sub` (`field[].sub` for a list of them)."""
    defs = schema.get("$defs", {})
    rows = _fields(schema, defs, "", skip or set(), depth=0)
    table = Table(Column("field", no_wrap=True, min_width=max((len(r[0]) for r in rows),
                                                             default=5)),
                  Column("type", overflow="fold"), Column("default", overflow="fold"),
                  Column("choices", overflow="fold"), "description")
    for path, field, required in rows:
        default = "(required)" if required else (
            _value(field["default"]) if "default" in field else "")
        table.add_row(path, _type(field, defs), default,
                      ", ".join(_value(c) for c in _choices(field, defs)),
                      field.get("description", ""))
    return table


def _fields(schema: dict[str, Any], defs: dict[str, Any], prefix: str, skip: set[str], *,
            depth: int) -> list[tuple[str, dict[str, Any], bool]]:
    rows: list[tuple[str, dict[str, Any], bool]] = []
    required = set(schema.get("required", []))
    for key, field in schema.get("properties", {}).items():
        if key in skip:
            continue
        rows.append((prefix + key, field, key in required and "default" not in field))
        if depth >= 3:
            continue
        for inner, marker in _objects(field, defs):
            rows += _fields(inner, defs, f"{prefix}{key}{marker}.", set(), depth=depth + 1)
    return rows


def _objects(field: dict[str, Any], defs: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """The object schemas (with fields) a field holds: itself, its items ('[]'), a variant."""
    field = _deref(field, defs)
    if field.get("properties"):
        return [(field, "")]
    if field.get("type") == "array" and isinstance(field.get("items"), dict):
        return [(inner, "[]") for inner, _ in _objects(field["items"], defs)]
    found: list[tuple[dict[str, Any], str]] = []
    for option in field.get("anyOf", []) + field.get("oneOf", []):
        found += _objects(option, defs)
    return found


def _deref(field: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """`field` with a `$ref` (or an allOf of one) replaced by what it names."""
    for _ in range(10):
        if "$ref" in field:
            target = defs.get(field["$ref"].rsplit("/", 1)[-1], {})
            field = {**target, **{k: v for k, v in field.items() if k != "$ref"}}
        elif len(field.get("allOf", [])) == 1:
            field = {**field["allOf"][0], **{k: v for k, v in field.items() if k != "allOf"}}
        else:
            break
    return field


_TYPES = {"integer": "int", "number": "float", "string": "str", "boolean": "bool",
          "null": "null", "object": "mapping"}


def _type(field: dict[str, Any], defs: dict[str, Any]) -> str:
    """A readable type: `int 1..1000`, `list of int`, `int | null`, `choice`, a model's name."""
    field = _deref(field, defs)
    options = field.get("anyOf") or field.get("oneOf")
    if options:
        return " | ".join(dict.fromkeys(_type(option, defs) for option in options))
    if "enum" in field:
        return "choice"
    if "const" in field:
        return _value(field["const"])
    kind = field.get("type")
    if isinstance(kind, list):
        return " | ".join(_TYPES.get(k, str(k)) for k in kind)
    if kind == "array":
        items = field.get("items")
        inner = _type(items, defs) if isinstance(items, dict) else "any"
        return f"list of {inner}"
    if field.get("properties"):
        return str(field.get("title") or "mapping")
    text = _TYPES.get(str(kind), str(kind) if kind else "any")
    low = field.get("minimum", field.get("exclusiveMinimum"))
    high = field.get("maximum", field.get("exclusiveMaximum"))
    if low is not None or high is not None:
        left = "(" if "exclusiveMinimum" in field else "["
        right = ")" if "exclusiveMaximum" in field else "]"
        text += f" {left}{_value(low) if low is not None else ''}.." \
                f"{_value(high) if high is not None else ''}{right}"
    return text


def _choices(field: dict[str, Any], defs: dict[str, Any]) -> list[Any]:
    """The values a field may take when they are a list: an enum, Literals, or such options."""
    field = _deref(field, defs)
    if "enum" in field:
        return list(field["enum"])
    choices: list[Any] = []
    for option in field.get("anyOf", []) + field.get("oneOf", []):
        option = _deref(option, defs)
        if "const" in option:
            choices.append(option["const"])
        choices += option.get("enum", [])
    if field.get("type") == "array" and isinstance(field.get("items"), dict):
        return _choices(field["items"], defs)
    return choices


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


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
        job_ids = [_resolve(client, given) for given in job_ids]
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
