"""A sweep's check pays a dry run only for values that can change what a dry run checks: a grid
of seeds (or names, tags, priorities) is validated field by field, not dry-run once per value,
while a grid of widths still is, and a bad seed is still refused with its path."""

from __future__ import annotations

import pytest

from services.caps import SubmissionLimits
from services.contract.spec_errors import SpecInvalid
from services.contract.sweep_spec import SweepSpec
from tests.utils.specs import mlp_spec
from workers.submission import sweep_space
from workers.submission.pipeline import check_sweep

LIMITS = SubmissionLimits(max_trials_per_sweep=200, max_sweep_dry_runs=10)


def _sweep(space: dict) -> SweepSpec:
    return SweepSpec.model_validate({"base": mlp_spec(training={"epochs": 1}), "space": space,
                                     "search": {"algorithm": "grid", "num_samples": 1}})


def test_a_grid_of_64_seeds_costs_no_dry_run_per_seed(monkeypatch):
    sweep = _sweep({"training.seed": {"type": "grid", "values": list(range(64))}})
    assert sweep_space.work_errors(sweep, LIMITS) == []
    checked: list[int] = []
    real_probe = sweep_space._probe

    def counting(*args, **kwargs):
        if not kwargs.get("validate_only"):
            checked.append(1)
        return real_probe(*args, **kwargs)

    monkeypatch.setattr(sweep_space, "_probe", counting)
    check_sweep(sweep, [], LIMITS)
    assert checked == []  # the base's dry run is not a probe; no seed was dry-run


def test_a_grid_of_widths_still_counts_each_value():
    sweep = _sweep({"model.hidden": {"type": "grid", "values": [[n] for n in range(8, 8 + 12)]}})
    errors = sweep_space.work_errors(sweep, LIMITS)
    assert [e.loc for e in errors] == [("space",)]
    assert "model.hidden: 12" in errors[0].msg


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
