"""The data files of the outside fault benchmark (benchmarks/faults/data/*.npz), generated
deterministically: `python -m bench.faults_data` writes them (the same bytes every time).

The published faults read data we cannot ship or download (MNIST, UCI tables, a poster's
CSV). Each file here keeps what the fault is about: the scale of the features or targets, the
shape of the task, the labels as the poster stored them. Where the published fix rescales the
data in the script (StandardScaler, `/ 255`, min-max), the fixed counterpart reads a second file
with that rescaling done, fitted on the whole file as the posters did.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits, load_iris, make_classification

from bench.faults_cases import DATA

Arrays = dict[str, np.ndarray]


def _standardize(a: np.ndarray) -> np.ndarray:
    std = a.std(axis=0)
    return ((a - a.mean(axis=0)) / np.where(std > 0, std, 1.0)).astype(np.float32)


def _unscaled_table(seed: int, n: int, features: int, classes: int = 2) -> tuple[np.ndarray,
                                                                                     np.ndarray]:
    """A tabular classification whose columns sit at scales from 1 to ~10,000 with offsets,
    as raw census, packet or medical columns do (age, income, byte counts, glucose)."""
    rng = np.random.default_rng(seed)
    x, y = make_classification(n_samples=n, n_features=features,
                               n_informative=max(2, features // 2), n_redundant=0,
                               n_classes=classes, n_clusters_per_class=1, class_sep=1.5,
                               random_state=seed)
    scales = 10.0 ** rng.uniform(0, 4, size=features)
    offsets = rng.uniform(0, 5, size=features) * scales
    return (x * scales + offsets).astype(np.float32), y.astype(np.int64)


def _table_pair(seed: int, n: int, features: int, classes: int = 2) -> dict[str, Arrays]:
    x, y = _unscaled_table(seed, n, features, classes)
    return {"raw": {"x": x, "y": y}, "scaled": {"x": _standardize(x), "y": y}}


def quadratic_50() -> dict[str, Arrays]:
    """48934338: y = 5 x^2 + e^3 on 50 points, x up to 10 (targets up to ~500)."""
    rng = np.random.default_rng(48934338)
    x = np.linspace(-10, 10, 50).reshape(-1, 1)
    y = 5 * x ** 2 + rng.standard_normal((50, 1)) ** 3
    return {"": {"x": x.astype(np.float32), "y": y.astype(np.float32)}}


def quadratic_unscaled() -> dict[str, Arrays]:
    """52800582: a simple function (y = x^2) on raw x up to 30: targets of ~300 +- 270."""
    x = np.linspace(0, 30, 400).reshape(-1, 1)
    y = x ** 2
    return {"raw": {"x": x.astype(np.float32), "y": y.astype(np.float32)},
            "scaled": {"x": _standardize(x), "y": _standardize(y)}}


def linear_data() -> dict[str, Arrays]:
    """48221692: a line y = 3x + 2 + noise on x in [0, 10]: targets up to ~32, beyond a
    sigmoid's reach."""
    rng = np.random.default_rng(48221692)
    x = rng.uniform(0, 10, (300, 1))
    y = 3 * x + 2 + rng.normal(0, 0.5, (300, 1))
    return {"": {"x": x.astype(np.float32), "y": y.astype(np.float32)}}


def signed_targets() -> dict[str, Arrays]:
    """48251943: a regression whose targets are half negative, which a ReLU output cannot
    produce."""
    rng = np.random.default_rng(48251943)
    x = rng.uniform(-1, 1, (400, 2))
    y = np.sin(2 * x[:, :1]) * np.cos(x[:, 1:])
    return {"": {"x": x.astype(np.float32), "y": y.astype(np.float32)}}


def random_regression() -> dict[str, Arrays]:
    """33969059: random inputs and a real-valued target (the poster's rand arrays, with a
    learnable weighted sum)."""
    rng = np.random.default_rng(33969059)
    x = rng.random((500, 5))
    y = x @ np.array([0.5, -0.2, 0.3, 0.1, -0.4]).reshape(-1, 1) + 0.5
    return {"": {"x": x.astype(np.float32), "y": y.astype(np.float32)}}


