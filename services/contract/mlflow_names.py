"""MLflow conventions (docs/mlflow.md): the tag keys shared by worker and API. Names only: what
creates experiments is workers/tracking/experiments.py."""

from __future__ import annotations

TAG_JOB_ID = "layerwise.job_id"
TAG_SWEEP_ID = "layerwise.sweep_id"
TAG_MODEL_KIND = "layerwise.model_kind"
TAG_SPEC_HASH = "layerwise.spec_hash"
TAG_VERSION = "layerwise.version"
TAG_DIAGNOSIS = "layerwise.diagnosis"
TAG_REPAIR_OF = "layerwise.repair_of"  # on a repair's run: the id of the job it repairs
TAG_REPAIR_CANDIDATE = "layerwise.repair_candidate"  # which of its fixes it tries (0: first)
TAG_WORKER = "layerwise.worker"  # host:pid of the process that trained the run
RUN_NAME_TAG = "mlflow.runName"
PARENT_RUN_TAG = "mlflow.parentRunId"


def repair_link_tags(repair_of: str | None, candidate: int | None,
                     parent_run_id: str | None) -> dict[str, str]:
    """A repair's link as its run's tags, from the job's columns (which only the service
    writes; a spec's tags may not use these keys)."""
    tags = {TAG_REPAIR_OF: repair_of, TAG_REPAIR_CANDIDATE: None if candidate is None
            else str(candidate), PARENT_RUN_TAG: parent_run_id}
    return {key: value for key, value in tags.items() if value is not None}
