"""One MLflow run per experiment: params, tags, artifacts and the model, by explicit run id."""

from __future__ import annotations

import json
import logging
import os
import posixpath
import socket
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import torch
import yaml
from mlflow.entities import LoggedModelOutput, Param, Run, RunTag
from mlflow.tracking import MlflowClient

from services.contract import mlflow_names as names
from services.contract.spec import ExperimentSpec
from services.mlflow_internals import run_artifacts
from services.tracking_store import tracking_client
from workers.tracking.experiments import ensure_experiment, run_page_path
from workers.tracking.metric_sink import MetricSink
from workers.tracking.metric_writers import writer_for
from workers.tracking.spec_params import flatten

MAX_PARAM_LENGTH = 6000
NOTE_TAG = "mlflow.note.content"  # the run's description: MLflow renders it as markdown
# mlflow.pytorch warns about the pickle format at every save, a job's and a sweep trial's
# alike; the choice is deliberate (see `RunTracker.log_model`), the warning noise in every
# worker's log.
logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
# libyaml's dumper when PyYAML has it: several times faster than the pure-Python one.
YamlDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def layerwise_version() -> str:
    try:
        return version("layerwise")
    except PackageNotFoundError:
        return "dev"


class RunTracker:
    """The MLflow run of one job. `start` creates it (or continues `run_id`, or the job's
    run an attempt left open: then `continued`)."""

    continued = False  # continues a run an earlier attempt made

    def __init__(self, client: MlflowClient, run: Run, tracking_uri: str,
                 metrics_uri: str | None = None):
        self.client, self.run_id = client, run.info.run_id
        self.experiment_id = run.info.experiment_id
        # The run's artifact store, resolved once from the run at hand: MlflowClient's
        # log_text and log_artifact fetch the run again to find it, a query per artifact.
        self.artifacts = run_artifacts(client, self.run_id, run.info.artifact_uri, tracking_uri)
        self.writer = writer_for(client, tracking_uri, metrics_uri)
        if metrics_uri is not None:
            _check_holds_run(self.writer, metrics_uri, self.run_id)
        # A continued run (a retry after a crash) logs only the steps it does not hold yet.
        self.sink = MetricSink(self.writer, self.run_id, logged=last_steps(run))

    @classmethod
    def start(cls, spec: ExperimentSpec, *, job_id: str, tracking_uri: str, home: str,
              run_id: str | None = None, extra_tags: dict[str, str] | None = None,
              metrics_uri: str | None = None, experiment_id: str | None = None) -> RunTracker:
        """metrics_uri: the tracking server's database, when metrics may go straight to it.
        experiment_id: the project's experiment when the caller knows it (a sweep's trial)."""
        client = tracking_client(tracking_uri)
        if run_id is None:
            experiment_id = experiment_id or ensure_experiment(
                client, spec.project, tracking_uri=tracking_uri, home=home)
            # An attempt that died before the job store learned its run id left the run open:
            # the retry continues it rather than making a second run of the job.
            run_id = find_run(client, experiment_id, {names.TAG_JOB_ID: job_id},
                              status="RUNNING")
            if run_id is None:
                tags = {names.TAG_JOB_ID: job_id, names.TAG_MODEL_KIND: spec.model.kind,
                        names.TAG_SPEC_HASH: spec.spec_hash(),
                        names.TAG_VERSION: layerwise_version(),
                        names.TAG_WORKER: f"{socket.gethostname()}:{os.getpid()}",
                        **spec.tags, **(extra_tags or {})}
                run = client.create_run(experiment_id, tags=tags, run_name=spec.name)
                tracker = cls(client, run, tracking_uri, metrics_uri)
                tracker.sink.call_soon(lambda: tracker._log_params(spec))
                tracker.sink.call_soon(lambda: tracker._describe(spec.tags.get(NOTE_TAG)))
                return tracker
        run = client.get_run(run_id)
        client.update_run(run_id, status="RUNNING")
        tracker = cls(client, run, tracking_uri, metrics_uri)
        tracker.continued = True
        if not run.data.params:  # the attempt died before it logged them
            tracker.sink.call_soon(lambda: tracker._log_params(spec))
        return tracker

    def _log_params(self, spec: ExperimentSpec) -> None:
        self.writer.write_params(self.run_id, [Param(k, str(v)[:MAX_PARAM_LENGTH])
                                               for k, v in flatten(spec).items()])

    def _describe(self, note: str | None) -> None:
        """The run's description: the spec's own (`mlflow.note.content`), then where to look
        (the report, the plots drawn while it trains), as links in the MLflow UI."""
        def link(label: str, tab: str) -> str:
            return f"[{label}]({run_page_path(self.experiment_id, self.run_id, tab)})"
        where = (f"**Layerwise** · {link('report.html', 'artifacts/report.html')} "
                 "(the diagnosis in words, every plot) · "
                 f"{link('gradient and update norms', 'model-metrics')} (per layer; the "
                 "heatmaps under Images are redrawn as it trains) · "
                 f"{link('diagnosis.json', 'artifacts/diagnosis.json')}")
        self.set_tags({NOTE_TAG: f"{note}\n\n{where}" if note else where})

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_json(self, payload: Any, artifact_file: str) -> None:
        self.log_text(json.dumps(payload, indent=2), artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        folder, name = posixpath.split(posixpath.normpath(artifact_file))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, name)
            path.write_text(text, encoding="utf-8")
            self.artifacts.log_artifact(str(path), folder or None)

    def log_files(self, local_dir: str, artifact_path: str) -> None:
        """A directory's files under `artifact_path` of the run's artifacts."""
        self.artifacts.log_artifacts(local_dir, artifact_path)

    def log_spec(self, spec: ExperimentSpec) -> None:
        self.log_text(yaml.dump(spec.model_dump(mode="json"), Dumper=YamlDumper,
                                sort_keys=False), "spec.yaml")

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(self.run_id, figure, artifact_file)

    def log_model(self, model: torch.nn.Module) -> str:
        """The trained model, as MLflow's pytorch flavour, linked to this run. Returns its
        model id.

        Pickle format: every kind saves (torch.export refuses some). The LoggedModel is
        created here and handed to log_model by id, because log_model given a run id copies
        every metric history of the run into the model first (seconds for a run with
        per-step norms); pinned requirements skip a slow requirement inference.
        """
        torch_version = torch.__version__.split("+")[0]
        logged = self.client.create_logged_model(self.experiment_id, name="model",
                                                 source_run_id=self.run_id)
        mlflow.pytorch.log_model(model.cpu(), name="model", model_id=logged.model_id,
                                 serialization_format="pickle",
                                 pip_requirements=[f"torch=={torch_version}"])
        self.client.log_outputs(self.run_id, [LoggedModelOutput(logged.model_id, step=0)])
        return logged.model_id

    def finish(self, status: str = "FINISHED") -> None:
        """Flush every metric, then close the run with `status` (FINISHED, FAILED, KILLED)."""
        try:
            self.sink.close()
        finally:
            self.client.set_terminated(self.run_id, status=status)


def find_run(client: MlflowClient, experiment_id: str, tags: dict[str, str], *,
              status: str | None = None) -> str | None:
    """The id of the first run of the experiment with all of `tags` (and `status`), if any."""
    query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    if status is not None:
        query += f" and attributes.status = '{status}'"
    runs = client.search_runs([experiment_id], filter_string=query, max_results=1,
                              order_by=["attributes.start_time ASC"])
    return runs[0].info.run_id if runs else None


def last_steps(run: Run) -> dict[str, int]:
    """Key -> the last step `run` holds of it (MLflow keeps each key's latest by step)."""
    return {metric.key: metric.step for metric in run.data.to_proto().metrics}


def _check_holds_run(writer: Any, metrics_uri: str, run_id: str) -> None:
    """Metrics written to a database that is not the server's would be lost to it."""
    from mlflow.exceptions import MlflowException

    try:
        writer.client.get_run(run_id)
    except MlflowException:
        raise ValueError(f"LAYERWISE_MLFLOW_BACKEND_URI ({metrics_uri.split('@')[-1]}) does not "
                         f"hold run {run_id} that the tracking server created: set it to the "
                         "server's --backend-store-uri, or unset it") from None

