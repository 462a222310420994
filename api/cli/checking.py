"""`layerwise check FILE...`: submit each spec (an experiment or a sweep, by its content), at
most `--parallel` at a time, show each file's progress while they run (`check_progress`),
then print each `expect:` with what was observed, record each file's outcome for `--failed`
(`check_state`), and exit 1 when one did not hold (or a job ended without a result to judge),
2 when a file could not be read or was refused."""

from __future__ import annotations

import time
from collections import deque
from typing import Annotated, Any, NoReturn

import typer
from rich.table import Column, Table

from api.cli import check_state
from api.cli.check_progress import Claim, FileRun, LiveProgress, PlainProgress
from api.cli.common import TokenOpt, UrlOpt, connect, is_sweep
from api.cli.output import attempt_lines, console, err_console, expectation_text, observed_text
from api.cli.overrides import SetOpt, apply_overrides
from api.client import (
    TERMINAL,
    LayerwiseClient,
    LayerwiseError,
    ServiceUnreachable,
    SpecFileError,
    load_spec_file,
)
from api.schemas import ExperimentRecord
from services.sweep_table import SweepRecord

# Exit codes: a claim that failed is the answer the command exists for; a file or a service
# that could not be asked is a different problem, told apart for scripts and CI.
FAILED, NOT_ASKED = 1, 2
POLL_S = 1.0  # each job in flight is read this often
UNREACHABLE_FOR_S = 120.0  # the service may not answer this long before the check gives up


