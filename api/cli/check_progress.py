"""What `layerwise check` shows while it runs: one `FileRun` per file (its job's state, live
verdict, retries and, once it ended, its claims), drawn as a live table in a terminal or, when
stdout is not one (a CI log), as a line each time a file's state changes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.table import Column, Table
from rich.text import Text

from api.cli.output import console, epochs, live_verdict
from api.schemas import AttemptEntry, ExperimentRecord
from services.sweep_table import SweepRecord

# A judged claim: (expectation, what was observed, held); held is None for a file without any.
Claim = tuple[str, str, bool | None]
JobRecordSeen = ExperimentRecord | SweepRecord
# In a log, a file's line is printed again for an epoch or a trial at most this often; a change
# of status always is.
PLAIN_EVERY_S = 10.0


@dataclass
class FileRun:
    file: str
    spec: dict[str, Any]
    sweep: bool
    job_id: str | None = None
    status: str = "waiting"  # waiting, the job's status, "timed out" or "refused"
    state: str = "waiting"  # the status as shown: "epoch 3 of 10", "trials 2 of 6", ...
    verdict: str = ""
    retries: str = ""
    error: str = ""
    claims: list[Claim] = field(default_factory=list)
    ended: bool = False
    deadline: float = 0.0  # time.monotonic() by which its job must end
    record: JobRecordSeen | None = None  # the job's latest

    def observe(self, record: JobRecordSeen) -> None:
        """Take the state, verdict and retries from the job's latest record."""
        self.record = record
        self.status, self.error = record.status, (record.error or "")
        self.retries = retries_text(record)
        if isinstance(record, SweepRecord):
            self.state = (f"trials {record.trials_done} of {record.trials_total}"
                          if record.status == "running" else record.status)
            best = record.best
            self.verdict = f"best {record.metric} {best.metric:.4g}" if best else ""
            stopped = sum(record.stopped_on_diagnosis.values())
            if stopped:
                self.verdict += f"{'; ' if best else ''}{stopped} stopped on their diagnosis"
            return
        if record.status == "running" and record.progress.epoch:
            self.state = f"epoch {record.progress.epoch} of {epochs(record) or '?'}"
        elif record.status == "queued" and record.waiting:
            self.state = f"queued: {record.waiting}"
        else:
            self.state = record.status
        final = record.diagnosis.get("verdict") if record.diagnosis else None
        self.verdict = f"diagnosis {final}" if final else live_verdict(record.progress)

    def end(self, claims: list[Claim], *, status: str | None = None) -> None:
        self.claims, self.ended = claims, True
        if status is not None:
            self.status = self.state = status

    @property
    def held(self) -> tuple[int, int]:
        """(claims held, claims judged)."""
        judged = [held for *_, held in self.claims if held is not None]
        return sum(judged), len(judged)

    def claims_text(self) -> str:
        if not self.ended:
            return ""
        held, judged = self.held
        return f"{held} of {judged} claims held" if judged else "no expect:"

    def line(self) -> str:
        """The file's state on one line, as a log shows it."""
        state = self.state
        if self.ended and self.error and self.status in ("failed", "cancelled"):
            first = self.error.splitlines()[0] if self.error.strip() else ""
            state += f": {first[:120]}" if first else ""
        parts = [state, self.verdict, self.retries, self.claims_text()]
        return f"{self.file}: " + ", ".join(part for part in parts if part)


def retries_text(record: JobRecordSeen) -> str:
    """Whether the service retried the job, and after what: "retried after worker_lost"."""
    causes = [str(entry.cause if isinstance(entry, AttemptEntry) else
                  entry.get("cause", "unknown")) for entry in record.attempt_log]
    if not causes:
        return ""
    times = "" if len(causes) == 1 else f" {len(causes)} times"
    return f"retried{times} after {', '.join(causes)}"


def summary(runs: list[FileRun]) -> str:
    """How far the whole check is: files done, in flight and waiting, claims held so far."""
    done = [run for run in runs if run.ended]
    waiting = sum(run.status == "waiting" for run in runs)
    held = sum(run.held[0] for run in done)
    judged = sum(run.held[1] for run in done)
    return (f"{len(done)} of {len(runs)} files done, {len(runs) - len(done) - waiting} "
            f"running or queued, {waiting} waiting; claims held so far: {held} of {judged}")


class PlainProgress:
    """A line per change of a file's state, for a log: submitted, queued, running, each epoch
    (at most every PLAIN_EVERY_S), retried, ended with its claims and the whole check's
    progress."""

    def __init__(self) -> None:
        self._printed: dict[str, tuple[str, str, float]] = {}  # file -> (status, line, when)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *_: object) -> None:
        return None  # nothing held open: each line was printed as it came

    def submitted(self, run: FileRun) -> None:
        _say(f"{run.file}: submitted {'sweep ' if run.sweep else ''}{run.job_id}")
        self._printed[run.file] = (run.status, run.line(), time.monotonic())

    def refresh(self, runs: list[FileRun]) -> None:
        now = time.monotonic()
        for run in runs:
            if run.status == "waiting":
                continue
            line = run.line()
            status, printed, when = self._printed.get(run.file, ("", "", 0.0))
            if line == printed:
                continue
            if status == run.status and not run.ended and now - when < PLAIN_EVERY_S:
                continue  # only the epoch moved: told again in a while
            self._printed[run.file] = (run.status, line, now)
            _say(f"{line}  [{summary(runs)}]" if run.ended else line)


class LiveProgress:
    """A table redrawn in place: one row per file, in flight first, then ended, then waiting;
    as many as the terminal has room for, and the whole check's progress under them."""

    def __init__(self) -> None:
        self._live = Live(console=console, refresh_per_second=4, transient=True,
                          vertical_overflow="crop")

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._live.__exit__(kind, value, trace)

    def submitted(self, run: FileRun) -> None:
        _say(f"{run.file}: submitted {'sweep ' if run.sweep else ''}{run.job_id}")

    def refresh(self, runs: list[FileRun]) -> None:
        self._live.update(self.view(runs))

    @staticmethod
    def view(runs: list[FileRun]) -> Group:
        table = Table(Column("file", overflow="fold"), Column("job", no_wrap=True),
                      Column("state", overflow="fold"), Column("verdict", overflow="fold"),
                      Column("claims held", no_wrap=True), Column("retries", overflow="fold"))
        order = sorted(runs, key=lambda run: (run.ended, run.status == "waiting"))
        room = max(3, console.size.height - 6)  # borders, header, the summary line
        for run in order[:room]:
            held, judged = run.held
            claims = (f"{held} of {judged}" if judged else "-") if run.ended else ""
            style = ("red" if run.ended and (held < judged or run.status != "succeeded")
                     else "green" if run.ended else None)
            table.add_row(run.file, (run.job_id or "")[:8], run.state, run.verdict, claims,
                          run.retries, style=style)
        more = len(order) - room
        return Group(table, Text(summary(runs) + (f" ({more} more files not shown)"
                                                  if more > 0 else "")))


def _say(line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)
