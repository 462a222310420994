"""Loading a spec's data: built-in generators or the user's files, split deterministically."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import ValidationError

from workers.data import (  # noqa: F401  (registers the built-in datasets)
    patterns,
    sequences,
    tabular,
)
from workers.data.bundle import DataBundle, DataError, split, targets_for_task
from workers.data.files import check_arrays, load_file, read_text, resolve_data_path
from workers.data.registry import builtin_dataset, builtin_datasets
from workers.data.standardize import standardize

__all__ = ["DataBundle", "DataError", "TaskMismatch", "builtin_datasets", "load_data"]

# The splits an .npz may give itself, each as x_<name> and y_<name>.
GIVEN = ("val", "test")


def load_data(data: Any, task: str, data_roots: list[str], *, max_bytes: int | None = None,
              max_classes: int | None = None) -> DataBundle:
    """Load the data a spec's `data` section describes, targets shaped for `task`.

    An .npz holds `x`, `y` and, optionally, `x_val`/`y_val` and `x_test`/`y_test`: a split
    the file gives is used as given, one it does not is cut from `x`/`y` (`_given_splits`).

    Args:
        data: the spec's DataSpec.
        task: the spec's task, or "auto" for the data's own.
        data_roots: directories file datasets may be read from.
        max_bytes: the most a data file may hold (LAYERWISE_MAX_DATA_BYTES), checked from its
            size and headers before it is read; None: the loaders' default.
        max_classes: the most classes a file's labels may make (LAYERWISE_MAX_CLASSES);
            None: not capped.
    Raises:
        DataError: with the spec path of what is wrong and how to fix it.
    """
    if data.source == "builtin":
        x, y, natural, extra, seed = _generate(data)
    else:
        path = resolve_data_path(data.path, data_roots)
        if path.suffix == ".txt":
            arrays = {}
            text = read_text(path, max_bytes=max_bytes)
            x, y, natural, extra, seed = sequences.text_file(text, data.params)
        else:
            arrays = load_file(path, max_bytes=max_bytes)
            x, y, seed, extra = arrays["x"], arrays["y"], 0, {}
            natural = "classification" if y.dtype.kind in "iub" else "regression"
            # before the task's fit, whose refusal of float labels names no value
            check_arrays(path.name, arrays, natural if task == "auto" else task,
                         max_classes=max_classes)
    task = natural if task == "auto" else task
    _check_task(natural, task, y)
    y, output_dim = targets_for_task(y, task)
    x = x.astype(np.float32)
    if data.source == "file" and any(f"{a}_{name}" in arrays for a in "xy" for name in GIVEN):
        bundle = _given_splits(arrays, x, y, data, task, output_dim)
    else:
        bundle = split(x, y, val_fraction=data.val_fraction, test_fraction=data.test_fraction,
                       seed=seed, task=task, output_dim=output_dim, extra=extra)
    return standardize(bundle, data.standardize)  # fitted on the training split only


def _generate(data: Any):
    entry = builtin_dataset(data.name)
    if entry is None:
        known = sorted(d.name for d in builtin_datasets())
        raise DataError(("data", "name"), f"unknown dataset {data.name!r}; known: {known}")
    try:
        params = entry.params_cls.model_validate(data.params)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DataError(("data", "params", *first["loc"]), f"{first['msg']} (dataset "
                        f"{data.name!r}; GET /v1/catalog shows its params)") from exc
    x, y, natural, extra = entry.generate(params)
    return x, y, natural, extra, params.seed


def _check_task(natural: str, task: str, y: np.ndarray) -> None:
    if task == natural:
        return
    if task == "binary" and natural == "classification" and len(np.unique(y)) <= 2:
        return
    if task == "classification" and natural == "binary":
        return
    if task == "regression" and natural in ("classification", "binary"):
        return
    raise TaskMismatch(natural, len(np.unique(y)) if natural != "regression" else 0,
                       f"task {task!r} does not fit this data, whose task is {natural!r}; "
                       "use task: auto")


class TaskMismatch(DataError):
    """The spec's task does not fit the data: at `task`, with the data's own task and its
    number of classes (for a refusal that names the output and loss that fit it)."""

    def __init__(self, natural: str, classes: int, msg: str):
        super().__init__(("task",), msg)
        self.natural, self.classes = natural, classes


def _given_splits(arrays: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, data: Any,
                  task: str, output_dim: int) -> DataBundle:
    """An .npz's own `x_val`/`y_val` and `x_test`/`y_test`, used as given; a split the file
    does not give is cut from `x`/`y` by its fraction (val_fraction, test_fraction) as for a
    file without any, and a given split's fraction is ignored. With both given, `x`/`y` is the
    training set as it is, in its own order."""
    given = {name: _given_part(arrays, name, task) for name in GIVEN
             if f"x_{name}" in arrays or f"y_{name}" in arrays}
    if len(given) == len(GIVEN):
        bundle = DataBundle(x, y, *given["val"], None, None, task, output_dim, {})
    else:
        bundle = split(x, y, val_fraction=0.0 if "val" in given else data.val_fraction,
                       test_fraction=0.0 if "test" in given else data.test_fraction,
                       seed=0, task=task, output_dim=output_dim)
        if "val" in given:
            bundle.x_val, bundle.y_val = given["val"]
    if "test" in given:
        bundle.x_test, bundle.y_test = given["test"]
    if task == "classification":  # a class may appear only in a given split
        bundle.output_dim = max(output_dim, *(int(part_y.max()) + 1
                                              for _, part_y in given.values()))
    return bundle


def _given_part(arrays: dict[str, np.ndarray], name: str, task: str
                ) -> tuple[np.ndarray, np.ndarray]:
    for have, want in ((f"x_{name}", f"y_{name}"), (f"y_{name}", f"x_{name}")):
        if want not in arrays:
            raise DataError(("data", "path"), f"the file has {have!r} but no {want!r}; an .npz "
                                              f"gives a split as both arrays, or neither")
    part_y, _ = targets_for_task(arrays[f"y_{name}"], task)
    return arrays[f"x_{name}"].astype(np.float32), part_y
