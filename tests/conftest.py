"""Shared fixtures: settings in a temporary home, a real local Ray, a real HTTP server, the job
store on SQLite and (when LAYERWISE_TEST_POSTGRES_URL is set) PostgreSQL, and one torch thread.

Helpers that take arguments (settings with overrides, a worker's settings, a fresh PostgreSQL
database, waiting for a condition) are functions in tests/utils/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.settings import Settings
from tests.utils.postgres import empty_job_store, sqlite_and_postgres
from tests.utils.server import ServerThread
from tests.utils.settings import local_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return local_settings(tmp_path)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray for the whole session (starting one costs seconds)."""
    import ray

    if not ray.is_initialized():
        from workers.runtime.dispatcher import local_ray_config

        ray.init(num_cpus=2, include_dashboard=False, namespace="layerwise",
                 log_to_driver=False, _system_config=local_ray_config(2))
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def server_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def server(ray_cluster: None, server_home: Path) -> Iterator[ServerThread]:
    """The real app over HTTP on a free port, with its dispatcher on the session's Ray."""
    with ServerThread(local_settings(server_home)) as running:
        yield running


@pytest.fixture(params=sqlite_and_postgres())
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty job store on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return empty_job_store()


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one thread, as the worker runs a one-CPU job: small nets train many times
    faster so on a shared 2-core machine. A module asks for it with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch  # here, not at the top: the API's tests never load torch for it

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
