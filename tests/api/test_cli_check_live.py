"""`layerwise check` keeps people informed, against a real server: a line per change in a log
(stdout not a terminal), a live table in a terminal, at most --parallel jobs in flight, a job
past its --timeout cancelled, --set applied to every file, and --failed rerunning only the
files that did not hold (from .layerwise/check-last.json in the current directory)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.utils.specs import mlp_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SMALL = {"training": {"epochs": 2}, "model": {"hidden": [16]}}


def _check(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`layerwise check` run in `cwd` (where it keeps its last run), stdout a pipe."""
    return subprocess.run([sys.executable, "-m", "api.cli", "check", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=400, env={
                              **os.environ, "COLUMNS": "250", "PYTHONPATH": str(ROOT), **env})


def _write(path: Path, document: dict) -> str:
    path.write_text(yaml.safe_dump(document))
    return path.name


def _submitted(stdout: str) -> dict[str, str]:
    """file -> job id, from the "FILE: submitted ID" lines."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stdout)  # a terminal's escapes out
    return dict(re.findall(r"([\w.-]+): submitted (?:sweep )?([0-9a-f]{32})", plain))


def test_one_at_a_time_a_line_per_change_and_failed_reruns_only_what_did_not_hold(
        server, tmp_path):
    # Long enough (a few seconds) to be seen running.
    holds = _write(tmp_path / "holds.yaml", mlp_spec(model={"hidden": [16]}, training={
        "epochs": 60}, expect={"metric": "train/loss", "<": 100}))
    fails = _write(tmp_path / "fails.yaml", mlp_spec(**SMALL, expect={
        "metric": "val/accuracy", ">=": 0.999}))

    first = _check(tmp_path, holds, fails, "--parallel", "1", "--url", server.url)

    assert first.returncode == 1, first.stdout + first.stderr
    lines = first.stdout.splitlines()
    ids = _submitted(first.stdout)
    assert list(ids) == [holds, fails]
    # The log tells each file's progress before the table: its epochs, its end and its claims.
    assert any(re.match(rf"{holds}: (running|epoch \d+ of 60)", line) for line in lines), \
        first.stdout
    ended = next(n for n, line in enumerate(lines) if line.startswith(f"{holds}: succeeded"))
    assert "1 of 1 claims held" in lines[ended]
    assert "1 of 2 files done" in lines[ended] and "claims held so far: 1 of 1" in lines[ended]
    # --parallel 1: the second file is submitted only once the first has ended, and the
    # service saw it so.
    assert ended < next(n for n, line in enumerate(lines) if line.startswith(f"{fails}: submit"))
    client = server.client()
    first_job, second_job = client.get(ids[holds]), client.get(ids[fails])
    assert second_job.created_at >= first_job.finished_at
    assert "0 of 1 claims held" in next(line for line in lines
                                        if line.startswith(f"{fails}: succeeded"))
    assert "`layerwise check --failed` reruns the 1 file that did not hold" in first.stdout
    state = json.loads((tmp_path / ".layerwise" / "check-last.json").read_text())["files"]
    assert state == {holds: {"outcome": "held", "job_id": ids[holds]},
                     fails: {"outcome": "failed", "job_id": ids[fails]}}

    # --failed reruns fails.yaml alone; --set changes it (a claim that now holds).
    again = _check(tmp_path, "--failed", "--set", 'expect={metric: train/loss, "<": 100}',
                   "--url", server.url)
    assert list(_submitted(again.stdout)) == [fails], again.stdout + again.stderr
    assert again.returncode == 0 and "all 1 held" in again.stdout, again.stdout + again.stderr
    rerun = client.get(_submitted(again.stdout)[fails])
    assert "train/loss" in json.dumps(rerun.spec["expect"])
    # The rerun's outcome joined the last run's: nothing is left to rerun.
    state = json.loads((tmp_path / ".layerwise" / "check-last.json").read_text())["files"]
    assert state[fails]["outcome"] == "held" and state[holds]["job_id"] == ids[holds]
    done = _check(tmp_path, "--failed", "--url", server.url)
    assert done.returncode == 0 and "nothing to rerun" in done.stdout, done.stdout
    assert not _submitted(done.stdout)


def test_failed_without_a_last_run_says_so(tmp_path):
    answer = _check(tmp_path, "--failed", "--url", "http://127.0.0.1:9")
    assert answer.returncode == 2
    assert "no last `layerwise check` run here" in answer.stderr
    assert "layerwise check FILE..." in answer.stderr


def test_a_terminal_gets_a_live_table_and_a_late_job_is_cancelled(server, tmp_path):
    # Minutes of training (small batches, many epochs): cut off by --timeout.
    slow = _write(tmp_path / "slow.yaml", mlp_spec(model={"hidden": [64]}, training={
        "epochs": 10000, "batch_size": 8}, expect={"metric": "train/loss", "<": 100}))

    # TTY_COMPATIBLE and TTY_INTERACTIVE: rich draws for a terminal as it would on a tty.
    answer = _check(tmp_path, slow, "--timeout", "20", "--url", server.url,
                    TTY_COMPATIBLE="1", TTY_INTERACTIVE="1")

    assert answer.returncode == 1, answer.stdout + answer.stderr
    out = answer.stdout
    # The live table (its header, the job's epochs, the summary under it), redrawn in place.
    assert "claims held" in out and "retries" in out and "\x1b[" in out
    assert re.search(r"epoch \d+ of 10000", out), out
    assert "0 of 1 files done, 1 running or queued, 0 waiting; claims held so far: 0 of 0" in out
    job_id = _submitted(out)[slow]
    assert "did not end within 20 s (--timeout); cancelled" in out
    assert server.client().get(job_id).status == "cancelled"
