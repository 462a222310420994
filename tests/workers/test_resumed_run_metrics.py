"""A run resumed after a crash retrains the epochs past its last checkpoint; each (key, step)
still reaches MLflow once."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.utils.settings import worker_settings
from tests.utils.specs import mlp_spec
from workers.run import RunHooks, RunOptions, run_experiment
from workers.tracking.metric_sink import MetricSink
from workers.tracking.metric_writers import writer_for
from workers.tracking.run_tracker import last_steps


class Crash(RunHooks):
    """Runs after the epoch's metrics are logged and before its checkpoint is written, as a
    killed worker may: the checkpoint holds the epoch before, the run holds this one. A crash
    closes nothing."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, trainer, metrics) -> None:
        if trainer.epoch + 1 == self.epoch:
            raise SystemExit("killed")

    def close_status(self, tracker, exc) -> None:
        return None


def _steps_by_key(client: MlflowClient, run_id: str) -> dict[str, list[int]]:
    keys = client.get_run(run_id).data.metrics
    return {key: [m.step for m in client.get_metric_history(run_id, key)] for key in keys}


def test_a_run_resumed_after_a_crash_logs_each_step_once(settings):
    worker = worker_settings(settings, checkpoint_every_s=0)
    spec = mlp_spec(data={"name": "xor", "params": {"n": 100}}, model={"hidden": [4]},
                    training={"epochs": 5, "batch_size": 16}, diagnostics={"plots": False})
    reports: list[dict] = []
    with pytest.raises(SystemExit):
        run_experiment("job-crash", spec, worker, reports.append,
                       RunOptions(hooks=Crash(epoch=3)))
    run_id = reports[0]["mlflow_run_id"]

    result = run_experiment("job-crash", spec, worker, reports.append,
                            RunOptions(run_id=run_id))

    assert result["resumed_from_epoch"] == 2  # epoch 3 was logged, then trained again
    steps = _steps_by_key(MlflowClient(tracking_uri=settings.tracking_uri), run_id)
    duplicated = {key: s for key, s in steps.items() if len(s) != len(set(s))}
    assert not duplicated
    per_epoch = result["steps"] // 5
    assert sorted(steps["train/loss"]) == [per_epoch * e - 1 for e in range(1, 6)]
    assert sorted(steps["grad_norm/output"]) == list(range(result["steps"]))  # none lost


def test_the_sink_drops_each_keys_steps_the_run_holds(settings):
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    experiment = client.create_experiment("sink")
    run_id = client.create_run(experiment).info.run_id
    writer = writer_for(client, settings.tracking_uri)
    first = MetricSink(writer, run_id)
    first.log_rows(["a", "b"], [[0.0, 0.0]] * 4, steps=[0, 1, 2, 3], timestamps_ms=[1] * 4)
    first.log({"a": 1.0}, step=5)
    first.close()

    again = MetricSink(writer, run_id, logged=last_steps(client.get_run(run_id)))
    again.log({"a": 2.0, "b": 2.0}, step=3)
    again.log_rows(["a", "b"], [[1.0, 1.0]] * 6, steps=[1, 2, 3, 4, 5, 6],
                   timestamps_ms=[2] * 6)
    again.close()

    steps = {key: sorted(s) for key, s in _steps_by_key(client, run_id).items()}
    assert steps == {"a": [0, 1, 2, 3, 5, 6], "b": [0, 1, 2, 3, 4, 5, 6]}
