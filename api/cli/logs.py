"""`layerwise logs ID`: the end of a job's worker log, as the service keeps it."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.common import TokenOpt, UrlOpt, ask_about, connect
from api.cli.output import console, err_console

MAX_TAIL = 5000  # what the service answers at most (and 256 KiB)


def logs(job_id: Annotated[str, typer.Argument(help="the job's id, or its start")],
         tail: Annotated[int, typer.Option(
             min=1, max=MAX_TAIL, help="how many of the log's last lines to print")] = 200,
         url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Print the end of a job's worker log: each attempt's start and end, the worker's
    logging, stdout and stderr, and a line per epoch."""
    with connect(url, token) as client:
        log = ask_about(client, lambda full_id: client.logs(full_id, tail=tail), job_id)
    if log.truncated:
        err_console.print(f"(the last {len(log.lines)} lines of {log.size_bytes} bytes; "
                          f"--tail up to {MAX_TAIL} shows more)", style="dim",
                          highlight=False)
    for line in log.lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
