"""What the service enforces that the OpenAPI document's schema language cannot state.

JSON Schema checks one value at a time; these rules relate a body's fields to each other, to
the data, or to the service's caps, so only the dry run can check them. Each is answered with a
422 whose `errors` name the field and the fix. The list goes into the OpenAPI document's
description and docs/rest-api.md, and tests/utils/schemathesis.toml admits a 422 to
schema-valid submissions for these reasons (Schemathesis's positive-data check)."""

from __future__ import annotations

UNSTATED_CONSTRAINTS: tuple[str, ...] = (
    "an `expect` entry's metric must be one the run logs for its task and model kind "
    "(`val/accuracy` only for a classifier, for example)",
    "a sweep's `compare` needs `better` and `worse` to select different trials",
    "a file dataset must exist below a data root, be within LAYERWISE_MAX_DATA_BYTES, hold "
    "finite values, and labels a classifier can use (integers 0..K-1, one per example, K at "
    "most LAYERWISE_MAX_CLASSES)",
    "the model must fit its data (input and output sizes, sequence or image shapes) and every "
    "regularization or training setting must have something in the model to act on",
    "caps on the job's size: parameters (LAYERWISE_MAX_PARAMETERS), estimated peak memory "
    "(LAYERWISE_MAX_JOB_MEMORY_BYTES and the largest node), epochs, trials and dry runs of a "
    "sweep, and resources no node of the cluster has",
    "a sweep's space paths must exist in the base spec and every listed value must make a spec "
    "that runs",
)


def description() -> str:
    """The OpenAPI description: what the service is, then the rules above."""
    rules = "\n".join(f"- {rule}" for rule in UNSTATED_CONSTRAINTS)
    return ("Train and dissect deep neural networks: REST, Ray, MLflow.\n\n"
            "Submissions are checked twice: against this document's schemas, then by a dry run "
            "of the spec on its data, which also enforces what a schema cannot state (each "
            f"answered with a 422 naming the field):\n\n{rules}")
