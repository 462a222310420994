"""The client commands of `layerwise`: experiments (submit, status, list, cancel), sweeps
(sweep, sweep-status, sweeps, sweep-cancel), the catalog and compare, against the service at
--url (or LAYERWISE_URL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich import box
from rich.live import Live
from rich.table import Column, Table

from api.cli.common import (
    TokenOpt,
    UrlOpt,
    ask,
    ask_about,
    connect,
    follow,
    is_sweep,
    read_spec,
    resolve,
)
from api.cli.curves_view import curves_view
from api.cli.extending import extension_spec
from api.cli.fields import show_entry
from api.cli.output import (
    comparison_view,
    console,
    created,
    epochs,
    fail,
    headline,
    id_column,
    job_verdict,
    live_verdict,
    show_attempts,
    show_outcome,
    show_sweep_outcome,
    sweep_view,
)
from api.cli.overrides import SetOpt, apply_overrides
from api.schemas import ExperimentsPublic
from services.sweep_table import SweepsPublic

Page = TypeVar("Page", ExperimentsPublic, SweepsPublic)


def submit(file: Annotated[str, typer.Argument(help="spec file, YAML or JSON")],
           wait: Annotated[bool, typer.Option(help="follow until the job ends")] = False,
           sets: SetOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Submit an experiment spec (with --set PATH=VALUE changes, checked like the file)."""
    spec = read_spec(file, sets)
    if is_sweep(spec):
        fail(f"{file} is a sweep (it has base: and space:); submit it with "
             f"`layerwise sweep {file}`")
    with connect(url, token) as client:
        record = ask(client.submit, spec)
        console.print(f"submitted [bold]{record.id}[/bold] ({record.param_count} "
                      "parameters)")
        if wait:
            final = follow(client, record.id)
            show_outcome(final)
            if final.status != "succeeded":
                raise typer.Exit(1)


