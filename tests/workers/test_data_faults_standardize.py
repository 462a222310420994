"""`data.standardize`: fitted on the training split only, applied to every split, recorded on
the bundle; constant features divided by 1; targets only for a regression."""

from __future__ import annotations

import numpy as np
import pytest

from services.contract.sections import DataSpec
from services.contract.spec import ExperimentSpec
from tests.utils.settings import worker_settings
from tests.utils.specs import mlp_spec
from workers.data import DataError, load_data
from workers.data.bundle import DataBundle
from workers.data.standardize import standardize
from workers.data.statistics import measure
from workers.diagnostics.verdicts.data_faults import submission_diagnosis
from workers.run import run_experiment

RNG = np.random.default_rng(0)


def shifted_bundle(task: str = "regression") -> DataBundle:
    """Train ~ N(5, 2), val ~ N(8, 3), and a feature constant at 7; targets ~ 800 +- 500."""
    x_train = np.c_[RNG.normal(5, 2, size=(400, 2)), np.full(400, 7.0)].astype(np.float32)
    x_val = np.c_[RNG.normal(8, 3, size=(100, 2)), np.full(100, 7.0)].astype(np.float32)
    y_train = RNG.normal(800, 500, size=(400, 1)).astype(np.float32)
    y_val = RNG.normal(800, 500, size=(100, 1)).astype(np.float32)
    if task != "regression":
        y_train, y_val = (y_train[:, 0] > 800).astype(np.int64), (y_val[:, 0] > 800).astype(
            np.int64)
    return DataBundle(x_train, y_train, x_val, y_val, None, None, task, 1)


def test_the_fit_is_the_training_splits_and_every_split_gets_it():
    data = standardize(shifted_bundle(), "both")
    assert np.allclose(data.x_train[:, :2].mean(axis=0), 0, atol=1e-5)
    assert np.allclose(data.x_train[:, :2].std(axis=0), 1, atol=1e-4)
    # val was rescaled with train's mean and std, not its own: its statistics differ
    assert np.all(data.x_val[:, :2].mean(axis=0) > 1.0)
    assert np.all(data.x_val[:, :2].std(axis=0) > 1.2)
    assert np.all(data.x_train[:, 2] == 0) and np.all(data.x_val[:, 2] == 0)  # std 0 -> / 1
    fitted = data.standardization
    assert fitted is not None and set(fitted) == {"inputs", "targets"}
    assert fitted["inputs"]["mean"][:2] == pytest.approx([5, 5], abs=0.3)
    assert fitted["inputs"]["std"][2] == 1.0
    assert fitted["targets"]["mean"][0] == pytest.approx(800, abs=60)
    assert abs(float(data.y_train.mean())) < 1e-4 and data.y_val.dtype == np.float32


def test_none_changes_nothing_and_inputs_leave_the_targets():
    data = shifted_bundle()
    raw = data.x_train.copy()
    assert standardize(data, "none").standardization is None
    assert np.array_equal(data.x_train, raw)
    inputs = standardize(shifted_bundle(), "inputs")
    assert set(inputs.standardization or {}) == {"inputs"}
    assert float(inputs.y_train.mean()) > 100  # the targets as they were


def test_targets_of_a_classifier_are_refused_naming_the_field():
    with pytest.raises(DataError) as refused:
        standardize(shifted_bundle("classification"), "targets")
    assert refused.value.loc == ("data", "standardize")
    assert "regression" in refused.value.msg and "data.standardize: inputs" in refused.value.msg


def test_the_loader_standardizes_a_builtin_dataset_on_its_training_split():
    plain = load_data(DataSpec(name="blobs"), "auto", [])
    scaled = load_data(DataSpec(name="blobs", standardize="inputs"), "auto", [])
    assert np.allclose(scaled.x_train.mean(axis=0), 0, atol=1e-5)
    assert not np.allclose(scaled.x_val.mean(axis=0), 0, atol=1e-3)
    mean = np.asarray((scaled.standardization or {})["inputs"]["mean"])
    assert np.allclose(mean, plain.x_train.mean(axis=0), atol=1e-5)


def unscaled_regression(rows: int = 500) -> dict[str, np.ndarray]:
    """One input up to 30 and targets ~ 800 +- 500 (a quadratic of it): both off the unit
    scale, as in the outside benchmark's deepfd-52800582."""
    x = RNG.uniform(0, 30, size=(rows, 1))
    y = 300 + x ** 2 + RNG.normal(0, 20, size=(rows, 1))
    return {"x": x.astype(np.float32), "y": y.astype(np.float32)}


def test_inputs_and_targets_both_unscaled_make_one_finding_with_one_setting():
    train, val = unscaled_regression(), unscaled_regression(50)
    data = DataBundle(train["x"], train["y"], val["x"], val["y"], None, None, "regression", 1)
    spec = ExperimentSpec.model_validate(mlp_spec(data={"source": "file", "name": None,
                                                        "path": "d.npz"}, loss="mse"))
    diagnosis = submission_diagnosis(measure(data), spec)
    assert diagnosis is not None
    [finding] = diagnosis.findings  # one cause, not one per part
    assert finding.evidence["fault"] == "unscaled_inputs_and_targets"
    assert finding.evidence["target_mean"] > 100 and finding.evidence["feature_std_max"] > 5
    assert finding.fix == {"data.standardize": "both"} and finding.alternatives == []


def test_a_standardized_regression_trains_at_the_unit_scale_through_the_worker(settings):
    """The worker path (file data, `data.standardize: both`): the loss and the baseline are on
    the standardized scale, so the repaired run is judged where its targets are."""
    np.savez(settings.data_root_list[0] + "/quad.npz", **unscaled_regression())
    spec = mlp_spec(data={"source": "file", "name": None, "path": "quad.npz",
                          "standardize": "both"},
                    model={"hidden": [32, 32], "activation": "sigmoid"}, loss="mse",
                    optimizer={"name": "adam", "lr": 0.003},
                    training={"epochs": 15, "batch_size": 32})
    result = run_experiment("job-std", spec, worker_settings(settings))
    baseline = result["diagnosis"]["baseline"]
    assert baseline["kind"] == "mean_predictor" and baseline["loss"] == pytest.approx(1, abs=0.2)
    assert result["val/loss"] < 0.5, result["val/loss"]  # not ~ 500^2
    assert result["diagnosis"]["evidence"]["data"]["target_std"] == pytest.approx(1, abs=0.01)
