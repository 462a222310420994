"""Every use of MLflow's private surfaces, and the MLflow versions they are known to work with.

MLflow's public client writes a metric at a time through its ORM (see
workers/tracking/metric_writers.py for the cost), so the fast paths reach past it:

- the store behind an `MlflowClient` (`client._tracking_client.store`) and its SQLAlchemy
  engine: `SqlBulkWriter` inserts through it, `tracking_client` tunes SQLite's pragmas on it;
- the tables of MLflow's SQL store (`metrics`, `latest_metrics`, `params`, from
  `mlflow.store.tracking.dbmodels`) and how it encodes values in them: `SqlBulkWriter` writes
  rows into them as MLflow would;
- the REST store's endpoint table and `mlflow.utils.rest_utils`: `RestWriter` posts log-batch
  JSON built from columns with the client's credentials and retries;
- `mlflow.store.artifact`'s repository registry: `RunTracker` resolves a run's artifact store
  once instead of once per file.

No MLflow deprecation policy covers any of these: a minor release may add a column, a
constraint or another rule for `latest_metrics`, and the fast paths would then store what
MLflow's own `log_batch` does not (tests/workers/test_metric_writers.py compares the two). So
they are used only with an MLflow in `SUPPORTED`; with any other, `check_mlflow_version` says
so in one line at start-up, and the writers and artifacts take MLflow's public client instead:
slower, and correct whatever MLflow does inside. Tuning SQLite's pragmas writes no data and is
skipped only when the engine is not where this module looks.

Moving to a new MLflow: run tests/workers/test_metric_writers.py against it (the comparison
with MLflow's own `log_batch`, on SQLite, PostgreSQL and a server), then widen `SUPPORTED`
and the pin in pyproject.toml together.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

log = logging.getLogger("layerwise.mlflow")

# The versions the private surfaces were written and tested against: [from, below) by
# (major, minor). MLflow migrates its database schema in minor releases, not in patches.
SUPPORTED = ((3, 17), (3, 18))
TESTED_WITH = "3.17.2"  # pyproject.toml pins it
SUPPORTED_RANGE = "mlflow>={}.{},<{}.{}".format(*SUPPORTED[0], *SUPPORTED[1])

# MLflow's `metrics` and `latest_metrics` columns, and how its SQL store encodes a value:
# +-inf as +-FLOAT_MAX, NaN as 0 with is_nan set.
METRIC_COLUMNS = ("run_uuid", "key", "value", "timestamp", "step", "is_nan")
FLOAT_MAX = sys.float_info.max

_warned: set[str] = set()


def installed_mlflow_version() -> str:
    return str(mlflow.__version__)


def is_supported(version: str) -> bool:
    """Whether `version` is in SUPPORTED (a pre-release of a supported version counts)."""
    numbers = re.match(r"(\d+)\.(\d+)", version)
    if numbers is None:
        return False
    major_minor = (int(numbers[1]), int(numbers[2]))
    return SUPPORTED[0] <= major_minor < SUPPORTED[1]


def version_warning(installed: str) -> str:
    """The one line that says which MLflow is installed, which is supported, and what to do."""
    return (f"MLflow {installed} is installed; Layerwise's fast metric writes use MLflow "
            f"internals tested with {SUPPORTED_RANGE} ({TESTED_WITH}), so MLflow's public "
            f"client writes instead (slower). Fix: pip install '{SUPPORTED_RANGE}' "
            f"(pyproject.toml pins mlflow=={TESTED_WITH}).")


def check_mlflow_version() -> bool:
    """True when the installed MLflow is supported, so the private surfaces may be used; else
    logs `version_warning` (once per process) and returns False. The service and the
    dispatcher call it at start-up; every worker asks it again, as a cluster's nodes may have
    another MLflow than the service's."""
    installed = installed_mlflow_version()
    if is_supported(installed):
        return True
    if installed not in _warned:
        _warned.add(installed)
        log.warning(version_warning(installed))
    return False


def tracking_store(client: MlflowClient) -> Any:
    """The store behind `client`: a SqlAlchemyStore, a RestStore, ..."""
    return client._tracking_client.store


def sql_engine(client: MlflowClient) -> Any | None:
    """The SQLAlchemy engine of the client's SQL store; None for another store, or when MLflow
    keeps it elsewhere."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    return getattr(store, "engine", None)


@dataclass(frozen=True)
class MetricTables:
    """MLflow's own SQLAlchemy tables of a SQL tracking store."""

    metrics: Any
    latest_metrics: Any
    params: Any


def metric_tables() -> MetricTables:
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam

    return MetricTables(SqlMetric.__table__, SqlLatestMetric.__table__, SqlParam.__table__)


def stored_values(values: np.ndarray) -> tuple[list[float], list[bool]]:
    """(value, is_nan) of float64 `values` as MLflow's SQL store keeps them."""
    is_nan = np.isnan(values)
    clean = np.nan_to_num(values, nan=0.0, posinf=FLOAT_MAX, neginf=-FLOAT_MAX)
    return clean.tolist(), is_nan.tolist()


class RestLogBatch:
    """An MLflow server's log-batch endpoint, called as the client calls it: its credentials,
    headers and retries (`mlflow.utils.rest_utils.http_request`)."""

    def __init__(self, client: MlflowClient):
        from mlflow.protos.service_pb2 import LogBatch

        self.store = tracking_store(client)
        self.endpoint, self.method = self.store._METHOD_TO_INFO[LogBatch]

    def post(self, body: dict[str, Any]) -> None:
        """`body`: a LogBatch request in protobuf's JSON form; raises MlflowException when the
        server refuses it."""
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        response = http_request(self.store.get_host_creds(), self.endpoint, self.method,
                                json=body)
        verify_rest_response(response, self.endpoint)


class ClientArtifacts:
    """A run's artifacts through MLflow's public client: the same calls as an artifact
    repository's, each of which fetches the run again to find its store."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client, self.run_id = client, run_id

    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, local_file, artifact_path)

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, local_dir, artifact_path)


def run_artifacts(client: MlflowClient, run_id: str, artifact_uri: str, tracking_uri: str
                  ) -> Any:
    """Where the run's artifacts go: its artifact repository, resolved once from the run at
    hand, or with an unsupported MLflow, the public client."""
    if not check_mlflow_version():
        return ClientArtifacts(client, run_id)
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)
