"""`layerwise sweep --extend ID --trials N`: a finished sweep goes on with N more trials, as a
new sweep of the same space that starts from what the first one found (`search.prior`: tpe is
told its trials, random draws after its draws), under the same name with ` (extended)`."""

from __future__ import annotations

import copy
import math
from typing import Any

from services.contract.sweep_spec import MAX_PRIOR_TRIALS
from services.contract.trial_status import counts_final_metric
from services.sweep_table import SweepRecord

ENDED = ("succeeded", "failed", "cancelled")


def extension_spec(record: SweepRecord, trials: int) -> dict[str, Any]:
    """The spec of the sweep that extends `record` by `trials` more trials; ValueError says
    why it cannot (a sweep still running, a grid, trials < 1)."""
    if record.status not in ENDED:
        raise ValueError(f"sweep {record.id} is {record.status}; extend it once it has ended "
                         f"(or cancel it first: layerwise sweep-cancel {record.id})")
    if trials < 1:
        raise ValueError("--trials must be at least 1: how many more trials to run")
    spec = copy.deepcopy(record.spec)
    search = spec.setdefault("search", {})
    algorithm = search.get("algorithm", "random")
    if algorithm == "grid":
        raise ValueError(f"sweep {record.id} is a grid search, which has run every point; "
                         "widen its space instead (layerwise sweep FILE --set space.PATH=...)")
    repeat = int(spec.get("repeat", 1))
    if algorithm == "tpe":
        search["num_samples"] = max(1, math.ceil(trials / repeat))
    else:  # random: samples per grid point, each run `repeat` times
        points = max(1, record.trials_total // max(1, int(search.get("num_samples", 1)) * repeat))
        search["num_samples"] = max(1, math.ceil(trials / (points * repeat)))
    prior = [{"params": t.params, "metric": t.metric} for t in record.trials
             if t.metric is not None and math.isfinite(t.metric)
             and counts_final_metric(t.model_dump())]
    search["prior"] = [*search.get("prior", []), *prior][-MAX_PRIOR_TRIALS:]
    name = record.name or spec.get("base", {}).get("name") or "sweep"
    spec["name"] = name if name.endswith(" (extended)") else f"{name} (extended)"
    spec.setdefault("tags", {})["extends"] = record.id  # a user tag: layerwise.* are the service's
    return spec
