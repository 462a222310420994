"""The work of a simulated job (bench row 11): a Ray task with the experiment task's signature
that sleeps its job's `simulated_seconds` and says where and when it ran.

It imports nothing of Layerwise, nor torch: a simulated cluster's 80 worker processes start in
a second each on two cores, where a training worker's imports take several. What the row
measures is the dispatcher, the store and Ray, not training (rows 1 to 10 do that).
"""

from __future__ import annotations

import time
from typing import Any

import ray


@ray.remote(max_retries=0)
def simulated_job(job_id: str, spec: dict[str, Any], _settings: dict[str, Any], _board: Any,
                  _resume_run_id: str | None = None,
                  _service_tags: dict[str, str] | None = None) -> dict[str, Any]:
    started = time.time()
    node = ray.get_runtime_context().get_node_id()
    seconds = float(spec["tags"]["simulated_seconds"])
    with open(spec["tags"]["started_log"], "a") as log:  # where each job runs, until when
        log.write(f"{job_id} {node} {started + seconds:.3f}\n")
    time.sleep(seconds)
    ended = time.time()
    # Appended as the last act, then returned: a job whose line is here twice ran to its end
    # twice (O_APPEND: each line is written whole).
    with open(spec["tags"]["done_log"], "a") as log:
        log.write(f"{job_id}\n")
    return {"node": node, "task_started": started,
            "task_ended": ended}
