"""Every metric key of a run holds each step once, in a run trained to the end and in one
resumed from its checkpoint after a crash: when the last step is an activation sampling step,
its sample and the one at the end of training are one sample, logged once."""

from __future__ import annotations

from collections import Counter

import pytest
from mlflow.tracking import MlflowClient

from tests.utils.settings import worker_settings
from tests.utils.specs import mlp_spec
from tests.workers.test_resumed_run_metrics import Crash
from workers.run import RunOptions, run_experiment

pytestmark = pytest.mark.usefixtures("one_thread")

# 8 steps an epoch, the activation sample every 8 steps: the last step's sample is taken as
# the step ends, and training's end must not sample that step again.
SPEC = mlp_spec(data={"name": "xor", "params": {"n": 160}}, model={"hidden": [4]},
                training={"epochs": 4, "batch_size": 16},
                diagnostics={"plots": False, "activation_every_steps": 8})


def _repeated_steps(client: MlflowClient, run_id: str) -> dict[str, list[int]]:
    """(key -> the steps it holds more than once), over every metric key of the run."""
    out = {}
    for key in client.get_run(run_id).data.metrics:
        counts = Counter(m.step for m in client.get_metric_history(run_id, key))
        repeated = sorted(step for step, n in counts.items() if n > 1)
        if repeated:
            out[key] = repeated
    return out


def test_a_run_logs_each_step_of_each_key_once(settings):
    reports: list[dict] = []
    result = run_experiment("job-once", SPEC, worker_settings(settings), reports.append)
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    run_id = reports[0]["mlflow_run_id"]
    history = client.get_metric_history(run_id, "activation/dead_fraction")
    assert result["steps"] in [m.step for m in history]  # sampled after the last step
    assert _repeated_steps(client, run_id) == {}


def test_a_resumed_run_logs_each_step_of_each_key_once(settings):
    worker = worker_settings(settings, checkpoint_every_s=0)
    reports: list[dict] = []
    with pytest.raises(SystemExit):
        run_experiment("job-once-resumed", SPEC, worker, reports.append,
                       RunOptions(hooks=Crash(epoch=3)))
    run_id = reports[0]["mlflow_run_id"]
    result = run_experiment("job-once-resumed", SPEC, worker, reports.append,
                            RunOptions(run_id=run_id))
    assert result["resumed_from_epoch"] == 2
    assert _repeated_steps(MlflowClient(tracking_uri=settings.tracking_uri), run_id) == {}
