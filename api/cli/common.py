"""What the client commands share: the --url and --token options (after the command, or before
it), the client, ids given by their start, the service's refusal ending a command, spec files
(with their --set changes), and following a job."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from api.cli.output import console, epochs, fail, live_verdict
from api.cli.overrides import apply_overrides
from api.client import LayerwiseClient, LayerwiseError, load_spec_file
from api.schemas import ExperimentRecord

T = TypeVar("T")

# A full id: what the service makes (uuid4 hex); anything else may be a prefix of one.
FULL_ID = re.compile(r"[0-9a-f]{32}")

UrlOpt = Annotated[str | None, typer.Option(help="API URL (env LAYERWISE_URL)")]
TokenOpt = Annotated[str | None, typer.Option(help="bearer token (env LAYERWISE_TOKEN)")]


@dataclass
class Connection:
    """--url and --token given before the command (`layerwise --url X list`)."""

    url: str | None = None
    token: str | None = None


# Set by the app's callback, once per process, before the command runs.
given_first = Connection()


def connect(url: str | None, token: str | None) -> LayerwiseClient:
    """The client for the command's --url and --token, else those given before the command,
    else LAYERWISE_URL and LAYERWISE_TOKEN (the client reads them), else the local default."""
    return LayerwiseClient(url or given_first.url, token=token or given_first.token)


def resolve(client: LayerwiseClient, given: str, *, sweeps: bool = False) -> str:
    """The full id `given` stands for: itself when it is one, else the one id of the caller's
    (newest few thousand) jobs or sweeps that starts with it; several fail with their ids;
    none leaves it as given, for the service's 404 to say so."""
    if FULL_ID.fullmatch(given):
        return given
    matches = ask(client.match_ids, given, sweeps=sweeps, most=11)
    if len(matches) > 1:
        what = "sweeps" if sweeps else "jobs"
        fail(f"{given!r} is the start of several {what}' ids: {', '.join(matches[:10])}"
             f"{' and more' if len(matches) > 10 else ''}; give more of the id")
    return matches[0] if matches else given


def ask_about(client: LayerwiseClient, call: Callable[[str], T], given: str, *,
              sweeps: bool = False) -> T:
    """`call` on the id `given` stands for (a full id or a unique prefix)."""
    return ask(call, resolve(client, given, sweeps=sweeps))


def ask(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """What the service answers to `call`; its refusal, printed, ends the command."""
    try:
        return call(*args, **kwargs)
    except LayerwiseError as exc:
        fail(exc)


def read_spec(file: str, sets: list[str] | None = None) -> dict[str, Any]:
    """The spec in `file`, YAML or JSON, with the --set changes `sets`; one that cannot be
    read, or a change that cannot apply, ends the command in one line."""
    try:
        return apply_overrides(load_spec_file(file), sets)
    except (ValueError, OSError) as exc:
        fail(exc)


def is_sweep(spec: dict[str, Any]) -> bool:
    return "base" in spec and "space" in spec


def follow(client: LayerwiseClient, job_id: str) -> ExperimentRecord:
    """The job's final record, with a progress bar (epoch, loss, live verdict) until then."""
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn(
        "epoch {task.completed}/{task.fields[epochs]}"), TextColumn("{task.fields[loss]}"),
        TextColumn("{task.fields[verdict]}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("queued", total=None, loss="", epochs="?", verdict="")

        def update(record: ExperimentRecord) -> None:
            loss = record.progress.metrics.get("train/loss")
            progress.update(task, description=record.status, completed=record.progress.epoch,
                            total=epochs(record), epochs=epochs(record) or "?",
                            loss=f"loss {loss:.4f}" if loss is not None else "",
                            verdict=live_verdict(record.progress))

        return client.wait(job_id, on_update=update)
