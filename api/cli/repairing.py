"""`layerwise repair ID`: submit the fix a finished job's diagnosis suggests, as a new
experiment linked to it, and (with --wait) follow it and show before and after."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.common import TokenOpt, UrlOpt, ask_about, connect, follow
from api.cli.output import console, show_outcome
from api.schemas import ExperimentRecord


def repair(job_id: Annotated[str, typer.Argument(help="the job to repair (or its id's start)")],
           wait: Annotated[bool, typer.Option(help="follow the repair until it ends")] = False,
           url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Submit the fix a finished job's diagnosis suggests as a new, linked experiment."""
    with connect(url, token) as client:
        record = ask_about(client, client.repair, job_id)
        tried = record.repair_candidate or 0
        # Asking again returns the repair that exists (its status says how far it got).
        console.print(f"[bold]{record.id}[/bold] ({record.name}), a repair of "
                      f"{record.repair_of} (its fix number {tried + 1}): {record.status}")
        if not wait:
            return
        follow(client, record.id)
        record = client.get(record.id)
        show_outcome(record)
        show_before_after(record)
        if record.status != "succeeded":
            raise typer.Exit(1)


def show_before_after(record: ExperimentRecord) -> None:
    """The headline metric of the repaired job and of its repair."""
    outcome = record.repair
    if not outcome:
        return

    def shown(value: float | None) -> str:
        return "?" if value is None else f"{value:.4f}"

    verdict = {True: "; it helped", False: "; it did not help (`layerwise repair "
               f"{record.id[:8]}` tries the next fix)", None: ""}[outcome.helped]
    console.print(f"{outcome.metric} ({outcome.better} is better): before "
                  f"{shown(outcome.before)}, after {shown(outcome.after)}{verdict}",
                  markup=False, highlight=False)
