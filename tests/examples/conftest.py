"""What the example tests share: a worker recording into its own MLflow store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from workers.run import WorkerSettings


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerSettings]:
    home = tmp_path_factory.mktemp("examples")
    threads = torch.get_num_threads()
    yield WorkerSettings(tracking_uri=f"sqlite:///{home / 'mlflow.db'}", home=str(home),
                         data_roots=[])
    torch.set_num_threads(threads)  # run_experiment sets one thread per CPU of the job
