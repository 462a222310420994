"""Bad data is named as the cause at submission (the file, the array, the first bad row), not
left to fail the run as a learning rate or a torch shape error; a job's memory is estimated
from the meta device and capped; a run whose data holds NaN says so when it diverges."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from services.caps import CapExceeded, SubmissionLimits
from services.contract.sections import DataSpec
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecInvalid
from tests.utils.training import trainer_for
from workers.data import DataError, load_data
from workers.submission.pipeline import check_experiment
from workers.training.loop import Diverged

RNG = np.random.default_rng(0)
X = RNG.normal(size=(16, 4)).astype(np.float32)
LABELS = np.arange(16) % 3


def _with(x: np.ndarray, row: int, value: float) -> np.ndarray:
    x = x.copy()
    x[row, 0] = value
    return x


@pytest.mark.parametrize("arrays, task, named", [
    ({"x": _with(X, 5, math.nan), "y": LABELS}, "auto", "bad.npz: x at row 5 holds NaN"),
    ({"x": X, "y": _with(X[:, :1], 2, math.inf).ravel()}, "auto",
     "bad.npz: y at row 2 holds inf"),
    ({"x": X.astype(np.float64) * 1e300, "y": LABELS}, "auto", "beyond float32's range"),
    ({"x": X, "y": np.stack([LABELS, LABELS], axis=1)}, "auto",
     "bad.npz: y has shape (16, 2), but task classification takes one integer label per row"),
    ({"x": X, "y": LABELS - 1}, "auto", "bad.npz: y at row 0 holds the negative label -1"),
    ({"x": X, "y": LABELS + 0.5}, "classification",
     "bad.npz: y at row 0 holds a non-integer label (0.5"),
    ({"x": X, "y": LABELS, "x_val": X[:4], "y_val": np.array([0, 1, 2, 10_000_000])}, "auto",
     "bad.npz: y_val holds labels up to 10000000, i.e. 10,000,001 classes; the cap "
     "(LAYERWISE_MAX_CLASSES) is 100,000"),
    ({"x": X, "y": LABELS}, "binary", "bad.npz: y at row 2 holds the label 2"),
])
def test_bad_arrays_are_refused_naming_the_file_and_the_array(tmp_path, arrays, task, named):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as info:
        load_data(DataSpec(source="file", path="bad.npz"), task, [str(tmp_path)],
                  max_classes=100_000)
    assert info.value.loc == ("data", "path")
    assert named in info.value.msg, info.value.msg


def test_a_csv_names_its_column_and_row(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,target\n1,2,0\n3,nan,1\n")
    with pytest.raises(DataError, match=r"t.csv: a feature column of data row 2 holds NaN"):
        load_data(DataSpec(source="file", path="t.csv"), "auto", [str(tmp_path)])


def test_good_files_still_load(tmp_path):
    np.savez(tmp_path / "ok.npz", x=X, y=LABELS)
    bundle = load_data(DataSpec(source="file", path="ok.npz"), "auto", [str(tmp_path)],
                       max_classes=3)
    assert bundle.output_dim == 3


def _file_spec(**overrides: object) -> ExperimentSpec:
    spec = {"name": "mem", "data": {"source": "file", "path": "ok.npz", "val_fraction": 0.25},
            "model": {"kind": "mlp", "hidden": [16]}, "optimizer": {"name": "adam"},
            "training": {"epochs": 1, "batch_size": 8}, **overrides}
    return ExperimentSpec.model_validate(spec)


def test_the_memory_estimate_matches_a_hand_count(tmp_path):
    np.savez(tmp_path / "ok.npz", x=X, y=LABELS)
    memory = check_experiment(_file_spec(), [str(tmp_path)]).memory
    params = (4 * 16 + 16) + (16 * 3 + 3)  # two Linear layers: 4 -> 16 -> 3 classes
    assert memory.parameters == memory.gradients == params * 4
    assert memory.optimizer_state == 2 * params * 4  # Adam's two moments
    # What autograd keeps of a batch of 8: the input (8x4), the ReLU's output (8x16, which
    # the output layer reads too), the log-softmax (8x3), the int64 targets and the loss;
    # and the step's output, the logits (8x3).
    kept = 8 * (4 + 16 + 3 + 3) * 4 + 8 * 8 + 4
    assert memory.activations == kept
    assert memory.data == X.nbytes + LABELS.astype(np.int64).nbytes
    sgd = check_experiment(_file_spec(optimizer={"name": "sgd", "momentum": 0.9},
                                      training={"epochs": 1, "batch_size": 4}),
                           [str(tmp_path)]).memory
    assert sgd.optimizer_state == params * 4
    assert sgd.activations == math.ceil(kept / 2)  # measured on 8, scaled to the batch of 4


def test_a_job_over_the_memory_cap_or_the_largest_node_is_refused(tmp_path):
    np.savez(tmp_path / "ok.npz", x=X, y=LABELS)
    total = check_experiment(_file_spec(), [str(tmp_path)]).memory.total
    with pytest.raises(CapExceeded) as info:
        check_experiment(_file_spec(training={"epochs": 1, "batch_size": 9}), [str(tmp_path)],
                         SubmissionLimits(max_job_memory_bytes=total))
    error = info.value.errors[0]
    assert "LAYERWISE_MAX_JOB_MEMORY_BYTES" in error.msg and "activations 1,013 bytes" in error.msg
    # Adam's state (2 x 524 bytes) is the largest part here: the refusal points at it
    assert error.loc == ("optimizer", "name") and "most of it is optimizer state" in error.msg

    class SmallNode:
        def largest_node(self) -> dict[str, float]:
            return {"CPU": 4.0, "memory": float(total - 1)}

        def capacity(self) -> dict[str, float]:
            return {"cpus": 4.0, "gpus": 0.0}

    with pytest.raises(SpecInvalid, match="the cluster's largest node has for tasks"):
        check_experiment(_file_spec(), [str(tmp_path)], cluster=SmallNode())


def test_a_wide_output_layer_is_over_the_memory_cap_before_it_is_built(tmp_path):
    """170 M parameters fit the parameter cap; with gradients and Adam they need 2.7 GB."""
    np.savez(tmp_path / "ok.npz", x=X, y=np.r_[LABELS[:-1], 9_999])
    spec = _file_spec(model={"kind": "mlp", "hidden": [17_000]})
    with pytest.raises(CapExceeded, match=r"estimated peak of 2\.\d GiB") as info:
        check_experiment(spec, [str(tmp_path)], SubmissionLimits(max_job_memory_bytes=2**30))
    assert "LAYERWISE_MAX_JOB_MEMORY_BYTES" in info.value.errors[0].msg


def test_a_run_diverging_on_nan_data_blames_the_data():
    trainer = trainer_for({"name": "nan", "data": {"name": "xor"},
                           "model": {"kind": "mlp", "hidden": [8]},
                           "training": {"epochs": 1, "batch_size": 8}})
    trainer.splits["train"].x[3, 0] = torch.nan
    with pytest.raises(Diverged, match=r"NaN/inf in x \(row 3 of the training split\); "
                                       "clean the data"):
        trainer.fit()
