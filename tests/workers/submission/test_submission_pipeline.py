"""Each submission rule is written once and read by every side that needs it: the resource fit
by the submission and the dispatcher, the metric keys by the early-stopping check, the sweep's
metric check and (through the loop's own names) the training loop, and the data by the dry run
and the worker. Without Ray: the cluster is a stand-in."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import yaml

from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecInvalid
from services.contract.sweep_spec import SweepSpec
from services.store import JobStore
from tests.utils.specs import merge, mlp_spec
from tests.utils.training import EpochRecorder, trainer_for
from workers.prepare import load_bundle, prepare
from workers.runtime.dispatcher import Dispatcher, LaunchRefused
from workers.submission import pipeline
from workers.submission.pipeline import check_experiment

LARGEST = {"CPU": 4.0, "GPU": 1.0, "ssd": 1.0, "memory": 1e9}
CAPACITY = {"cpus": 8.0, "gpus": 1.0}


class StandIn:
    """A cluster with this largest node and CAPACITY in all."""

    def __init__(self, largest: dict[str, float] | None = None):
        self.largest = largest or LARGEST

    def largest_node(self) -> dict[str, float]:
        return dict(self.largest)

    def capacity(self) -> dict[str, float]:
        return dict(CAPACITY)


@pytest.mark.parametrize("resources, largest, fits", [
    ({"cpus": 4}, LARGEST, True),
    ({"cpus": 4.5}, LARGEST, False),
    ({"cpus": 0.1 + 0.2}, {**LARGEST, "CPU": 0.3}, True),  # float error is not a shortage
    ({"gpus": 1}, LARGEST, True),
    ({"gpus": 1.5}, LARGEST, False),
    ({"custom": {"ssd": 1}}, LARGEST, True),
    ({"custom": {"ssd": 2}}, LARGEST, False),
    ({"custom": {"tpu": 1}}, LARGEST, False),
    ({"cpus": 2, "gpus": 0.5, "custom": {"ssd": 0.5}}, LARGEST, True),
])
def test_the_submission_and_the_dispatcher_agree_on_what_no_node_can_run(
        settings, resources, largest, fits):
    spec = mlp_spec(resources=resources)
    cluster = StandIn(largest)
    refused_at_submission = _refused(lambda: pipeline.resources(
        ExperimentSpec.model_validate(spec), cluster))
    store = JobStore(settings.job_store_url)
    record, _ = store.create(spec=spec, spec_hash="h", name="fit", project="tests")
    dispatcher = Dispatcher(store, settings)
    cpus, gpus = float(resources.get("cpus", 1.0)), float(resources.get("gpus", 0.0))
    refused_at_launch = _refused(lambda: dispatcher._experiment_task(record, cpus, gpus,
                                                                     cluster.largest_node()))
    assert refused_at_submission == refused_at_launch == (not fits)


def _refused(call) -> bool:
    try:
        call()
    except (SpecInvalid, LaunchRefused):
        return True
    return False


def test_data_parallel_workers_together_are_fitted_to_the_cluster():
    spec = ExperimentSpec.model_validate(mlp_spec(resources={"cpus": 4, "workers": 3}))
    with pytest.raises(SpecInvalid) as caught:
        pipeline.resources(spec, StandIn())
    assert [e.loc for e in caught.value.errors] == [("resources", "workers")]
    assert "3 workers x 4 CPU need 12 CPU but the cluster has 8" in str(caught.value)
    pipeline.resources(ExperimentSpec.model_validate(
        mlp_spec(resources={"cpus": 4, "workers": 2})), StandIn())


def test_a_sweeps_base_is_fitted_as_an_experiment_and_named_under_base():
    base = mlp_spec(resources={"gpus": 2})
    with pytest.raises(SpecInvalid) as experiment:
        pipeline.resources(ExperimentSpec.model_validate(base), StandIn())
    sweep = SweepSpec.model_validate({"base": base, "space": {
        "optimizer.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1}}})
    with pytest.raises(SpecInvalid) as swept:
        pipeline.resources(sweep, StandIn())
    assert [(("base", *e.loc), e.msg) for e in experiment.value.errors] == [
        (e.loc, e.msg) for e in swept.value.errors]


# -- the metric keys ---------------------------------------------------------------------------
def _example(name: str, **overrides) -> dict:
    with open(f"examples/{name}.yaml") as f:
        return merge(yaml.safe_load(f), {"training": {"epochs": 1}, **overrides})


@pytest.mark.parametrize("spec", [
    mlp_spec(training={"epochs": 1}),
    mlp_spec(training={"epochs": 1}, regularization={"l2": 1e-4}),
    mlp_spec(training={"epochs": 1}, data={"name": "function"}),
    _example("hopfield-recall"),
], ids=["classification", "penalty", "regression", "hopfield"])
def test_the_keys_the_dry_run_expects_are_the_ones_the_loop_logs(spec):
    dry = check_experiment(ExperimentSpec.model_validate(spec), [])
    assert dry.metrics is not None
    recorder = EpochRecorder()
    trainer_for(dry.spec.model_dump(mode="json"), callbacks=[recorder]).fit()
    logged = {k for k in recorder.metrics[0] if k.split("/")[0] in ("train", "val")}
    assert set(dry.metrics.keys(["train", "val"])) == logged


def _sweep_on(metric: str, **base: object) -> SweepSpec:
    return SweepSpec.model_validate({
        "base": mlp_spec(data={"name": "xor", "params": {"n": 64}}, model={"hidden": [4]},
                         **base),
        "space": {"optimizer.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1}},
        "search": {"algorithm": "random", "num_samples": 1, "metric": metric, "mode": "min"}})


def test_a_sweep_and_early_stopping_accept_the_same_metrics():
    penalized = {"regularization": {"l2": 1e-4}}
    for base, accepted in (({}, False), (penalized, True)):
        sweep = _sweep_on("train/penalty", **base)
        stopping = merge(sweep.base.model_dump(mode="json"), {"regularization": {
            "early_stopping": {"patience": 2, "monitor": "train/penalty"}}})
        assert _refused(lambda s=sweep: pipeline.check_sweep(s, [])) is not accepted
        assert _refused(lambda s=stopping: check_experiment(
            ExperimentSpec.model_validate(s), [])) is not accepted


def test_a_sweep_metric_the_run_does_not_log_names_the_ones_it_does():
    with pytest.raises(SpecInvalid) as caught:
        pipeline.check_sweep(_sweep_on("val/f1"), [])
    assert caught.value.errors[0].msg == (
        "a binary run logs val/loss and val/accuracy, not 'val/f1'")


# -- the data ----------------------------------------------------------------------------------
def test_the_dry_run_and_the_worker_load_the_data_the_same_way(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(40, 3)),
             y=np.arange(40) % 2)
    spec = ExperimentSpec.model_validate(mlp_spec(data={"source": "file", "name": None,
                                                        "path": "d.npz"}))
    roots, cap = [str(tmp_path)], pipeline.DEFAULT_LIMITS.max_data_bytes
    check_experiment(spec, roots)
    bundle, _, _ = prepare(spec, roots, torch.device("cpu"), max_data_bytes=cap)
    assert bundle is load_bundle(spec, roots, cap)  # the dry run's, from the one cache
    np.savez(tmp_path / "d.npz", x=np.zeros((30, 3)), y=np.arange(30) % 2)
    os.utime(tmp_path / "d.npz", (1, 1))  # another modification time: read again
    again, _, _ = prepare(spec, roots, torch.device("cpu"), max_data_bytes=cap)
    assert again is not bundle and len(again.x_train) < len(bundle.x_train)
