"""What the training split shows about the data, measured cheaply and bounded (at most
`MAX_ROWS` rows sampled deterministically, at most `MAX_VALUES` values): the numbers the
diagnosis's `bad_data` findings read (workers/diagnostics/verdicts/data_faults.py), in the dry
run at submission and in the worker. Plain data (numpy in, floats out), no torch.

Measured on the arrays as the model sees them, after `data.standardize`: a standardized
feature is at unit scale, so asking for standardization silences the scale findings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from workers.data.bundle import DataBundle

MAX_ROWS = 4096  # rows sampled from each split
MAX_VALUES = 4_000_000  # rows x features measured at once (a wide image set samples fewer rows)
MAX_HASHED_TRAIN_ROWS = 20_000  # training rows hashed to look for examples shared with val/test
MAX_HASHED_VALUES = 50_000_000  # ...and at most this many of their values (wide inputs: fewer)
HASH_CHUNK_VALUES = 1_000_000  # values widened to 64 bits at once (8 MB)
MAX_DISTINCT = 64  # distinct target values counted before "many"
# Tasks whose inputs are token ids or stored patterns: their scale is not a fault.
SYMBOL_INPUT_TASKS = ("language_model", "recall")


@dataclass(frozen=True)
class DataStats:
    """The training split's numbers (over `rows` sampled rows of `features` values each).

    Attributes:
        feature_std_max / feature_std_min: the largest and smallest std of a non-constant
            feature; their ratio is how far apart the scales are.
        feature_abs_mean_max: the largest |mean| of a feature (an offset far from 0).
        constant_features: features with one value over the sample (std 0).
        non_finite: NaN or inf values, in the inputs and the targets sampled.
        target_mean / target_std: a regression target's (all outputs pooled); None otherwise.
        target_distinct: a regression's distinct target values, up to `MAX_DISTINCT`
            (`MAX_DISTINCT` means as many or more); None otherwise.
        target_values: up to 8 of those distinct values, for the evidence.
        classes / classes_seen / largest_class_share: a classifier's output width, the labels
            the sample holds and the share of the commonest (binary: of 0 or 1).
        shared_with_train: per held-out split, the share of its sampled rows equal to a
            training row; `train_duplicate_share`: the training rows repeated within it (data
            whose rows repeat by nature, e.g. a few binary patterns, leak nothing).
        symbol_inputs: inputs are token ids or patterns; their scale is not judged.
    """

    task: str
    rows: int
    features: int
    standardize: str = "none"
    feature_std_max: float | None = None
    feature_std_min: float | None = None
    feature_abs_mean_max: float | None = None
    constant_features: int = 0
    non_finite: dict[str, int] = field(default_factory=dict)
    target_mean: float | None = None
    target_std: float | None = None
    target_distinct: int | None = None
    target_values: list[float] = field(default_factory=list)
    classes: int | None = None
    classes_seen: int | None = None
    largest_class_share: float | None = None
    shared_with_train: dict[str, float] = field(default_factory=dict)
    train_duplicate_share: float = 0.0
    symbol_inputs: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, recorded: dict[str, Any]) -> DataStats:
        """The statistics a diagnosis recorded (its `evidence.data`), for a replay; keys a
        later version added or dropped are ignored."""
        return cls(**{k: v for k, v in recorded.items() if k in cls.__dataclass_fields__})


def measure(bundle: DataBundle, standardize: str = "none") -> DataStats:
    """The training split's statistics, on a bounded deterministic sample."""
    x = bundle.x_train.reshape(len(bundle.x_train), -1) if len(bundle.x_train) else \
        np.zeros((0, 0), np.float32)
    features = int(x.shape[1]) if x.ndim == 2 else 0
    rows = _sample(len(x), min(MAX_ROWS, max(16, MAX_VALUES // max(1, features))))
    xs = x[rows].astype(np.float64)
    ys = np.asarray(bundle.y_train)[rows]
    symbol = bundle.task in SYMBOL_INPUT_TASKS or bool(bundle.extra.get("vocab_size"))
    facts: dict[str, Any] = {"task": bundle.task, "rows": len(rows), "features": features,
                             "standardize": standardize, "symbol_inputs": symbol,
                             "non_finite": _non_finite(xs, ys)}
    if len(xs) and features:
        facts |= _feature_scale(xs)
    if bundle.task == "regression" and ys.size:
        facts |= _regression_targets(ys)
    if bundle.task in ("classification", "binary") and ys.size:
        facts |= _class_balance(ys, bundle.output_dim, bundle.task)
    if bundle.task != "recall":  # a Hopfield net recalls the patterns it stored
        facts |= _shared_rows(bundle)
    return DataStats(**facts)


def _sample(n: int, limit: int) -> np.ndarray:
    """Row indices: every row when `n <= limit`, else `limit` of them chosen by a fixed seed
    (the same data gives the same sample, in the dry run and in the worker)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, limit, replace=False))


def _non_finite(xs: np.ndarray, ys: np.ndarray) -> dict[str, int]:
    counts = {"inputs": int((~np.isfinite(xs)).sum())}
    if ys.dtype.kind == "f":
        counts["targets"] = int((~np.isfinite(ys)).sum())
    return {k: v for k, v in counts.items() if v}


def _feature_scale(xs: np.ndarray) -> dict[str, Any]:
    finite = np.where(np.isfinite(xs), xs, np.nan)
    with np.errstate(invalid="ignore"):
        std = np.nanstd(finite, axis=0)
        mean = np.nanmean(finite, axis=0)
    varying = std[np.isfinite(std) & (std > 0)]
    return {"feature_std_max": float(varying.max()) if len(varying) else None,
            "feature_std_min": float(varying.min()) if len(varying) else None,
            "feature_abs_mean_max": float(np.nanmax(np.abs(mean)))
            if np.isfinite(mean).any() else None,
            "constant_features": int((std == 0).sum())}


def _regression_targets(ys: np.ndarray) -> dict[str, Any]:
    values = ys.astype(np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if not len(values):
        return {}
    distinct = np.unique(values)
    return {"target_mean": float(values.mean()), "target_std": float(values.std()),
            "target_distinct": int(min(len(distinct), MAX_DISTINCT)),
            "target_values": [float(v) for v in distinct[:8]]}


def _class_balance(ys: np.ndarray, classes: int, task: str) -> dict[str, Any]:
    labels = ys.reshape(-1).astype(np.int64)
    counts = np.bincount(labels[labels >= 0], minlength=2 if task == "binary" else 1)
    one_per_row = ys.ndim == 1 or int(np.prod(ys.shape[1:])) == 1
    # per-step labels (a sequence's) are dominated by a blank or padding class by design
    return {"classes": 2 if task == "binary" else int(classes),
            "classes_seen": int((counts > 0).sum()),
            "largest_class_share": float(counts.max() / max(1, counts.sum()))
            if one_per_row else None}


def _shared_rows(bundle: DataBundle) -> dict[str, Any]:
    """The share of each held-out split's sampled rows that equal a training row, compared
    by a 64-bit hash of the row's bytes (train: its first `MAX_HASHED_TRAIN_ROWS` rows, fewer
    for wide rows)."""
    width = int(np.prod(bundle.x_train.shape[1:]))
    train = bundle.x_train[:min(MAX_HASHED_TRAIN_ROWS,
                                max(1000, MAX_HASHED_VALUES // max(1, width)))]
    if not len(train):
        return {}
    weights = np.random.default_rng(1).integers(1, 2**63, size=width,
                                                dtype=np.uint64) | np.uint64(1)
    train_hashes = _row_hashes(train, weights)
    unique = np.unique(train_hashes)
    shared: dict[str, float] = {}
    for name in ("val", "test"):
        part = getattr(bundle, f"x_{name}")
        if part is None or not len(part):
            continue
        sample = part[_sample(len(part), MAX_ROWS)]
        shared[name] = float(np.isin(_row_hashes(sample, weights), unique).mean())
    return {"shared_with_train": shared,
            "train_duplicate_share": float(1.0 - len(unique) / len(train_hashes))}


def _row_hashes(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One uint64 per row: its values' bits times random odd weights, summed (mod 2^64)."""
    flat = np.ascontiguousarray(rows.reshape(len(rows), -1).astype(np.float32))
    bits = flat.view(np.uint32)
    out = np.empty(len(rows), dtype=np.uint64)
    chunk = max(1, HASH_CHUNK_VALUES // max(1, bits.shape[1]))
    for start in range(0, len(rows), chunk):
        part = bits[start:start + chunk].astype(np.uint64)
        with np.errstate(over="ignore"):
            out[start:start + chunk] = (part * weights).sum(axis=1, dtype=np.uint64)
    return out
