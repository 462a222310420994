"""The client commands of `layerwise`: experiments (submit, status, list, cancel), sweeps
(sweep, sweep-status, sweeps, sweep-cancel), the catalog and compare, against the service at
--url (or LAYERWISE_URL)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich import box
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from api.cli.fields import show_entry
from api.cli.output import (
    comparison_view,
    console,
    created,
    epochs,
    fail,
    id_column,
    live_verdict,
    show_attempts,
    show_outcome,
    show_sweep_outcome,
    sweep_view,
)
from api.client import LayerwiseClient, LayerwiseError, load_spec_file

T = TypeVar("T")

# A full id: what the service makes (uuid4 hex); anything else may be a prefix of one.
FULL_ID = re.compile(r"[0-9a-f]{32}")

UrlOpt = Annotated[str | None, typer.Option(help="API URL (env LAYERWISE_URL)")]
TokenOpt = Annotated[str | None, typer.Option(help="bearer token (env LAYERWISE_TOKEN)")]


def _client(url: str | None, token: str | None) -> LayerwiseClient:
    return LayerwiseClient(url, token=token)


def _resolve(client: LayerwiseClient, given: str, *, sweeps: bool = False) -> str:
    """The full id `given` stands for: itself when it is one, else the one id of the caller's
    (newest few thousand) jobs or sweeps that starts with it; several fail with their ids;
    none leaves it as given, for the service's 404 to say so."""
    if FULL_ID.fullmatch(given):
        return given
    matches = _ask(client.match_ids, given, sweeps=sweeps, most=11)
    if len(matches) > 1:
        what = "sweeps" if sweeps else "jobs"
        fail(f"{given!r} is the start of several {what}' ids: {', '.join(matches[:10])}"
             f"{' and more' if len(matches) > 10 else ''}; give more of the id")
    return matches[0] if matches else given


def _call(client: LayerwiseClient, call: Callable[[str], dict[str, Any]], given: str, *,
          sweeps: bool = False) -> dict[str, Any]:
    """`call` on the id `given` stands for (a full id or a unique prefix)."""
    return _ask(call, _resolve(client, given, sweeps=sweeps))


