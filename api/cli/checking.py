"""`layerwise check FILE...`: submit each spec (an experiment or a sweep, by its content), wait
for all of them, print each `expect:` with what was observed, and exit 1 when one did not hold
(or a job ended without a result to judge), 2 when a file could not be read or submitted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer
from rich.table import Column, Table

from api.cli.common import TokenOpt, UrlOpt, connect, is_sweep
from api.cli.output import attempt_lines, console, err_console, expectation_text, observed_text
from api.client import LayerwiseClient, LayerwiseError, load_spec_file
from api.schemas import ExperimentRecord
from services.sweep_table import SweepRecord

# Exit codes: a claim that failed is the answer the command exists for; a file or a service
# that could not be asked is a different problem, told apart for scripts and CI.
FAILED, NOT_ASKED = 1, 2


@dataclass
class Submitted:
    file: str
    job_id: str
    sweep: bool


def check(files: Annotated[list[str], typer.Argument(help="spec files, YAML or JSON")],
          timeout: Annotated[float, typer.Option(help="seconds to wait for all jobs")
                             ] = 3600.0,
          url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Submit specs, wait, and check their `expect:` claims; exit 1 when one does not hold."""
    with connect(url, token) as client:
        submitted = _submit_all(client, files)
        rows: list[tuple[str, str, str, bool | None]] = []
        retried: list[str] = []  # why attempts ended early: a pass after retries is told
        for job in submitted:
            record = _wait(client, job, timeout)
            rows += _judged(job, record)
            retried += [f"{job.file}: {line}" for line in (attempt_lines(record) if record
                                                           else [])]
    table = Table(Column("file", overflow="fold"), Column("expectation", overflow="fold"),
                  Column("observed", overflow="fold"), "held")
    for file, expectation, observed, held in rows:
        table.add_row(file, expectation, observed, "-" if held is None else
                      "[green]yes[/green]" if held else "[red]NO[/red]")
    console.print(table)
    for line in retried:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    failed = sum(held is False for *_, held in rows)
    console.print(f"{len(rows) - failed} of {len(rows)} held" if failed else
                  f"all {len(rows)} held", style="red" if failed else "green")
    if failed:
        raise typer.Exit(FAILED)


def _submit_all(client: LayerwiseClient, files: list[str]) -> list[Submitted]:
    """Every file submitted before any is waited for, so that they run side by side; one that
    cannot be read or is refused cancels those already submitted and ends the command."""
    submitted: list[Submitted] = []
    for file in files:
        try:
            spec = load_spec_file(file)
            sweep = is_sweep(spec)
            record = (client.submit_sweep if sweep else client.submit)(spec)
        except (ValueError, OSError, LayerwiseError) as exc:
            for job in submitted:
                _cancel(client, job)
            err_console.print(f"{file}: {exc}", style="red", markup=False, highlight=False,
                              soft_wrap=True)
            raise typer.Exit(NOT_ASKED) from exc
        console.print(f"{file}: submitted {'sweep ' if sweep else ''}{record.id}",
                      markup=False, highlight=False)
        submitted.append(Submitted(file, record.id, sweep))
    return submitted


def _cancel(client: LayerwiseClient, job: Submitted) -> None:
    try:
        (client.cancel_sweep if job.sweep else client.cancel)(job.job_id)
    except LayerwiseError as exc:  # 409: it ended meanwhile, nothing left to stop
        if exc.status != 409:
            console.print(f"{job.file}: could not cancel {job.job_id}: {exc}", markup=False,
                          highlight=False, soft_wrap=True)


def _wait(client: LayerwiseClient, job: Submitted, timeout: float
          ) -> ExperimentRecord | SweepRecord | None:
    """The job's final record, or None when it did not end in time."""
    try:
        if job.sweep:
            return client.wait_sweep(job.job_id, timeout=timeout)
        return client.wait(job.job_id, timeout=timeout)
    except TimeoutError as exc:
        err_console.print(str(exc), style="red", markup=False, highlight=False)
        return None


def _judged(job: Submitted, record: ExperimentRecord | SweepRecord | None
            ) -> list[tuple[str, str, str, bool | None]]:
    """One row per expectation; a job that did not succeed fails its file's claims."""
    if record is None:
        return [(job.file, "(the job)", "did not end in time", False)]
    if record.status != "succeeded":
        return [(job.file, "(the job)", f"{record.status}: {record.error or ''}", False)]
    expectations = (record.expectations if isinstance(record, SweepRecord)
                    else (record.result or {}).get("expectations")) or []
    if not expectations:
        return [(job.file, "(no expect:)", "", None)]
    return [(job.file, expectation_text(e["expect"]), observed_text(e["observed"]),
             bool(e["held"])) for e in expectations]
