"""Datasets: built-ins are seeded and split deterministically; files only below the roots."""

from __future__ import annotations

import os

import numpy as np
import pytest

from services.contract.sections import DataSpec
from workers.data import DataError, builtin_datasets, load_data

NAMES = ["digits", "xor", "circles", "moons", "spirals", "blobs", "function"]


@pytest.mark.parametrize("name", NAMES)
def test_builtin_is_deterministic_and_split_as_asked(name, tmp_path):
    spec = DataSpec(name=name, val_fraction=0.25, test_fraction=0.1)
    a, b = load_data(spec, "auto", [str(tmp_path)]), load_data(spec, "auto", [str(tmp_path)])
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_val, b.y_val)
    total = len(a.x_train) + len(a.x_val) + len(a.x_test)
    assert len(a.x_val) == round(total * 0.25) and len(a.x_test) == round(total * 0.1)
    assert a.x_train.dtype == np.float32
    other = load_data(DataSpec(name=name, params={"seed": 1}), "auto", [str(tmp_path)])
    assert not np.array_equal(other.x_train[:20], a.x_train[:20])


def test_tasks_and_shapes():
    digits = load_data(DataSpec(name="digits"), "auto", [])
    assert digits.task == "classification" and digits.output_dim == 10
    assert digits.x_train.shape[1:] == (64,)
    image = load_data(DataSpec(name="digits", params={"layout": "image"}), "auto", [])
    assert image.x_train.shape[1:] == (1, 8, 8)
    xor = load_data(DataSpec(name="xor"), "auto", [])
    assert xor.task == "binary" and xor.y_train.shape[1:] == (1,)
    fn = load_data(DataSpec(name="function", params={"fn": "abs"}), "auto", [])
    assert fn.task == "regression"
    assert np.allclose(fn.y_train, np.abs(fn.x_train))
    as_classes = load_data(DataSpec(name="xor"), "classification", [])
    assert as_classes.output_dim == 2 and as_classes.y_train.ndim == 1
    with pytest.raises(DataError) as info:
        load_data(DataSpec(name="function"), "classification", [])
    assert info.value.loc == ("task",)


def test_catalog_params_are_checked():
    assert {d.name for d in builtin_datasets()} >= set(NAMES)
    with pytest.raises(DataError) as info:
        load_data(DataSpec(name="spirals", params={"classes": 1}), "auto", [])
    assert info.value.loc == ("data", "params", "classes")


def test_npz_with_given_splits(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "set.npz", x=rng.normal(size=(50, 3, 4)), y=rng.integers(0, 3, 50),
             x_val=rng.normal(size=(10, 3, 4)), y_val=rng.integers(0, 3, 10))
    bundle = load_data(DataSpec(source="file", path="set.npz"), "auto", [str(tmp_path)])
    assert bundle.x_train.shape == (50, 3, 4) and bundle.x_val.shape == (10, 3, 4)
    assert bundle.task == "classification" and bundle.x_test is None


def test_csv_with_target_column(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,target\n" + "\n".join(
        f"{i},{i * 2},{i % 2}" for i in range(20)))
    bundle = load_data(DataSpec(source="file", path="t.csv"), "auto", [str(tmp_path)])
    assert bundle.x_train.shape[1] == 2 and bundle.output_dim == 2


@pytest.mark.parametrize("content, message", [
    (None, "no file"),
    (b"not an archive", "not a readable .npz"),
])
def test_bad_files_name_the_path_field(tmp_path, content, message):
    if content is not None:
        (tmp_path / "bad.npz").write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        load_data(DataSpec(source="file", path="bad.npz"), "auto", [str(tmp_path)])
    assert info.value.loc == ("data", "path")


def test_mismatched_arrays_are_refused(tmp_path):
    np.savez(tmp_path / "m.npz", x=np.zeros((5, 2)), y=np.zeros(4))
    with pytest.raises(DataError, match="must match"):
        load_data(DataSpec(source="file", path="m.npz"), "auto", [str(tmp_path)])
    np.savez(tmp_path / "n.npz", x=np.zeros((5, 2)))
    with pytest.raises(DataError, match="no array 'y'"):
        load_data(DataSpec(source="file", path="n.npz"), "auto", [str(tmp_path)])


def test_paths_cannot_escape_the_roots(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    np.savez(outside / "secret.npz", x=np.zeros((5, 2)), y=np.zeros(5))
    os.symlink(outside / "secret.npz", root / "link.npz")
    for path in ("../outside/secret.npz", str(outside / "secret.npz"), "link.npz"):
        with pytest.raises(DataError, match="outside the data roots") as info:
            load_data(DataSpec(source="file", path=path), "auto", [str(root)])
        assert info.value.loc == ("data", "path")
