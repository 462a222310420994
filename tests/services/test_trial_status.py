"""A sweep trial's status: one reading of it (services.contract.trial_status) that the record,
the counts, the best trial and the CLI's live table all share."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rich.console import Console

from services.contract.trial_status import (
    TrialStatus,
    counts_final_metric,
    ended_status,
    label_counts,
    status_counts,
    status_label,
    trial_status,
)
from services.records import JobRecord, Progress
from services.sweep_table import SweepRecord, best_trial, cancel_live_trials


@pytest.mark.parametrize(("finished", "reason", "cancelled", "status"), [
    (True, None, False, "succeeded"),
    (True, "early_stopping", False, "succeeded"),  # the spec's own early stopping: it finished
    (True, "diagnosis: vanishing", False, "stopped"),
    (True, "diagnosis: vanishing", True, "stopped"),  # it ended before the cancel did
    (False, None, False, "early_stopped"),
    (False, None, True, "cancelled"),
])
def test_a_trial_tune_ended_gets_one_status(finished, reason, cancelled, status):
    assert ended_status(finished=finished, stop_reason=reason, cancelled=cancelled) == status


@pytest.mark.parametrize(("row", "status", "label"), [
    ({"status": "succeeded"}, "succeeded", "succeeded"),
    ({"status": "stopped", "stop_reason": "diagnosis: symmetric"}, "stopped",
     "stopped: symmetric"),
    # A table stored before `stopped` existed, and a row whose trial reported its stop
    # before Tune ended it: both read as stopped.
    ({"status": "succeeded", "stop_reason": "diagnosis: vanishing"}, "stopped",
     "stopped: vanishing"),
    ({"status": "running", "stop_reason": "diagnosis: vanishing"}, "stopped",
     "stopped: vanishing"),
    ({"status": "early_stopped"}, "early_stopped", "stopped: scheduler"),
    ({"status": "failed", "stop_reason": "diagnosis: vanishing"}, "failed", "failed"),
    ({"status": "cancelled"}, "cancelled", "cancelled"),
    ({"status": "succeeded", "stop_reason": "early_stopping"}, "succeeded", "succeeded"),
    ({}, "queued", "queued"),
    ({"status": "exploded"}, "queued", "queued"),
])
def test_a_row_reads_as_one_status_and_label(row, status, label):
    assert trial_status(row) == status
    assert status_label(row) == label


ROWS = [
    {"trial_id": "a", "status": "succeeded", "metric": 0.8},
    {"trial_id": "b", "status": "stopped", "stop_reason": "diagnosis: vanishing", "metric": 0.99},
    {"trial_id": "c", "status": "running", "stop_reason": "diagnosis: vanishing", "metric": 0.1},
    {"trial_id": "d", "status": "stopped", "stop_reason": "diagnosis: symmetric", "metric": 0.1},
    {"trial_id": "e", "status": "early_stopped", "metric": 0.95},
    {"trial_id": "f", "status": "failed", "error": "boom"},
    {"trial_id": "g", "status": "running", "metric": 0.5},
    {"trial_id": "h", "status": "queued"},
]


def test_the_counts_list_every_outcome_in_one_order():
    assert status_counts(ROWS) == {"succeeded": 1, "stopped": 3, "early_stopped": 1,
                                   "failed": 1, "cancelled": 0, "running": 1, "queued": 1}
    assert label_counts(ROWS) == {"succeeded": 1, "stopped: symmetric": 1,
                                  "stopped: vanishing": 2, "stopped: scheduler": 1,
                                  "failed": 1, "running": 1, "queued": 1}
    assert [r["trial_id"] for r in ROWS if counts_final_metric(r)] == ["a", "b", "c", "d"]


def test_the_best_trial_trained_to_the_end_and_is_never_one_stopped_on_its_diagnosis():
    assert best_trial(ROWS, "max")["trial_id"] == "a"  # not b (0.99) nor e (0.95)
    live = [r for r in ROWS if r["trial_id"] != "a"]
    assert best_trial(live, "max")["trial_id"] == "e"  # while none succeeded
    only_stopped = [r for r in ROWS if r["trial_id"] in ("b", "d")]
    assert best_trial(only_stopped, "max") is None
    assert best_trial([r for r in ROWS if r["trial_id"] in ("b", "d", "g")], "min")[
        "trial_id"] == "g"


def test_a_cancel_leaves_the_stopped_trials_stopped():
    table = {r["trial_id"]: r["status"] for r in cancel_live_trials(ROWS)}
    assert table["c"] == "running"  # its stop reason says it had ended
    assert trial_status(next(r for r in cancel_live_trials(ROWS) if r["trial_id"] == "c")) \
        == TrialStatus.STOPPED
    assert (table["g"], table["h"], table["a"]) == ("cancelled", "cancelled", "succeeded")


def _record(rows: list[dict]) -> SweepRecord:
    job = JobRecord(
        id="s1", job_type="sweep", name="books", project="tests", status="running",
        spec={"search": {"metric": "val/accuracy", "mode": "max"}}, spec_hash="0",
        priority=0, attempts=1, max_attempts=1, owner="", sweep_id=None, param_count=9,
        created_at=datetime.now(UTC), started_at=None, finished_at=None, progress=Progress(),
        error=None, result={"trials": rows, "trials_total": 9,
                            "best": best_trial(rows, "max")},
        diagnosis=None, mlflow_run_id=None, mlflow_experiment_id=None)
    return SweepRecord.of(job)


def test_the_record_and_the_live_header_count_the_stopped_trials_as_ended():
    from api.cli.output import sweep_view

    rows = [*ROWS, {"trial_id": "i", "status": "running", "metric": 0.2}]
    record = _record(rows)

    assert [t.status for t in record.trials] == [
        "succeeded", "stopped", "stopped", "stopped", "early_stopped", "failed", "running",
        "queued", "running"]
    assert (record.trials_done, record.trials_total) == (6, 9)
    assert (record.trials_stopped, record.trials_failed) == (4, 1)
    assert record.trial_statuses == label_counts(rows)
    console = Console(width=200, record=True)
    console.print(sweep_view(record))
    shown = console.export_text()
    assert "trials 6/9, 4 stopped, 1 failed  best val/accuracy 0.8 (a)" in shown
    assert shown.count("stopped: vanishing") == 2 and "stopped: scheduler" in shown
