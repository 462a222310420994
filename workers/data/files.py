"""Datasets read from the user's files, only below the configured data roots."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from workers.data.bundle import DataError

LOC = ("data", "path")


def resolve_data_path(path: str, roots: list[str]) -> Path:
    """The real path of `path` if it lies below one of `roots` (relative paths are tried under
    each root in turn). Symlinks are resolved first, so a link cannot escape a root.

    Raises:
        DataError: outside every root, or missing.
    """
    real_roots = [Path(os.path.realpath(r)) for r in roots]
    candidates = [Path(path)] if os.path.isabs(path) else [r / path for r in real_roots]
    for candidate in candidates:
        real = Path(os.path.realpath(candidate))
        if not any(real == root or root in real.parents for root in real_roots):
            continue
        if real.is_file():
            return real
    inside = any(
        any(Path(os.path.realpath(c)) == r or r in Path(os.path.realpath(c)).parents
            for r in real_roots) for c in candidates)
    if not inside:
        raise DataError(LOC, f"{path!r} is outside the data roots {roots}; put the file below "
                             "one of them (LAYERWISE_DATA_ROOTS) and give its relative path")
    raise DataError(LOC, f"no file {path!r} below the data roots {roots}")


def load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as exc:  # numpy raises several types for a damaged archive
        raise DataError(LOC, f"{path.name} is not a readable .npz archive: {exc}") from exc
    for required in ("x", "y"):
        if required not in arrays:
            raise DataError(LOC, f"{path.name} has no array {required!r}; an .npz needs arrays "
                                 f"'x' and 'y' (found {sorted(arrays)})")
    for prefix in ("", "_val", "_test"):
        x, y = arrays.get(f"x{prefix}"), arrays.get(f"y{prefix}")
        if (x is None) != (y is None):
            raise DataError(LOC, f"{path.name}: x{prefix} and y{prefix} must come together")
        if x is not None and y is not None:
            if len(x) != len(y) or len(x) == 0:
                raise DataError(LOC, f"{path.name}: x{prefix} has {len(x)} rows but y{prefix} "
                                     f"has {len(y)}; they must match and not be empty")
            if x.dtype.kind not in "fiub":
                raise DataError(LOC, f"{path.name}: x{prefix} must be numeric, got {x.dtype}")
    shapes = {tuple(arrays[k].shape[1:]) for k in ("x", "x_val", "x_test") if k in arrays}
    if len(shapes) > 1:
        raise DataError(LOC, f"{path.name}: x, x_val and x_test differ in shape {sorted(shapes)}")
    return arrays


def load_csv(path: Path) -> dict[str, np.ndarray]:
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(LOC, f"{path.name} is not a readable CSV file: {exc}") from exc
    if not rows or "target" not in rows[0]:
        raise DataError(LOC, f"{path.name} needs a header row with a 'target' column")
    header, body = rows[0], [r for r in rows[1:] if r]
    if not body:
        raise DataError(LOC, f"{path.name} has a header but no rows")
    try:
        table = np.array(body, dtype=np.float64)
    except ValueError as exc:
        raise DataError(LOC, f"{path.name} must hold numbers only: {exc}") from exc
    target = header.index("target")
    x = np.delete(table, target, axis=1).astype(np.float32)
    y = table[:, target]
    return {"x": x, "y": y.astype(np.int64) if np.all(y == np.round(y)) else y}


def read_text(path: Path) -> str:
    """A .txt corpus for a language model, as UTF-8 text."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(LOC, f"{path.name} is not readable UTF-8 text: {exc}") from exc


def load_file(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".npz":
        return load_npz(path)
    if path.suffix == ".csv":
        return load_csv(path)
    raise DataError(LOC, f"unsupported file type {path.suffix!r}; use .npz, .csv or .txt")
