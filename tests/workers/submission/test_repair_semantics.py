"""Help means leaving the problem (`repair_outcome`), and repairing a job again returns its
pending or finished repair, or tries the next candidate (`repair.submit_repair`); a diverged
run whose data holds NaN is refused naming the file. On a real job store and the real dry
run, without Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.lifecycle import Status
from services.records import JobRecord
from services.settings import Settings
from services.store import JobStore
from tests.utils.specs import mlp_spec
from tests.workers.submission.test_repair import finished, ranked
from workers.submission import repair
from workers.submission.repair_outcome import helped, outcome, share_of_the_way


@pytest.mark.parametrize(("after", "baseline", "before", "verdict", "expected"), [
    (0.12, 0.10, 0.09, "not_learning", False),  # ten classes, 0.09 -> 0.12: still at chance
    (0.50, 0.10, 0.09, "not_learning", False),  # 0.4 of the way from the prior to 1.0
    (0.60, 0.10, 0.09, "not_learning", True),  # more than half the way
    (0.12, 0.10, 0.09, "healthy", True),  # out of its problem, whatever the metric
    (None, 0.10, 0.09, "diverged", False),  # diverged again: no metric
    (0.80, None, 0.40, "not_learning", True),  # no baseline: from its own metric (2/3)
    (0.80, None, None, "not_learning", False),  # nothing to measure the way from
])
def test_accuracy_helps_when_it_goes_half_the_way_from_the_prior_to_perfect(
        after, baseline, before, verdict, expected):
    assert helped(after, "higher", baseline=baseline, before=before,
                  after_verdict=verdict) is expected


def test_a_loss_helps_when_it_goes_half_the_way_from_the_baseline_loss_to_0():
    # A regression whose mean predictor's MSE is 800: 7x worse than it, then 4x, is no help.
    assert not helped(3200.0, "lower", baseline=800.0, before=5600.0)
    assert not helped(500.0, "lower", baseline=800.0, before=5600.0)
    assert helped(300.0, "lower", baseline=800.0, before=5600.0)
    assert share_of_the_way(0.0, 800.0, "lower") == 1.0
    assert share_of_the_way(1.0, 1.0, "higher") == 1.0  # already perfect, still perfect


def test_the_outcome_reads_the_baseline_of_the_diagnoses():
    """A run that diverged has no metric and perhaps no baseline: the repair's own
    diagnosis (the same training targets) gives it."""
    found = outcome({"error": "nan"}, {"verdict": "diverged", "baseline": None},
                    {"val/accuracy": 0.3}, {"verdict": "slow",
                                            "baseline": {"accuracy": 0.1, "loss": 2.3}})
    assert found == {"metric": "val/accuracy", "better": "higher", "before": None,
                     "after": 0.3, "baseline": 0.1, "helped": False}


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")


def _ask(record: JobRecord, store: JobStore, settings: Settings) -> tuple[JobRecord, bool]:
    return repair.submit_repair(record, store=store, settings=settings, owner="anonymous",
                                cluster=None, idempotency_key=None)


def _end(store: JobStore, job: JobRecord, accuracy: float, verdict: str) -> None:
    store.move(job.id, Status.RUNNING)
    store.move(job.id, Status.SUCCEEDED, result={"val/accuracy": accuracy},
               diagnosis={"verdict": verdict, "findings": [], "baseline": {"accuracy": 0.1}})


def test_repairing_again_returns_the_pending_or_helpful_repair_or_tries_the_next(
        store, settings):
    first = finished(store, mlp_spec(), ranked({"optimizer.lr": 0.1}, {"optimizer.lr": 0.01},
                                               {"optimizer.lr": 0.03}),
                     result={"val/accuracy": 0.11})
    one, created = _ask(first, store, settings)
    assert created and one.repair_candidate == 0
    assert _ask(first, store, settings) == (one, False)  # queued: that one
    _end(store, one, 0.14, "not_learning")  # finished, still at chance: the next candidate
    two, created = _ask(first, store, settings)
    assert created and two.repair_candidate == 1 and two.spec["optimizer"]["lr"] == 0.01
    _end(store, two, 0.9, "overfitting")  # helped (0.89 of the way): asking returns it
    assert _ask(first, store, settings)[0].id == two.id
    assert _ask(first, store, settings)[1] is False


def test_when_every_candidate_failed_to_help_asking_again_is_refused(store, settings):
    first = finished(store, mlp_spec(), ranked({"optimizer.lr": 0.1}),
                     result={"val/accuracy": 0.11})
    one, _ = _ask(first, store, settings)
    _end(store, one, 0.12, "not_learning")
    with pytest.raises(repair.RepairRefused, match="1 fixes suggested .* none helped"):
        _ask(first, store, settings)


def _non_finite(path: str) -> dict[str, Any]:
    return {"verdict": "bad_data", "baseline": None, "findings": [
        {"verdict": "bad_data", "layers": [], "fix": {}, "alternatives": [], "evidence": {
            "fault": "non_finite_data", "fix_in_file": f"the targets (y) of {path} hold NaN"}},
        {"verdict": "diverged", "layers": [], "fix": {}, "alternatives": [],
         "evidence": {"step": 3}}]}


def test_a_run_that_diverged_on_nan_data_is_refused_naming_the_file(store):
    job = finished(store, mlp_spec(), _non_finite("holes.npz"), status=Status.FAILED)
    with pytest.raises(repair.RepairRefused, match="blames the data file.*holes.npz"):
        repair.repaired_spec(job, store)
