"""A spec's MLflow run tags: MLflow's rules for keys and values, and the keys only the
service writes."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, ValidationError, ValidationInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

# Tag keys the service writes on a run (the job's id, its repair link, MLflow's parent run):
# a user's tag under these prefixes could forge them, so a spec may not carry one, except the
# run's description, which is the user's own.
RESERVED_TAG_PREFIXES = ("layerwise.", "mlflow.")
USER_MLFLOW_TAGS = frozenset({"mlflow.note.content"})
# The validation context for a spec read back from the store: a record written before the
# repair link moved to the job's columns carries these keys in its tags, and still runs.
STORED = {"stored": True}


def is_reserved_tag(key: str) -> bool:
    return key.startswith(RESERVED_TAG_PREFIXES) and key not in USER_MLFLOW_TAGS


def user_tags(tags: dict[str, str]) -> dict[str, str]:
    """The tags without the keys only the service writes."""
    return {key: value for key, value in tags.items() if not is_reserved_tag(key)}


def _no_reserved_keys(tags: dict[str, str], info: ValidationInfo) -> dict[str, str]:
    if (info.context or {}).get("stored"):
        return tags
    reserved = [key for key in tags if is_reserved_tag(key)]
    if reserved:  # one error per key, each at tags.<key>
        raise ValidationError.from_exception_data("tags", [InitErrorDetails(
            type=PydanticCustomError("reserved_tag", (
                "keys under layerwise. and mlflow. are written by the service; rename the "
                "tag")), loc=(key,), input=key) for key in reserved])
    return tags


# MLflow's own rules for tag keys (characters, 250 at most) and values (5,000 characters).
TagKey = Annotated[str, Field(min_length=1, max_length=250, pattern=r"^[A-Za-z0-9_\-. /]+$")]
Tags = Annotated[dict[TagKey, Annotated[str, Field(max_length=5000)]],
                 AfterValidator(_no_reserved_keys)]
