"""A job's worker log: what the process prints and logs while it runs the job goes to the job's
file, under a header per attempt; the file stays bounded, and its end reads back."""

from __future__ import annotations

import logging
import os
import sys

import pytest

from workers.runtime import job_log
from workers.runtime.job_log import BoundedLog, capturing, log_path, read_tail


def test_stdout_stderr_logging_and_the_error_go_to_the_jobs_log(tmp_path):
    with pytest.raises(RuntimeError), capturing(tmp_path, "job1", node="n" * 56):
        print("a line on stdout")
        print("a line on stderr", file=sys.stderr)
        logging.getLogger("layerwise.worker").warning("a logged line")
        raise RuntimeError("the attempt broke")
    with capturing(tmp_path, "job1"):  # a second attempt appends
        print("second attempt")
    print("after the job")  # the streams are the process's own again
    lines = read_tail(tmp_path, "job1", lines=100, max_bytes=10_000).lines
    text = "\n".join(lines)
    assert lines[0].endswith(f"attempt started (pid {os.getpid()}, node "
                             f"{'n' * 12})")
    for said in ("a line on stdout", "a line on stderr",
                 "WARNING layerwise.worker: a logged line",
                 "attempt ended with RuntimeError", "RuntimeError: the attempt broke",
                 "second attempt"):
        assert said in text
    assert lines[-1].endswith("attempt finished")
    assert "after the job" not in text
    assert sum("attempt started" in line for line in lines) == 2


def test_the_log_is_bounded_and_its_end_reads_back(tmp_path):
    path = log_path(tmp_path, "big")
    log = BoundedLog(path, part_bytes=1000)
    for n in range(500):
        log.write(f"line {n}\n")
    log.close()
    assert path.stat().st_size <= 1000
    assert path.with_name("big.log.1").stat().st_size <= 1000
    assert sorted(p.name for p in path.parent.iterdir()) == ["big.log", "big.log.1"]
    tail = read_tail(tmp_path, "big", lines=3, max_bytes=10_000)
    assert tail.lines == ["line 497", "line 498", "line 499"] and tail.truncated
    # Fewer bytes than the lines asked: whole lines only, the newest.
    short = read_tail(tmp_path, "big", lines=1000, max_bytes=40)
    assert short.lines[-1] == "line 499" and len(short.lines) < 6
    assert all(line.startswith("line ") for line in short.lines)
    assert read_tail(tmp_path, "none", lines=3, max_bytes=100) is None


def test_old_jobs_logs_are_pruned_and_ids_never_leave_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(job_log, "KEEP_JOBS", 3)
    for n in range(5):
        with capturing(tmp_path, f"job{n}"):
            pass
        os.utime(log_path(tmp_path, f"job{n}"), (1000 + n, 1000 + n))  # written in this order
    kept = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert kept == ["job2.log", "job3.log", "job4.log"]
    for bad in ("../x", "a/../../b", "", "a b"):
        with pytest.raises(ValueError, match="not a job id"):
            log_path(tmp_path, bad)