def check(files: Annotated[list[str] | None, typer.Argument(
              help="spec files, YAML or JSON; with --failed, only those of them to rerun",
              show_default=False)] = None,
          parallel: Annotated[int, typer.Option(
              min=1, help="at most this many files' jobs in flight; the next file is "
                          "submitted when one ends")] = 4,
          timeout: Annotated[float, typer.Option(
              min=0, help="seconds each file's job may take, from its submission to its end "
                          "(queued time included); one still going then is cancelled and its "
                          "file fails; 0: no limit")] = 1800.0,
          failed: Annotated[bool, typer.Option(
              "--failed", help=f"rerun the files that did not hold in the last check run "
                               f"here (recorded in {check_state.STATE})")] = False,
          sets: SetOpt = None, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Submit specs, follow them, and check their `expect:` claims; exit 1 when one does not
    hold, 2 when a file cannot be read or is refused. Each --set applies to every file; in a
    sweep, a path that is not a sweep's own field is set in its base."""
    runs = [FileRun(file, spec, is_sweep(spec))
            for file, spec in _read_all(_files(files, failed), sets)]
    with connect(url, token) as client:
        progress = LiveProgress() if console.is_interactive else PlainProgress()
        try:
            with progress:
                _run(client, runs, progress, parallel=parallel, timeout=timeout)
        except KeyboardInterrupt:
            for run in runs:  # those not submitted yet are rerun by --failed too
                if run.job_id and not run.ended:
                    _cancel(client, run)
                if not run.ended:
                    run.end([("(the job)", "interrupted", False)], status="interrupted")
            _record(runs, merge=failed)
            err_console.print("interrupted: the jobs in flight were cancelled", style="red")
            raise typer.Exit(130) from None
    _record(runs, merge=failed)
    _show_outcome(runs)


def _files(given: list[str] | None, failed: bool) -> list[str]:
    """The files to check: those given, or with --failed those of the last run that did not
    hold (and were given, when some are)."""
    if not failed:
        if not given:
            _stop("give the spec files to check (layerwise check FILE...), or --failed to "
                  "rerun those that did not hold last time")
        return given
    try:
        last = check_state.read()
    except check_state.NoLastRun as exc:
        _stop(str(exc))
    rerun = check_state.not_held(last)
    if given:
        wanted = {check_state.key(file) for file in given}
        unknown = sorted(wanted - set(last))
        if unknown:
            err_console.print(f"not in the last check run, so not rerun: {', '.join(unknown)}; "
                              "check them without --failed", style="yellow", markup=False,
                              highlight=False, soft_wrap=True)
        rerun = [file for file in rerun if file in wanted]
    if not rerun:
        console.print("nothing to rerun: every file " + ("given " if given else "") +
                      "held in the last check run", style="green", highlight=False)
        raise typer.Exit(0)
    return rerun


def _read_all(files: list[str], sets: list[str] | None
              ) -> list[tuple[str, dict[str, Any]]]:
    """Every file read, and changed by `sets`, before any is submitted: one that cannot be
    read or changed ends the command with nothing submitted."""
    specs = []
    for file in files:
        try:
            spec = load_spec_file(file)
        except SpecFileError as exc:  # it names the file, the line and the fix
            _stop(str(exc))
        try:
            specs.append((file, apply_overrides(spec, _for_sweep(sets) if is_sweep(spec)
                                                else sets)))
        except ValueError as exc:
            _stop(f"{file}: {exc}")
    return specs


def _for_sweep(sets: list[str] | None) -> list[str] | None:
    """The --set of a check for a sweep file: a path that is not one of the sweep's own
    fields is its base's, so that one --set (training.epochs=1) serves experiments and
    sweeps alike."""
    if not sets:
        return sets
    from services.contract.sweep_spec import SweepSpec  # only a sweep with --set reads it

    return [given if given.split("=", 1)[0].strip().split(".")[0] in SweepSpec.model_fields
            else f"base.{given.strip()}" for given in sets]


def _stop(message: str) -> NoReturn:
    err_console.print(message, style="red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(NOT_ASKED)


def _run(client: LayerwiseClient, runs: list[FileRun], progress: LiveProgress | PlainProgress,
         *, parallel: int, timeout: float) -> None:
    """Submit the files in order, at most `parallel` in flight, and follow each to its end."""
    waiting, in_flight = deque(runs), list[FileRun]()
    unreachable_since: float | None = None
    while waiting or in_flight:
        while waiting and len(in_flight) < parallel:
            run = waiting.popleft()
            if _submit(client, run, timeout):
                progress.submitted(run)
                in_flight.append(run)
        try:
            for run in list(in_flight):
                _follow(client, run, timeout)
                if run.ended:
                    in_flight.remove(run)
            unreachable_since = None
        except ServiceUnreachable:
            # A restart of the service is no reason to give up on jobs it will bring back.
            unreachable_since = unreachable_since or time.monotonic()
            if time.monotonic() - unreachable_since > UNREACHABLE_FOR_S:
                raise
        progress.refresh(runs)
        if in_flight:
            time.sleep(POLL_S)


def _submit(client: LayerwiseClient, run: FileRun, timeout: float) -> bool:
    """Submit the file's spec; a refusal is printed at once and fails the file (the others
    go on)."""
    try:
        record = (client.submit_sweep if run.sweep else client.submit)(run.spec)
    except LayerwiseError as exc:
        err_console.print(f"{run.file}: {exc}", style="red", markup=False, highlight=False,
                          soft_wrap=True)
        run.end([("(the file)", f"refused: {exc}", False)], status="refused")
        return False
    run.job_id, run.status, run.state = record.id, record.status, record.status
    run.deadline = time.monotonic() + timeout if timeout else float("inf")
    return True


def _follow(client: LayerwiseClient, run: FileRun, timeout: float) -> None:
    """Read the job's record once: its state, and its claims once it ended; past its
    deadline it is cancelled."""
    assert run.job_id is not None
    try:
        record: ExperimentRecord | SweepRecord = (
            client.get_sweep if run.sweep else client.get)(run.job_id)
    except LayerwiseError as exc:  # it was removed meanwhile, or its owner's token changed
        run.end([("(the job)", f"cannot be read: {exc}", False)], status="unreadable")
        return
    run.observe(record)
    if record.status in TERMINAL:
        run.end(_judged(record))
    elif time.monotonic() > run.deadline:
        _cancel(client, run)
        run.end([("(the job)", f"did not end within {timeout:g} s (--timeout); cancelled",
                  False)], status="timed out")


def _cancel(client: LayerwiseClient, run: FileRun) -> None:
    assert run.job_id is not None
    try:
        (client.cancel_sweep if run.sweep else client.cancel)(run.job_id)
    except LayerwiseError as exc:  # 409: it ended meanwhile, nothing left to stop
        if exc.status != 409:
            err_console.print(f"{run.file}: could not cancel {run.job_id}: {exc}",
                              markup=False, highlight=False, soft_wrap=True)


def _judged(record: ExperimentRecord | SweepRecord) -> list[Claim]:
    """One row per expectation; a job that did not succeed fails its file's claims."""
    if record.status != "succeeded":
        return [("(the job)", f"{record.status}: {record.error or ''}", False)]
    expectations = (record.expectations if isinstance(record, SweepRecord)
                    else (record.result or {}).get("expectations")) or []
    if not expectations:
        return [("(no expect:)", "", None)]
    return [(expectation_text(e["expect"]), observed_text(e["observed"]), bool(e["held"]))
            for e in expectations]


def _outcome(run: FileRun) -> str:
    held, judged = run.held
    if run.status == "refused":
        return "refused"
    if run.status != "succeeded":
        return run.status
    return check_state.NO_CLAIMS if not judged else (
        check_state.HELD if held == judged else "failed")


def _record(runs: list[FileRun], *, merge: bool) -> None:
    try:
        check_state.write({check_state.key(run.file): {"outcome": _outcome(run),
                                                       "job_id": run.job_id}
                           for run in runs if run.ended}, merge=merge)
    except OSError as exc:  # the check itself is done: say so, keep its answer
        err_console.print(f"could not record this run in {check_state.STATE} ({exc}); "
                          "`check --failed` will not see it", style="yellow", highlight=False)


def _show_outcome(runs: list[FileRun]) -> None:
    """The claims of every file in a table, each retry's cause, and the verdict of the whole
    check; the exit code says it too."""
    table = Table(Column("file", overflow="fold"), Column("expectation", overflow="fold"),
                  Column("observed", overflow="fold"), "held")
    for run in runs:
        for expectation, observed, held in run.claims:
            table.add_row(run.file, expectation, observed, "-" if held is None else
                          "[green]yes[/green]" if held else "[red]NO[/red]")
    console.print(table)
    for run in runs:
        for entry in _attempts(run):
            console.print(f"{run.file}: {entry}", markup=False, highlight=False,
                          soft_wrap=True)
    claims = [held for run in runs for *_, held in run.claims]
    failed = sum(held is False for held in claims)
    console.print(f"{len(claims) - failed} of {len(claims)} held" if failed else
                  f"all {len(claims)} held", style="red" if failed else "green")
    if failed:
        reruns = sum(_outcome(run) not in (check_state.HELD, check_state.NO_CLAIMS)
                     for run in runs)
        console.print(f"`layerwise check --failed` reruns the {reruns} file"
                      f"{'s' if reruns > 1 else ''} that did not hold", highlight=False)
    if any(run.status == "refused" for run in runs):
        raise typer.Exit(NOT_ASKED)
    if failed:
        raise typer.Exit(FAILED)


def _attempts(run: FileRun) -> list[str]:
    return attempt_lines(run.record) if run.record is not None else []
