"""A sweep whose driver was lost and retried says so: its record carries the attempt log the
store keeps, and the live sweep view prints one line per attempt with its cause."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from api.cli.output import sweep_view
from services.lifecycle import Status
from services.store import JobStore
from services.sweep_table import SweepRecord


def test_a_sweeps_record_and_view_tell_each_attempts_cause(tmp_path: Path):
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    job, _ = store.create(spec={"search": {"metric": "val/loss"}}, spec_hash="h", name="s",
                          project="p", job_type="sweep", param_count=4)
    store.move(job.id, Status.RUNNING)
    entry = {"attempt": 1, "cause": "node_lost", "detail": "the node died", "at": "now",
             "counted": True}
    store.end_attempt(job.id, lambda current: (Status.QUEUED, entry, {}))
    record = SweepRecord.of(store.get(job.id))
    assert record.attempt_log == [entry]
    console = Console(record=True, width=120)
    console.print(sweep_view(record))
    assert "attempt 1 ended early: node_lost (counted): the node died" in console.export_text()
