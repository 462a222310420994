"""Built-in datasets by name, each with a params model that the catalog publishes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
from pydantic import Field

from models.config import SEED_MAX, StrictConfig


class DatasetParams(StrictConfig):
    seed: int = Field(0, ge=0, le=SEED_MAX,
                      description="seeds generation and the train/val/test split")

    def values(self) -> int:
        """About how many numbers the generator makes (x and y): what is checked against
        LAYERWISE_MAX_DATA_BYTES before generating. 0 for datasets of a fixed size."""
        return 0


# Bytes per generated number: float32 inputs, with an int64 or float64 copy on the way.
BYTES_PER_VALUE = 12


def generated_size_error(name: str, params: DatasetParams, max_bytes: int) -> str | None:
    """Why generating this dataset is refused (None when it is within the cap)."""
    size = params.values() * BYTES_PER_VALUE
    if size <= max_bytes:
        return None
    return (f"dataset {name!r} with these params would hold about {size / 1e6:,.0f} MB; the "
            f"cap is {max_bytes / 1e6:,.0f} MB (LAYERWISE_MAX_DATA_BYTES): fewer examples "
            "or shorter sequences")


# A generator returns (x, y, task, extra): x and y as arrays, the natural task, dataset facts.
Generated = tuple[np.ndarray, np.ndarray, str, dict[str, Any]]
Generator = Callable[[DatasetParams], Generated]
P = TypeVar("P", bound=DatasetParams)


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    params_cls: type[DatasetParams]
    generate: Generator
    description: str


_DATASETS: dict[str, BuiltinDataset] = {}


def register_dataset(name: str, params_cls: type[P], *, description: str
                     ) -> Callable[[Callable[[P], Generated]], Callable[[P], Generated]]:
    def decorate(generate: Callable[[P], Generated]) -> Callable[[P], Generated]:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        # The entry's generator is only ever given an instance of its own params_cls.
        _DATASETS[name] = BuiltinDataset(name, params_cls, cast(Generator, generate),
                                         description)
        return generate

    return decorate


def builtin_datasets() -> list[BuiltinDataset]:
    return list(_DATASETS.values())


def builtin_dataset(name: str) -> BuiltinDataset | None:
    return _DATASETS.get(name)
