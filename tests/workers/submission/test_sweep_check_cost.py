"""A sweep's check dry-runs each configuration a dry run can tell apart once: its count, and
the dry runs it takes, are the distinct dry-run keys (`dry_run_key`) of the base, the values
and the largest configuration. A grid of seeds (or priorities) is one dry run; a grid of
widths still counts each width, and a bad seed is still refused with its path."""

from __future__ import annotations

from typing import Any

import pytest

from services.caps import SubmissionLimits
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecInvalid
from services.contract.sweep_spec import SweepSpec
from tests.utils.specs import mlp_spec
from workers.submission import dry_run as dry_runs
from workers.submission import sweep_space
from workers.submission.pipeline import check_sweep

LIMITS = SubmissionLimits(max_trials_per_sweep=200, max_sweep_dry_runs=10)


def _sweep(space: dict, algorithm: str = "grid", num_samples: int = 1) -> SweepSpec:
    return SweepSpec.model_validate({"base": mlp_spec(training={"epochs": 1}), "space": space,
                                     "search": {"algorithm": algorithm,
                                                "num_samples": num_samples}})


def _distinct_keys(sweep: SweepSpec, path: str, values: list[Any]) -> int:
    """Counted here from the specs themselves: the base's key and each value's."""
    specs = [sweep.base, *(ExperimentSpec.model_validate(sweep.trial_payload({path: v}))
                           for v in values)]
    return len({dry_runs.dry_run_key(spec) for spec in specs})


@pytest.fixture
def dry_runs_made(monkeypatch) -> list[str]:
    """The dry runs actually run (not answered by the cache of passed ones), by spec hash."""
    with dry_runs._passed_lock:
        dry_runs._passed_cache.clear()
    made: list[str] = []
    real = dry_runs._dry_run

    def counted(spec, *args, **kwargs):
        made.append(spec.spec_hash())
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(dry_runs, "_dry_run", counted)
    return made


def test_a_grid_of_64_seeds_is_one_dry_run(dry_runs_made):
    sweep = _sweep({"training.seed": {"type": "grid", "values": list(range(64))}})
    assert sweep_space.work_errors(sweep, LIMITS) == []
    count = sweep_space.dry_run_count(sweep)
    assert (count.total, count.per_path, count.largest) == (1, {"training.seed": 0}, False)
    assert count.total == _distinct_keys(sweep, "training.seed", list(range(64)))
    checked = check_sweep(sweep, [], LIMITS)
    assert checked.trials == 64
    assert len(dry_runs_made) == count.total  # the base's; no seed was dry-run again


def test_a_random_search_over_seeds_and_priorities_passes_the_cap():
    sweep = _sweep({"training.seed": {"type": "randint", "low": 0, "high": 10_000},
                    "priority": {"type": "grid", "values": list(range(20))}},
                   algorithm="random", num_samples=3)
    assert sweep_space.work_errors(sweep, LIMITS) == []
    assert sweep_space.dry_run_count(sweep).total == 1


def test_the_count_and_the_dry_runs_made_are_the_distinct_keys(dry_runs_made):
    widths = [[32, 32], [8], [16], [8]]  # the base's width and a repeat add nothing
    sweep = _sweep({"model.hidden": {"type": "grid", "values": widths},
                    "training.seed": {"type": "grid", "values": list(range(30))}})
    count = sweep_space.dry_run_count(sweep)
    assert count.total == _distinct_keys(sweep, "model.hidden", widths) == 3
    assert count.per_path == {"model.hidden": 2, "training.seed": 0}
    check_sweep(sweep, [], LIMITS)
    assert len(dry_runs_made) == len(set(dry_runs_made)) == count.total


def test_a_grid_of_widths_beyond_the_cap_is_still_refused():
    widths = [[n] for n in range(8, 8 + 12)]
    sweep = _sweep({"model.hidden": {"type": "grid", "values": widths}})
    errors = sweep_space.work_errors(sweep, LIMITS)
    assert [e.loc for e in errors] == [("space",)]
    total = _distinct_keys(sweep, "model.hidden", widths)
    assert total == 13
    assert errors[0].msg.startswith(f"checking this sweep takes {total} dry runs (")
    assert "model.hidden: 12" in errors[0].msg and "the cap is 10" in errors[0].msg


def test_counting_stops_after_the_path_that_passes_the_cap():
    widths = [[n] for n in range(8, 8 + 12)]
    sweep = _sweep({"model.hidden": {"type": "grid", "values": widths},
                    "optimizer.lr": {"type": "grid", "values": [0.1, 0.01]}})
    (error,) = sweep_space.work_errors(sweep, LIMITS)
    assert "at least 13 dry runs" in error.msg
    assert "not counted further: optimizer.lr" in error.msg


def test_a_seed_out_of_range_is_still_refused_with_its_path():
    sweep = _sweep({"training.seed": {"type": "grid", "values": [1, 2**40]}})
    with pytest.raises(SpecInvalid) as caught:
        check_sweep(sweep, [], LIMITS)
    assert ("space", "training.seed") in [e.loc for e in caught.value.errors]


class _SmallNode:
    """A cluster whose largest node has 100 MB for tasks."""

    def largest_node(self) -> dict[str, float]:
        return {"CPU": 4.0, "memory": 100e6}

    def capacity(self) -> dict[str, float]:
        return {"cpus": 4.0, "gpus": 0.0}

    def wake(self) -> None:
        """Nothing is queued by a check."""


def test_a_trial_too_large_for_the_largest_node_is_refused_with_its_value():
    sweep = _sweep({"model.hidden": {"type": "grid", "values": [[32], [4096, 4096]]}})
    with pytest.raises(SpecInvalid) as caught:
        check_sweep(sweep, [], LIMITS, _SmallNode())
    (error,) = caught.value.errors
    assert error.loc == ("space", "model.hidden")
    assert "value [4096, 4096]" in error.msg and "the cluster's largest node" in error.msg
    check_sweep(_sweep({"model.hidden": {"type": "grid", "values": [[32], [64]]}}), [], LIMITS,
                _SmallNode())  # what fits passes