def _ask(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """What the service answers to `call`; its refusal, printed, ends the command."""
    try:
        return call(*args, **kwargs)
    except LayerwiseError as exc:
        fail(exc)


def _read(file: str) -> dict[str, Any]:
    """The spec in `file`, YAML or JSON; one that cannot be read ends the command."""
    try:
        return load_spec_file(file)
    except (ValueError, OSError) as exc:
        fail(exc)


def _is_sweep(spec: dict[str, Any]) -> bool:
    return "base" in spec and "space" in spec


def submit(file: Annotated[str, typer.Argument(help="spec file, YAML or JSON")],
           wait: Annotated[bool, typer.Option(help="follow until the job ends")] = False,
           url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Submit an experiment spec."""
    spec = _read(file)
    if _is_sweep(spec):
        fail(f"{file} is a sweep (it has base: and space:); submit it with "
             f"`layerwise sweep {file}`")
    with _client(url, token) as client:
        record = _ask(client.submit, spec)
        console.print(f"submitted [bold]{record['id']}[/bold] ({record['param_count']} "
                      "parameters)")
        if wait:
            record = _follow(client, record["id"])
            show_outcome(record)
            if record["status"] != "succeeded":
                raise typer.Exit(1)


def _follow(client: LayerwiseClient, job_id: str) -> dict[str, Any]:
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn(
        "epoch {task.completed}/{task.fields[epochs]}"), TextColumn("{task.fields[loss]}"),
        TextColumn("{task.fields[verdict]}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("queued", total=None, loss="", epochs="?", verdict="")

        def update(record: dict[str, Any]) -> None:
            p = record["progress"]
            loss = p.get("metrics", {}).get("train/loss")
            progress.update(task, description=record["status"], completed=p.get("epoch", 0),
                            total=epochs(record), epochs=epochs(record) or "?",
                            loss=f"loss {loss:.4f}" if loss is not None else "",
                            verdict=live_verdict(p))

        return client.wait(job_id, on_update=update)


def status(job_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show one job (its id, or the start of it)."""
    with _client(url, token) as client:
        record = _call(client, client.get, job_id)
        p = record["progress"]
        console.print(f"{record['id']}  {record['status']}  epoch {p['epoch']}/"
                      f"{epochs(record) or '?'}  step {p['step']}  attempts "
                      f"{record['attempts']}", markup=False, highlight=False)
        if record.get("waiting"):
            console.print(f"waiting: {record['waiting']}", markup=False, highlight=False)
        if live_verdict(p) and record["status"] == "running":
            console.print(live_verdict(p), markup=False, highlight=False)
        if record["status"] in ("succeeded", "failed", "cancelled"):
            show_outcome(record)  # with the attempts that ended early
        else:
            show_attempts(record)


def list_jobs(status: Annotated[str | None, typer.Option()] = None, limit: int = 20,
              url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List recent experiments."""
    with _client(url, token) as client:
        table = _listing("kind", "status", "epoch")
        for r in _page(client.list, status, limit):
            table.add_row(r["id"], r["name"] or "", r["spec"]["model"]["kind"], r["status"],
                          f"{r['progress']['epoch']}/{epochs(r) or '?'}", created(r))
        console.print(table)


def _page(call: Callable[..., dict[str, Any]], status: str | None, limit: int
          ) -> list[dict[str, Any]]:
    """The records a list call answers, newest first."""
    return _ask(call, status=status, limit=limit)["data"]


def _listing(*columns: str) -> Table:
    """A list's table: the whole id, the name, `columns`, and when it was created."""
    return Table(id_column(), Column("name", overflow="fold"), *columns, "created",
                 box=box.SIMPLE_HEAD)


def cancel(job_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a queued or running job (its id, or the start of it)."""
    with _client(url, token) as client:
        record = _call(client, client.cancel, job_id)
        console.print(f"{record['id']} {record['status']}")


def sweep(file: Annotated[str, typer.Argument(help="sweep spec file, YAML or JSON")],
          wait: Annotated[bool, typer.Option(help="follow with a live table of trials")] = False,
          url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Submit a sweep: a base experiment and a search space, run on Ray Tune."""
    spec = _read(file)
    if "model" in spec and not _is_sweep(spec):
        fail(f"{file} is an experiment (it has model: and no base: and space:); submit it "
             f"with `layerwise submit {file}`")
    with _client(url, token) as client:
        record = _ask(client.submit_sweep, spec)
        console.print(f"submitted sweep [bold]{record['id']}[/bold] "
                      f"({record['trials_total']} trials)")
        if wait:
            with Live(sweep_view(record), console=console, refresh_per_second=4) as live:
                record = client.wait_sweep(record["id"],
                                           on_update=lambda r: live.update(sweep_view(r)))
            show_sweep_outcome(record)
            if record["status"] != "succeeded":
                raise typer.Exit(1)


def sweep_status(sweep_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show one sweep (its id, or the start of it): its trials and the best so far."""
    with _client(url, token) as client:
        record = _call(client, client.get_sweep, sweep_id, sweeps=True)
        console.print(sweep_view(record))
        if record["status"] in ("succeeded", "failed", "cancelled"):
            show_sweep_outcome(record)


def list_sweeps(status: Annotated[str | None, typer.Option()] = None, limit: int = 20,
                url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List recent sweeps."""
    with _client(url, token) as client:
        table = _listing("status", "trials", "best")
        for r in _page(client.list_sweeps, status, limit):
            best = r["best"]["metric"] if r["best"] else None
            table.add_row(r["id"], r["name"] or "", r["status"],
                          f"{r['trials_done']}/{r['trials_total']}",
                          f"{r['metric']} {best:.4g}" if best is not None else "",
                          created(r))
        console.print(table)


def sweep_cancel(sweep_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a queued or running sweep (its id, or the start of it); every running trial
    stops."""
    with _client(url, token) as client:
        record = _call(client, client.cancel_sweep, sweep_id, sweeps=True)
        console.print(f"{record['id']} {record['status']}")


def catalog(name: Annotated[str | None, typer.Argument(
                help="a model kind or a dataset: its fields, types, defaults and choices")
            ] = None,
            url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List model kinds and datasets; `catalog KIND` shows what a kind (or dataset) takes."""
    with _client(url, token) as client:
        entries = _ask(client.catalog)
    if name is not None:
        show_entry(entries, name)
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


def compare(job_ids: Annotated[list[str], typer.Argument(help="two or more job ids")],
            metric: Annotated[str, typer.Option(help="grad_norm, update_norm or weight_norm")
                              ] = "grad_norm",
            out: Annotated[str, typer.Option(help="where to save the figure (PNG)")
                           ] = "compare.png",
            url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Several runs' per-layer curves side by side: a table here, a figure in --out."""
    with _client(url, token) as client:
        job_ids = [_resolve(client, given) for given in job_ids]
        table = _ask(client.compare, job_ids, metric=metric)
        png = _ask(client.compare_png, job_ids, metric=metric)
    console.print(comparison_view(table, console.width))
    with open(out, "wb") as handle:
        handle.write(png)
    console.print(f"figure: {out}")
