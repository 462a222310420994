"""Shared fixtures: settings in a temporary home, a real local Ray, a real HTTP server, and
the job store on SQLite and (when LAYERWISE_TEST_POSTGRES_URL is set) PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.settings import Settings
from tests.utils.server import ServerThread

POSTGRES_URL = os.environ.get("LAYERWISE_TEST_POSTGRES_URL")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "data").mkdir()
    return Settings(home=tmp_path / "home", data_roots=str(tmp_path / "data"),
                    database_url=None, mlflow_tracking_uri=None, ray_address=None,
                    api_tokens=None, admin_tokens=None)


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
    home = tmp_path_factory.mktemp("server")
    (home / "data").mkdir()
    return home


@pytest.fixture(scope="module")
def server(ray_cluster: None, server_home: Path) -> Iterator[ServerThread]:
    """The real app over HTTP on a free port, with its dispatcher on the session's Ray."""
    settings = Settings(home=server_home / "home", data_roots=str(server_home / "data"),
                        database_url=None, mlflow_tracking_uri=None, ray_address=None,
                        api_tokens=None, admin_tokens=None)
    with ServerThread(settings) as running:
        yield running


def _store_urls() -> list:
    marks = pytest.mark.skipif(POSTGRES_URL is None,
                               reason="LAYERWISE_TEST_POSTGRES_URL is not set (.ci/run sets it)")
    return ["sqlite", pytest.param("postgres", marks=[marks, pytest.mark.postgres])]


@pytest.fixture(params=_store_urls())
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty job store on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    from sqlalchemy import create_engine

    from services.db import Base
    engine = create_engine(POSTGRES_URL)
    Base.metadata.drop_all(engine)
    engine.dispose()
    return POSTGRES_URL  # type: ignore[return-value]
