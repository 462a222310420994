"""An .npz's own validation and test splits are used as given; what it does not give is cut
from x/y by the spec's fractions (workers.data.load_data)."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from services.contract.sections import DataSpec
from tests.utils.settings import worker_settings
from tests.utils.specs import mlp_spec
from workers.data import DataError, load_data
from workers.run import run_experiment

N = 60


def _arrays(given: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Rows tell where they came from: x[:, 0] is the row's id, unique across every array."""
    sizes = {"": N, "_val": 11, "_test": 7}
    arrays, first = {}, 0
    for suffix in ("", *(f"_{name}" for name in given)):
        ids = np.arange(first, first + sizes[suffix], dtype=np.float64)
        first += sizes[suffix]
        arrays[f"x{suffix}"] = np.stack([ids, ids % 3], axis=1)
        arrays[f"y{suffix}"] = (ids % 3).astype(np.int64)
    return arrays


def _ids(x: np.ndarray | None) -> list[int]:
    return [] if x is None else sorted(int(v) for v in x[:, 0])


@pytest.mark.parametrize("given", [("val",), ("test",), ("val", "test")])
def test_given_splits_are_used_as_given_and_the_rest_is_cut_from_x(tmp_path, given):
    arrays = _arrays(given)
    np.savez(tmp_path / "set.npz", **arrays)
    spec = DataSpec(source="file", path="set.npz", val_fraction=0.25, test_fraction=0.1)
    bundle = load_data(spec, "auto", [str(tmp_path)])

    for name in given:  # exactly the file's arrays, in their order
        assert np.array_equal(getattr(bundle, f"x_{name}"), arrays[f"x_{name}"])
        assert np.array_equal(getattr(bundle, f"y_{name}"), arrays[f"y_{name}"])
    cut = {"val": round(N * 0.25), "test": round(N * 0.1)}
    from_x = [name for name in ("val", "test") if name not in given]
    for name in from_x:  # cut from x/y by its own fraction
        assert len(getattr(bundle, f"x_{name}")) == cut[name]
    # x/y is split without loss or overlap between training and what was cut from it
    parts = [bundle.x_train, *(getattr(bundle, f"x_{name}") for name in from_x)]
    assert sorted(i for part in parts for i in _ids(part)) == list(range(N))
    assert np.array_equal(bundle.y_train, bundle.x_train[:, 1].astype(np.int64))
    if not from_x:
        assert np.array_equal(bundle.x_train, arrays["x"])  # all of x, as it is
    assert set(bundle.splits()) == {"train", "val", "test"}


def test_a_given_split_may_hold_a_class_the_training_set_lacks(tmp_path):
    arrays = _arrays(("test",))
    arrays["y_test"][0] = 5
    np.savez(tmp_path / "set.npz", **arrays)
    bundle = load_data(DataSpec(source="file", path="set.npz"), "auto", [str(tmp_path)])
    assert bundle.output_dim == 6


@pytest.mark.parametrize("present, missing", [("x_val", "y_val"), ("y_test", "x_test")])
def test_half_a_given_split_names_the_missing_array(tmp_path, present, missing):
    arrays = _arrays(("val", "test"))
    del arrays[missing]
    np.savez(tmp_path / "half.npz", **arrays)
    with pytest.raises(DataError, match=missing) as info:
        load_data(DataSpec(source="file", path="half.npz"), "auto", [str(tmp_path)])
    assert info.value.loc == ("data", "path")


def test_a_run_on_a_file_with_only_a_test_split_logs_test_metrics(settings):
    np.savez(settings.data_root_list[0] + "/test_only.npz", **_arrays(("test",)))
    worker = worker_settings(settings)
    spec = {**mlp_spec(model={"hidden": [4]}, training={"epochs": 1},
                       diagnostics={"plots": False}),
            "data": {"source": "file", "path": "test_only.npz"}}
    reports: list[dict] = []
    result = run_experiment("job-test-only", spec, worker, reports.append)
    assert {"test/loss", "test/accuracy"} <= set(result)
    run = MlflowClient(tracking_uri=settings.tracking_uri).get_run(reports[0]["mlflow_run_id"])
    assert run.data.metrics["test/loss"] == pytest.approx(result["test/loss"])
