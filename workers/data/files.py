"""Datasets read from the user's files, only below the configured data roots.

The API process reads these at submission (the dry run), so nothing here may let a small file
cost a lot: a path is checked as text before the filesystem sees it, and a file's size (an
.npz's uncompressed arrays, read from its headers) is capped before any of it is loaded.
Messages never show the server's data roots: a user learns only what they sent.
"""

from __future__ import annotations

import csv
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from workers.data.bundle import DataError

LOC = ("data", "path")
# Far above any real relative path; a longer one only costs the filesystem work (ENAMETOOLONG).
MAX_PATH_CHARS = 1024
# The default of services.settings' max_data_bytes (LAYERWISE_MAX_DATA_BYTES); callers that
# hold settings pass theirs as `max_bytes`.
DEFAULT_MAX_BYTES = 512_000_000
# The arrays an .npz may give (see load_npz); any other member is never decompressed.
NPZ_ARRAYS = ("x", "y", "x_val", "y_val", "x_test", "y_test")
_HOW_TO_NAME = ("give the file's path relative to a data root (LAYERWISE_DATA_ROOTS), "
                "e.g. 'sets/train.npz'")


def resolve_data_path(path: str, roots: list[str]) -> Path:
    """The real path of `path`, relative to one of `roots` (tried in turn), if it lies below
    that root. Symlinks are resolved first, so a link cannot escape a root.

    Raises:
        DataError: a NUL byte, too long, absolute, outside every root, missing, or a path the
            filesystem refuses.
    """
    _check_path_text(path)
    try:
        real_roots = [Path(os.path.realpath(r)) for r in roots]
        candidates = [Path(os.path.realpath(root / path)) for root in real_roots]
        inside = [c for c in candidates if any(_below(c, root) for root in real_roots)]
        for candidate in inside:
            if candidate.is_file():
                return candidate
    except (OSError, ValueError) as exc:  # ENAMETOOLONG, ELOOP, an unencodable character...
        raise DataError(LOC, f"the path cannot be opened ({_why(exc)}); {_HOW_TO_NAME}"
                        ) from None
    if not inside:
        raise DataError(LOC, f"{_show(path)} is outside the data roots; put the file below a "
                             f"data root and {_HOW_TO_NAME}")
    raise DataError(LOC, f"no file {_show(path)} below a data root; "
                         f"{_relative_form(path, real_roots)}")


def _relative_form(path: str, roots: list[Path]) -> str:
    """The fix for a missing file: a path that starts with a root's own name ('data/bars.npz'
    for the root data/) is read below that root, so say the form that finds the file."""
    first, *rest = Path(path).parts or ("",)
    for root in roots:
        if rest and first == root.name and (root / Path(*rest)).is_file():
            inner = Path(*rest).as_posix()
            return (f"data.path is relative to a data root, so write {_show(inner)}, not "
                    f"{_show(path)} (LAYERWISE_DATA_ROOTS)")
    return ("check its spelling and case; data.path is relative to a data root "
            "(LAYERWISE_DATA_ROOTS): a file bars.npz in the root is 'bars.npz', not "
            "'data/bars.npz'")


def _check_path_text(path: str) -> None:
    """Refusals that need no filesystem: these would otherwise raise from os calls (a 500)
    with the joined path, data root included, in the message."""
    if "\0" in path:
        raise DataError(LOC, f"the path contains a NUL byte; {_HOW_TO_NAME}")
    if len(path) > MAX_PATH_CHARS:
        raise DataError(LOC, f"the path has {len(path):,} characters, over the limit of "
                             f"{MAX_PATH_CHARS:,}; {_HOW_TO_NAME}")
    if os.path.isabs(path):
        # not echoed: an absolute path may spell out a data root
        raise DataError(LOC, f"the path is absolute, and data.path is read relative to a data "
                             f"root, so it is outside the data roots; {_HOW_TO_NAME}")


def _below(real: Path, root: Path) -> bool:
    return real == root or root in real.parents


def _show(path: str) -> str:
    return repr(path if len(path) <= 80 else path[:77] + "...")


