"""Built-in datasets by name, each with a params model that the catalog publishes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class DatasetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = Field(0, ge=0, description="seeds generation and the train/val/test split")


# A generator returns (x, y, task, extra): x and y as arrays, the natural task, dataset facts.
Generator = Callable[[DatasetParams], tuple[np.ndarray, np.ndarray, str, dict]]


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    params_cls: type[DatasetParams]
    generate: Generator
    description: str


_DATASETS: dict[str, BuiltinDataset] = {}


def register_dataset(name: str, params_cls: type[DatasetParams], *, description: str
                     ) -> Callable[[Generator], Generator]:
    def decorate(generate: Generator) -> Generator:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        _DATASETS[name] = BuiltinDataset(name, params_cls, generate, description)
        return generate

    return decorate


def builtin_datasets() -> list[BuiltinDataset]:
    return list(_DATASETS.values())


def builtin_dataset(name: str) -> BuiltinDataset | None:
    return _DATASETS.get(name)