def digits_pixels() -> dict[str, Arrays]:
    """55328966 and kin: MNIST-like pixels left at 0..255 (no `/ 255`), and the fixed copy."""
    digits = load_digits()
    raw = (digits.data * (255.0 / 16.0)).astype(np.float32)
    return {"255": {"x": raw, "y": digits.target.astype(np.int64)},
            "01": {"x": raw / 255.0, "y": digits.target.astype(np.int64)}}


def digits_labels_div255() -> dict[str, Arrays]:
    """59325381: `y_train = y_train / 255` where `x_train` was meant: float labels with ten
    distinct values in [0, 0.035], inputs left at 0..255."""
    digits = load_digits()
    raw = (digits.data * (255.0 / 16.0)).astype(np.float32)
    return {"": {"x": raw, "y": (digits.target / 255.0).astype(np.float32)}}


def iris() -> dict[str, Arrays]:
    """59278771 and 51930566: the iris table (bundled with scikit-learn), raw and scaled."""
    data = load_iris()
    x = data.data.astype(np.float32)
    return {"raw": {"x": x, "y": data.target.astype(np.int64)},
            "scaled": {"x": _standardize(x), "y": data.target.astype(np.int64)}}


def max_scaled_regression() -> dict[str, Arrays]:
    """46642627, 46995209 and 47932589: a regression on raw columns of ~1,000s with targets of
    ~10,000s; the posters' fixes divide by the max or min-max scale both."""
    rng = np.random.default_rng(46642627)
    x = rng.uniform(100, 5000, (500, 4))
    y = (x @ np.array([1.5, -0.7, 2.0, 0.3]) + rng.normal(0, 200, 500)).reshape(-1, 1) + 8000
    lo_x, hi_x, lo_y, hi_y = x.min(0), x.max(0), y.min(0), y.max(0)
    return {"raw": {"x": x.astype(np.float32), "y": y.astype(np.float32)},
            "minmax": {"x": ((x - lo_x) / (hi_x - lo_x)).astype(np.float32),
                       "y": ((y - lo_y) / (hi_y - lo_y)).astype(np.float32)}}


def game_of_life() -> dict[str, Arrays]:
    """gol_nn: Conway's rule from a cell's 3x3 neighbourhood: every one of the 512 patterns,
    four times over, the target the centre's next state."""
    patterns = (np.arange(512)[:, None] >> np.arange(9)) & 1
    alive = patterns.sum(axis=1) - patterns[:, 4]
    y = ((alive == 3) | ((patterns[:, 4] == 1) & (alive == 2))).astype(np.int64)
    return {"": {"x": np.tile(patterns, (4, 1)).astype(np.float32), "y": np.tile(y, 4)}}


GENERATORS: dict[str, Callable[[], dict[str, Arrays]]] = {
    "quadratic50": quadratic_50,
    "quadratic": quadratic_unscaled,
    "linear": linear_data,
    "signed": signed_targets,
    "randreg": random_regression,
    "digits": digits_pixels,
    "digits-labels-div255": digits_labels_div255,
    "iris": iris,
    "maxreg": max_scaled_regression,
    "gol": game_of_life,
    # Tables as the posters' (feature count, classes): adult 14, pima 8, packets 11,
    # 'sorted output' 3, a 16-feature csv, a DDoS capture's 6.
    "adult": lambda: _table_pair(47724077, 800, 14),
    "pima": lambda: _table_pair(2023, 768, 8),
    "packets": lambda: _table_pair(44066044, 600, 11),
    "sorted": lambda: _table_pair(39525358, 600, 3),
    "table16": lambda: _table_pair(34673164, 600, 16),
    "ddos": lambda: _table_pair(40, 800, 6),
    "table3class": lambda: _table_pair(59278771, 600, 4, 3),
}


def write(directory: Path = DATA) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, generate in GENERATORS.items():
        for variant, arrays in generate().items():
            path = directory / (f"{name}-{variant}.npz" if variant else f"{name}.npz")
            with path.open("wb") as out:
                # savez (not _compressed): no timestamps in the file, the same bytes every run
                np.savez(out, **arrays)  # type: ignore[arg-type]
            written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        print(path.relative_to(DATA.parents[1]))
