"""A job's worker log: what the worker running the job said (Python logging, stdout, stderr, a
line per epoch, the error that ended an attempt), kept where the service can read it back:
`<home>/logs/<job id>.log`.

Ray keeps a worker's output in its own session files, named by worker process, not by job, and
gone with the session; the service's home is where a job's checkpoint already goes (a volume
every node shares, on a cluster), so its log goes beside it. Every attempt appends to the same
file under a header line. The file is bounded: past `PART_BYTES` it is renamed to `.log.1` (the
older part, replaced) and a new one begins, so a job keeps at most twice that; the folder keeps
the newest `KEEP_JOBS` jobs' logs.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, cast

PART_BYTES = 512 * 1024  # one part of a job's log; the job keeps this one and the one before
KEEP_JOBS = 2000  # the newest jobs' logs kept in <home>/logs; older ones are removed
# A job id as the service makes them, or a sweep trial's `<sweep id>/<trial id>`: never a path
# that leaves the folder.
JOB_ID = re.compile(r"[0-9A-Za-z_-]{1,100}(/[0-9A-Za-z_-]{1,100})?")
# Loggers that may not propagate to the root (the service's JSON logging, MLflow's own): the
# log takes their records too.
OWN_HANDLERS = ("layerwise", "mlflow")


def log_path(home: str | Path, job_id: str) -> Path:
    if not JOB_ID.fullmatch(job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return Path(home, "logs", f"{job_id}.log")


class BoundedLog:
    """An append-only text file that rolls over into `<name>.1` at `part_bytes`."""

    def __init__(self, path: Path, *, part_bytes: int = PART_BYTES):
        self.path, self.part_bytes = path, part_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file = path.open("a", encoding="utf-8", errors="replace")
        self._size = self._file.tell()

    def write(self, text: str) -> None:
        if not text:
            return
        data = text.encode("utf-8", errors="replace")
        with self._lock:
            if self._file.closed:
                return
            if self._size and self._size + len(data) > self.part_bytes:
                self._file.close()
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                self._file = self.path.open("a", encoding="utf-8", errors="replace")
                self._size = 0
            if len(data) > self.part_bytes:  # one huge write: its end is what matters
                text = data[-self.part_bytes:].decode("utf-8", errors="replace")
            self._file.write(text)
            self._file.flush()  # the service reads it while the job runs
            self._size += len(data)

    def close(self) -> None:
        with self._lock:
            self._file.close()


class _Tee:
    """A stream that writes to its original and to the log; everything else (fileno, isatty,
    encoding) is the original's."""

    def __init__(self, original: TextIO, log: BoundedLog):
        self._original, self._log = original, log

    def write(self, text: str) -> int:
        self._log.write(text)
        return self._original.write(text)

    def flush(self) -> None:
        self._original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


class _LogHandler(logging.Handler):
    def __init__(self, log: BoundedLog):
        super().__init__(logging.INFO)
        self.log = log
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.log.write(self.format(record) + "\n")
        except Exception:  # a log line must never end the job
            self.handleError(record)


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


@contextmanager
def capturing(home: str | Path, job_id: str, *, node: str = "") -> Iterator[BoundedLog]:
    """While the job runs in this process: its logging records, stdout and stderr also go to
    its log file, under a header line for the attempt; an exception that ends it is written
    with its traceback (and raised on)."""
    path = log_path(home, job_id)
    _prune(path.parent)
    log = BoundedLog(path)
    log.write(f"=== {_stamp()} UTC: attempt started (pid {os.getpid()}"
              f"{', node ' + node[:12] if node else ''})\n")
    handler = _LogHandler(log)
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in OWN_HANDLERS
                                       if not logging.getLogger(name).propagate]
    for logger in loggers:
        logger.addHandler(handler)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = cast(TextIO, _Tee(stdout, log)), cast(TextIO, _Tee(stderr, log))
    try:
        yield log
    except BaseException as exc:
        log.write(f"=== {_stamp()} UTC: attempt ended with {type(exc).__name__}\n"
                  + "".join(traceback.format_exception(exc)))
        raise
    else:
        log.write(f"=== {_stamp()} UTC: attempt finished\n")
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        for logger in loggers:
            logger.removeHandler(handler)
        log.close()


def _prune(folder: Path) -> None:
    """Make room for one more: remove all but the newest KEEP_JOBS - 1 jobs' logs (by last
    write), both parts of each."""
    keep = KEEP_JOBS
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    logs = [e for e in entries if e.is_file() and e.name.endswith(".log")]
    if len(logs) < keep:
        return
    logs.sort(key=lambda e: e.stat().st_mtime, reverse=True)
    for old in logs[keep - 1:]:
        for name in (old.name, old.name + ".1"):
            Path(folder, name).unlink(missing_ok=True)


@dataclass(frozen=True)
class LogTail:
    lines: list[str]
    truncated: bool  # earlier lines exist that are not in `lines`
    size_bytes: int  # what the job's log holds now, both parts


def read_tail(home: str | Path, job_id: str, *, lines: int, max_bytes: int) -> LogTail | None:
    """The last `lines` lines of the job's log, at most `max_bytes` of it; None when the job
    has no log (it never started, or it ran before logs were kept or was pruned)."""
    path = log_path(home, job_id)
    parts = [p for p in (path.with_name(path.name + ".1"), path) if p.is_file()]
    if not parts:
        return None
    sizes = [p.stat().st_size for p in parts]
    chunks: list[bytes] = []
    wanted = max_bytes
    for part, size in reversed(list(zip(parts, sizes, strict=True))):
        if wanted <= 0:
            break
        with part.open("rb") as file:
            file.seek(max(0, size - wanted))
            chunk = file.read(wanted)
        chunks.insert(0, chunk)
        wanted -= len(chunk)
    data = b"".join(chunks)
    cut = len(data) < sum(sizes)
    text = data.decode("utf-8", errors="replace").splitlines()
    if cut and text:
        text = text[1:]  # the first line read from the middle is only its end
    return LogTail(lines=text[-lines:] if lines else [],
                   truncated=cut or len(text) > lines, size_bytes=sum(sizes))