def status(job_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show one job (its id, or the start of it)."""
    with connect(url, token) as client:
        record = ask_about(client, client.get, job_id)
        p = record.progress
        console.print(f"{record.id}  {record.status}  epoch {p.epoch}/"
                      f"{epochs(record) or '?'}  step {p.step}  attempts "
                      f"{record.attempts}", markup=False, highlight=False)
        if record.waiting:
            console.print(f"waiting: {record.waiting}", markup=False, highlight=False)
        if live_verdict(p) and record.status == "running":
            console.print(live_verdict(p), markup=False, highlight=False)
        if record.status in ("succeeded", "failed", "cancelled"):
            show_outcome(record)  # with the attempts that ended early
        else:
            show_attempts(record)


def list_jobs(status: Annotated[str | None, typer.Option(
                  help="queued, running, succeeded, failed or cancelled")] = None,
              verdict: Annotated[str | None, typer.Option(
                  help="the final diagnosis's verdict: healthy, vanishing, not_learning, ...")
              ] = None,
              limit: int = 20, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List recent experiments: status, verdict and headline metric (val: acc for
    val/accuracy, else loss for val/loss; while running, the last epoch's)."""
    with connect(url, token) as client:
        table = _listing("kind", "status", "epoch", Column("verdict", overflow="fold"),
                         Column("val", no_wrap=True))
        for r in _page(client.list, status, limit, verdict=verdict).data:
            table.add_row(r.id, r.name or "", r.spec["model"]["kind"], r.status,
                          f"{r.progress.epoch}/{epochs(r) or '?'}", job_verdict(r),
                          headline(r), created(r))
        console.print(table)


def _page(call: Callable[..., Page], status: str | None, limit: int, **filters: str | None
          ) -> Page:
    """The page of records a list call answers, newest first."""
    return ask(call, status=status, limit=limit, **filters)


def _listing(*columns: str | Column) -> Table:
    """A list's table: the whole id, the name, `columns`, and when it was created."""
    return Table(id_column(), Column("name", overflow="fold"), *columns, "created",
                 box=box.SIMPLE_HEAD)


def cancel(job_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a queued or running job (its id, or the start of it)."""
    with connect(url, token) as client:
        record = ask_about(client, client.cancel, job_id)
        console.print(f"{record.id} {record.status}")


def sweep(file: Annotated[str | None, typer.Argument(
              help="sweep spec file, YAML or JSON (not with --extend)")] = None,
          wait: Annotated[bool, typer.Option(help="follow with a live table of trials")] = False,
          extend: Annotated[str | None, typer.Option(
              help="a finished sweep's id (or its start): run --trials more of it, starting "
                   "from what it found")] = None,
          trials: Annotated[int | None, typer.Option(
              help="with --extend: how many more trials")] = None,
          sets: SetOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Submit a sweep: a base experiment and a search space, run on Ray Tune (--set paths
    start with base., space., search., ...); or extend a finished one (--extend ID --trials N)."""
    if (file is None) == (extend is None):
        fail("give a sweep spec file, or --extend ID --trials N (not both)")
    if extend is not None and trials is None:
        fail("--extend needs --trials N: how many more trials to run")
    with connect(url, token) as client:
        if extend is not None:
            earlier = ask_about(client, client.get_sweep, extend, sweeps=True)
            try:
                spec = apply_overrides(extension_spec(earlier, int(trials or 0)), sets)
            except ValueError as exc:
                fail(exc)
            console.print(f"extending sweep {earlier.id}: {len(spec['search']['prior'])} "
                          "earlier trials to start from", markup=False, highlight=False)
        else:
            spec = read_spec(str(file), sets)
            if "model" in spec and not is_sweep(spec):
                fail(f"{file} is an experiment (it has model: and no base: and space:); "
                     f"submit it with `layerwise submit {file}`")
        record = ask(client.submit_sweep, spec)
        console.print(f"submitted sweep [bold]{record.id}[/bold] "
                      f"({record.trials_total} trials)")
        if wait:
            with Live(sweep_view(record), console=console, refresh_per_second=4) as live:
                record = client.wait_sweep(record.id,
                                           on_update=lambda r: live.update(sweep_view(r)))
            show_sweep_outcome(record)
            if record.status != "succeeded":
                raise typer.Exit(1)


def sweep_status(sweep_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Show one sweep (its id, or the start of it): its trials and the best so far."""
    with connect(url, token) as client:
        record = ask_about(client, client.get_sweep, sweep_id, sweeps=True)
        console.print(sweep_view(record))
        if record.status in ("succeeded", "failed", "cancelled"):
            show_sweep_outcome(record)


def list_sweeps(status: Annotated[str | None, typer.Option()] = None, limit: int = 20,
                url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List recent sweeps."""
    with connect(url, token) as client:
        table = _listing("status", "trials", "best")
        for r in _page(client.list_sweeps, status, limit).data:
            best = r.best.metric if r.best else None
            table.add_row(r.id, r.name or "", r.status, f"{r.trials_done}/{r.trials_total}",
                          f"{r.metric} {best:.4g}" if best is not None else "", created(r))
        console.print(table)


def sweep_cancel(sweep_id: str, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Cancel a queued or running sweep (its id, or the start of it); every running trial
    stops."""
    with connect(url, token) as client:
        record = ask_about(client, client.cancel_sweep, sweep_id, sweeps=True)
        console.print(f"{record.id} {record.status}")


def catalog(name: Annotated[str | None, typer.Argument(
                help="a model kind or a dataset: its fields, types, defaults and choices")
            ] = None,
            url: UrlOpt = None, token: TokenOpt = None) -> None:
    """List model kinds and datasets; `catalog KIND` shows what a kind (or dataset) takes."""
    with connect(url, token) as client:
        entries = ask(client.catalog)
    if name is not None:
        show_entry(entries, name)
        return
    table = Table("model kind", "description")
    for model in entries.models:
        table.add_row(model["kind"], model["description"])
    console.print(table)
    table = Table("dataset", "description")
    for dataset in entries.datasets:
        table.add_row(dataset["name"], dataset["description"])
    console.print(table)
    console.print("`layerwise catalog KIND` shows a kind's (or a dataset's) fields")


def compare(job_ids: Annotated[list[str], typer.Argument(help="two or more job ids")],
            metric: Annotated[str, typer.Option(help="grad_norm, update_norm or weight_norm")
                              ] = "grad_norm",
            out: Annotated[str, typer.Option(help="where to save the figure (PNG)")
                           ] = "compare.png",
            url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Several runs' per-layer curves side by side and their loss and accuracy curves
    overlaid: tables here, a figure in --out."""
    with connect(url, token) as client:
        job_ids = [resolve(client, given) for given in job_ids]
        table = ask(client.compare, job_ids, metric=metric)
        png = ask(client.compare_png, job_ids, metric=metric)
    console.print(comparison_view(table, console.width))
    curves = curves_view(table)
    if curves is not None:
        console.print(curves)
    with open(out, "wb") as handle:
        handle.write(png)
    console.print(f"figure: {out}")
