"""Service settings from LAYERWISE_* environment variables, each with an embedded default."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Embedded defaults need no server: SQLite job store and MLflow store under `home`, a
    local Ray started by the service. Production points these at PostgreSQL, an MLflow server
    and a Ray cluster (RAY_ADDRESS)."""

    model_config = SettingsConfigDict(env_prefix="LAYERWISE_", extra="ignore")

    home: Path = Field(Path("./.layerwise"), description="the SQLite files (jobs.db, "
                       "mlflow.db), MLflow artifacts, checkpoints and Tune state")
    database_url: str | None = Field(None, description="the job store, a SQLAlchemy URL: "
                                     "postgresql://user:pass@host/db (psycopg 3); unset: "
                                     "SQLite <home>/jobs.db")
    mlflow_tracking_uri: str | None = Field(None, description="MLflow's tracking store or "
                                            "server (http://mlflow:5000); unset: SQLite "
                                            "<home>/mlflow.db, artifacts in <home>/artifacts")
    mlflow_backend_uri: str | None = Field(
        None, description="with a tracking server: the server's own database (its "
        "--backend-store-uri), for workers that can reach it. Per-step metrics then go "
        "straight into its tables, in bulk, instead of through the server, which ingests "
        "metrics more slowly than per-layer norms at every step produce them (BENCHMARKS.md, "
        "row 1c); runs, params and artifacts still go through the server. Unset: everything "
        "goes through the server")
    data_roots: str = Field("./data", description="comma-separated directories file datasets "
                                                   "may be read from")
    api_tokens: str | None = Field(None, description="bearer tokens for /v1, comma-separated "
                                   "`token` or `owner:token` entries; a token sees only its "
                                   "owner's jobs. Unset, with no admin tokens: no "
                                   "authentication, every caller is an admin")
    admin_tokens: str | None = Field(None, description="tokens that see and cancel every "
                                     "owner's jobs, in the same format")
    ray_address: str | None = Field(
        default_factory=lambda: os.environ.get("RAY_ADDRESS"), description="the Ray cluster "
        "to join (the head's GCS, ray-head:6379); default: Ray's own RAY_ADDRESS; unset: the "
        "service starts a local Ray and ends it when it stops")
    ray_num_cpus: int | None = Field(None, description="CPUs of the local Ray (default: all)")
    dispatch_interval_s: float = Field(0.05, gt=0.0, description="seconds between two looks "
                                       "at the queue when nothing wakes the dispatcher (a "
                                       "submission or a finished task does)")
    queue_policy: Literal["fair", "fifo"] = Field(
        "fair", description="the order queued jobs launch in: fair (priority first; within a "
        "priority, the owner holding the smallest share of the cluster goes next) or fifo "
        "(priority, then submission order)")
    max_request_bytes: int = Field(1_000_000, gt=0, description="cap on a request body (413)")
    dispatcher_enabled: bool = Field(True, description="run the dispatcher (queue -> Ray) in "
                                     "the API process; false: an API replica beside a "
                                     "`layerwise dispatcher`")
    checkpoint_every_s: float = Field(2.0, ge=0, description="least seconds between two "
                                      "per-epoch checkpoints of a job")
    heartbeat_s: float = Field(5.0, gt=0, description="how often the dispatcher vouches for "
                                                      "the jobs it runs")
    orphan_after_s: float = Field(30.0, gt=0, description="a running job nobody vouched for "
                                  "this long is orphaned (its dispatcher died) and re-queued")
    # Service-wide caps, each refused at submission with the cap's name.
    max_epochs: int = Field(10_000, gt=0, description="cap on training.epochs")
    max_parameters: int = Field(200_000_000, gt=0, description="cap on a model's parameters")
    max_gpus_per_job: float = Field(8.0, ge=0, description="cap on resources.gpus")
    max_dry_run_parameters: int = Field(
        250_000, gt=0, description="models up to this size are dry-run on one real batch "
        "at submission; larger ones are checked on PyTorch's meta device (shapes only), so "
        "the API never holds a user-sized model")
    max_trials_per_sweep: int = Field(1_000, gt=0, description="cap on a sweep's trials "
                                      "(grid points x num_samples x repeat)")
    max_sweep_dry_runs: int = Field(48, gt=0, description="cap on the distinct values a "
                                    "sweep submission dry-runs (each listed value, each "
                                    "range's ends and middle)")
    max_queued_per_owner: int = Field(10_000, gt=0, description="queued jobs one owner "
                                      "may have; one more answers 429 with Retry-After")
    max_data_bytes: int = Field(512_000_000, gt=0, description="cap on a data file "
                                "(LAYERWISE_MAX_DATA_BYTES): an .npz's arrays uncompressed, read "
                                "from its headers, or a .csv's or .txt's size on disk")
    max_classes: int = Field(100_000, gt=0, description="cap on the classes a data file's "
                             "labels make (its largest label + 1): above ImageNet-21k's 21,841 "
                             "classes and GPT-2's 50,257 tokens, far below a mistyped label's "
                             "millions, whose output layer alone exhausts a node")
    max_job_memory_bytes: int = Field(8 * 2**30, gt=0, description="cap on a job's estimated "
                                      "peak memory (parameters, gradients, optimizer state, "
                                      "one batch's activations, the data), measured by "
                                      "the dry run's step at submission (a large model's on "
                                      "PyTorch's meta device); the memory of the cluster's "
                                      "largest node is checked too")
    tune_storage: str | None = Field(None, description="where sweeps keep Ray Tune's state: "
                                     "a directory or a URI every node reaches (s3://, gs://); "
                                     "default <home>/tune")

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, url: str | None) -> str | None:
        """`postgres://` and `postgresql://` mean psycopg 3, the driver we ship."""
        if url is None:
            return None
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix):]
        return url

    @cached_property
    def home_dir(self) -> Path:
        path = self.home.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def job_store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home_dir / 'jobs.db'}"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home_dir / 'mlflow.db'}"

    @cached_property  # read on every submission; resolving paths costs file-system calls
    def data_root_list(self) -> list[str]:
        return [str(Path(r).expanduser().resolve()) for r in self.data_roots.split(",") if r]