def _why(exc: BaseException) -> str:
    """The error without the file name an OSError carries (it holds the real path)."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc) or type(exc).__name__


def _too_big(path: Path, what: str, size: int, cap: int) -> DataError:
    return DataError(LOC, f"{path.name} {what} {size:,} bytes, over the cap of {cap:,} bytes "
                          "(LAYERWISE_MAX_DATA_BYTES); use a smaller file (fewer rows, float32 "
                          "rather than float64) or ask the operator to raise "
                          "LAYERWISE_MAX_DATA_BYTES")


def _check_disk_size(path: Path, what: str, max_bytes: int | None) -> None:
    cap = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(LOC, f"{path.name} cannot be read: {_why(exc)}") from None
    if size > cap:
        raise _too_big(path, what, size, cap)


def load_npz(path: Path, *, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """The arrays of an .npz, after its zip and .npy headers show they fit `max_bytes`
    uncompressed (default DEFAULT_MAX_BYTES): a few KB of zeros can declare gigabytes.

    Raises:
        DataError: unreadable, over the cap, object arrays, or arrays that do not fit together.
    """
    cap = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    _check_disk_size(path, "is", cap)
    try:
        with zipfile.ZipFile(path) as archive:
            members = _npy_members(archive, path, cap)
            arrays = {}
            for name in NPZ_ARRAYS:
                if name in members:
                    with archive.open(members[name]) as stream:
                        arrays[name] = npy.read_array(stream, allow_pickle=False)
    except DataError:
        raise
    # encrypted members raise RuntimeError, unknown compression methods NotImplementedError
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, RuntimeError,
            NotImplementedError) as exc:
        raise DataError(LOC, f"{path.name} is not a readable .npz archive: {_why(exc)}; "
                             "write it with numpy.savez or numpy.savez_compressed") from None
    for required in ("x", "y"):
        if required not in arrays:
            raise DataError(LOC, f"{path.name} has no array {required!r}; an .npz needs arrays "
                                 f"'x' and 'y' (found {sorted(members)})")
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


def _npy_members(archive: zipfile.ZipFile, path: Path, cap: int) -> dict[str, zipfile.ZipInfo]:
    """The archive's .npy members by array name, checked from headers alone: the zip's sizes
    against `cap`, then each .npy header against its zip size (zipfile stops a member at its
    zip size, so once they agree the header's shape bounds what loading allocates)."""
    infos = archive.infolist()
    total = sum(info.file_size for info in infos)
    if total > cap:
        raise _too_big(path, "holds, uncompressed,", total, cap)
    members = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            continue  # not an array numpy.savez writes; never read
        name = info.filename[:-len(".npy")]
        with archive.open(info) as stream:
            declared = _npy_size(stream, path, name)
        if declared != info.file_size:
            raise DataError(LOC, f"{path.name}: array {name!r} declares {declared:,} bytes in "
                                 f"its .npy header but holds {info.file_size:,}; the archive "
                                 "is damaged or hand-made, write it with numpy.savez")
        members[name] = info
    return members


def _npy_size(stream, path: Path, name: str) -> int:
    """The bytes (header included) an .npy member's header says it holds; reads only the
    header."""
    version = npy.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = npy.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = npy.read_array_header_2_0(stream)
    else:
        raise DataError(LOC, f"{path.name}: array {name!r} is in .npy format {version}, which "
                             "is not read; save numeric arrays with numpy.savez")
    if dtype.hasobject:
        raise DataError(LOC, f"{path.name}: array {name!r} holds Python objects ({dtype}), "
                             "which would need pickle to load and are refused; save numeric "
                             "arrays (e.g. x.astype('float32'))")
    return stream.tell() + math.prod(shape) * dtype.itemsize


def load_csv(path: Path, *, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """A table with a header row and a 'target' column; the file's size on disk is capped at
    `max_bytes` (default DEFAULT_MAX_BYTES) before it is read."""
    _check_disk_size(path, "is", max_bytes)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(LOC, f"{path.name} is not a readable CSV file: {_why(exc)}") from None
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


def read_text(path: Path, *, max_bytes: int | None = None) -> str:
    """A .txt corpus for a language model, as UTF-8 text; the file's size on disk is capped at
    `max_bytes` (default DEFAULT_MAX_BYTES) before it is read."""
    _check_disk_size(path, "is", max_bytes)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(LOC, f"{path.name} is not readable UTF-8 text: {_why(exc)}") from None


def load_file(path: Path, *, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """An .npz or .csv file's arrays, refused without loading when over `max_bytes`."""
    if path.suffix == ".npz":
        return load_npz(path, max_bytes=max_bytes)
    if path.suffix == ".csv":
        return load_csv(path, max_bytes=max_bytes)
    raise DataError(LOC, f"unsupported file type {path.suffix!r}; use .npz, .csv or .txt")


# Where the loader's float32 copy of a value would be infinite.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# Tasks whose targets are class ids, one per example (or per step of a sequence).
_CLASS_TASKS = ("classification", "language_model")


def check_arrays(file: str, arrays: dict[str, np.ndarray], task: str, *,
                 max_classes: int | None = None) -> None:
    """What in a file's loaded arrays would fail the run later, and blame the optimizer or
    torch: values that are not finite numbers (in float32, as the model sees them), and
    labels a classifier cannot take (`task` is the spec's, or the data's own for auto). One
    numpy pass per check over arrays already under the byte cap.

    Raises:
        DataError: at data.path, naming the file, the array and the first bad row.
    """
    for name in NPZ_ARRAYS:
        if name in arrays:
            _check_finite(file, name, arrays[name])
    for suffix in ("", "_val", "_test"):
        x, y = arrays.get(f"x{suffix}"), arrays.get(f"y{suffix}")
        if x is None or y is None:
            continue
        if task in _CLASS_TASKS:
            _check_class_labels(file, f"y{suffix}", x, y, task, max_classes)
        elif task == "binary":
            _check_binary_labels(file, f"y{suffix}", y)


def _where(file: str, name: str, row: int) -> str:
    if file.endswith(".csv"):
        return f"{file}: {'the target column' if name == 'y' else 'a feature column'} of " \
               f"data row {row + 1}"
    return f"{file}: {name} at row {row}"


def _first_row(bad: np.ndarray) -> tuple[int, int]:
    """The first row holding a True of `bad` (rows along the first axis), and how many do."""
    rows = bad.reshape(len(bad), -1).any(axis=1)
    return int(np.argmax(rows)), int(rows.sum())


def _check_finite(file: str, name: str, array: np.ndarray) -> None:
    if array.dtype.kind not in "fc" or array.size == 0:
        return  # integers and booleans are finite
    bad = ~np.isfinite(array)
    if bad.any():
        row, count = _first_row(bad)
        what = "NaN" if np.isnan(array[row]).any() else "inf"
        raise DataError(LOC, f"{_where(file, name, row)} holds {what} ({count:,} of "
                             f"{len(array):,} rows hold NaN or inf); drop or fill those rows "
                             "(e.g. numpy.nan_to_num) and save the file again")
    if array.dtype.itemsize > 4 and max(array.max(), -array.min()) > _FLOAT32_MAX:
        row, count = _first_row(np.abs(array) > _FLOAT32_MAX)
        raise DataError(LOC, f"{_where(file, name, row)} holds a value beyond float32's range "
                             f"(±{_FLOAT32_MAX:.3g}), which training reads as inf ({count:,} "
                             "rows); rescale or standardize it")


def _check_class_labels(file: str, name: str, x: np.ndarray, y: np.ndarray, task: str,
                        max_classes: int | None) -> None:
    n = len(y)
    one_per_row = y.ndim == 1 or math.prod(y.shape[1:]) == 1
    per_step = y.ndim >= 2 and x.ndim >= 2 and y.shape[1] == x.shape[1]
    if not (one_per_row or per_step):
        raise DataError(LOC, f"{file}: {name} has shape {y.shape}, but task {task} takes one "
                             f"integer label per row, shape ({n},) (or one per step, shape "
                             f"({n}, T), for x of T steps; x has shape {x.shape}); give "
                             f"{name} one label per row, or set task: regression for several "
                             "values per row")
    if y.dtype.kind == "f":
        fraction = y != np.round(y)
        if fraction.any():
            row, count = _first_row(fraction)
            raise DataError(LOC, f"{_where(file, name, row)} holds a non-integer label "
                                 f"({y[row].flat[0]:g}; {count:,} rows), but task {task} takes "
                                 "class ids 0..K-1; give integer labels, or set task: "
                                 "regression to predict the values")
    if y.dtype.kind == "b" or y.size == 0:
        return
    low, high = y.min(), y.max()
    if low < 0:
        row, count = _first_row(y < 0)
        raise DataError(LOC, f"{_where(file, name, row)} holds the negative label {low:g} "
                             f"({count:,} rows), but classes are numbered 0..K-1; relabel "
                             "them (e.g. numpy.unique(y, return_inverse=True)[1])")
    classes = int(high) + 1
    if max_classes is not None and classes > max_classes:
        raise DataError(LOC, f"{file}: {name} holds labels up to {int(high)}, i.e. "
                             f"{classes:,} classes; the cap (LAYERWISE_MAX_CLASSES) is "
                             f"{max_classes:,}: relabel the classes 0..K-1 (e.g. "
                             "numpy.unique(y, return_inverse=True)[1])")


def _check_binary_labels(file: str, name: str, y: np.ndarray) -> None:
    if y.ndim > 1 and math.prod(y.shape[1:]) != 1:
        raise DataError(LOC, f"{file}: {name} has shape {y.shape}, but task binary takes one "
                             f"label per row, shape ({len(y)},); give {name} one column")
    other = (y != 0) & (y != 1)
    if other.any():
        row, count = _first_row(other)
        raise DataError(LOC, f"{_where(file, name, row)} holds the label {y[row].flat[0]:g} "
                             f"({count:,} rows), but task binary takes labels 0 and 1; "
                             "relabel them, or use task: classification")
