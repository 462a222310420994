"""The norm pictures while a run trains: in MLflow as step-indexed images before the run ends,
once more at its last step, step 0 holding the latest; redrawn at most every few seconds."""

from __future__ import annotations

import re
import threading

from mlflow.tracking import MlflowClient

from services.contract.spec import ExperimentSpec
from tests.utils.settings import worker_settings
from tests.utils.specs import mlp_spec
from tests.utils.waiting import wait_until
from workers.diagnostics import live_plots
from workers.diagnostics.history import NormHistory
from workers.diagnostics.live_plots import IMAGE_SECTION, LivePlots
from workers.run import RunHooks, RunOptions, run_experiment
from workers.tracking.experiments import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND
from workers.tracking.run_tracker import RunTracker

IMAGE = re.compile(r"images/(?P<key>.+)\+step\+(?P<step>\d+)\+timestamp\+\d+\+(?P<id>[^+.]+)"
                   r"\.png$")


def _images(client: MlflowClient, run_id: str) -> list[tuple[str, int, str]]:
    """(key, step, file id) of each full-size image the run holds."""
    found = []
    for artifact in client.list_artifacts(run_id, "images"):
        match = IMAGE.match(artifact.path)
        if match:
            found.append((match["key"].replace("~", "/"), int(match["step"]), match["id"]))
    return found


class LooksWhileTraining(RunHooks):
    """At the end of epoch `epoch`, waits (training paused, the run open) until MLflow holds
    the pictures of an earlier epoch, and keeps what it saw."""

    def __init__(self, client: MlflowClient, epoch: int):
        self.client, self.epoch = client, epoch
        self.run_id = ""
        self.seen: list[tuple[str, int, str]] = []
        self.status = ""

    def on_run_start(self, tracker: RunTracker) -> None:
        self.run_id = tracker.run_id

    def on_epoch_end(self, trainer, metrics) -> None:
        if trainer.epoch + 1 != self.epoch:
            return
        self.seen = wait_until(lambda: [i for i in _images(self.client, self.run_id)
                                        if i[1] > 0 and i[0].endswith("update_norms")]
                               and _images(self.client, self.run_id), 60,
                               "the norm pictures in MLflow while the run trains")
        self.status = self.client.get_run(self.run_id).info.status


def test_the_norm_pictures_reach_mlflow_while_the_run_trains(settings, monkeypatch):
    # No wait between drawings but the drawing's own (its time / MAX_SHARE, seconds): the first
    # epoch end with norms in the history queues one, whatever this machine's speed, and the
    # run is paused at the third epoch's end, after it
    monkeypatch.setattr(live_plots, "REDRAW_EVERY_S", 0.0)
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    looking = LooksWhileTraining(client, epoch=3)
    spec = mlp_spec(model={"hidden": [16, 16], "activation": "sigmoid"},
                    training={"epochs": 4, "batch_size": 128})
    result = run_experiment("job-live-plots", spec, worker_settings(settings), lambda _: None,
                            RunOptions(hooks=looking))

    assert looking.status == "RUNNING"
    keys = {f"{IMAGE_SECTION}/grad_norm_heatmap", f"{IMAGE_SECTION}/update_norms"}
    first_steps = {step for key, step, _ in looking.seen if step > 0}
    assert {key for key, _, _ in looking.seen} == keys
    assert len(first_steps) == 1  # the first epoch's drawing (the next waits for it)

    final = _images(client, looking.run_id)
    last_step = result["steps"] - 1
    for key in keys:  # the first epoch's, the last step's, and the latest at step 0
        steps = sorted(step for k, step, _ in final if k == key)
        assert steps[0] == 0 and steps[-1] == last_step and first_steps < set(steps), steps
        assert [i for k, step, i in final if k == key and step == 0] == ["latest"]
    run = client.get_run(looking.run_id)
    assert run.data.tags["mlflow.loggedImages"] == "true"
    note = run.data.tags["mlflow.note.content"]
    assert (f"(#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
            "/artifacts/report.html?workflowType=machine_learning)") in note
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND


def test_redraws_wait_for_the_interval_and_for_the_last_drawing(settings):
    tracker = RunTracker.start(ExperimentSpec.model_validate(mlp_spec()), job_id="job-redraws",
                               tracking_uri=settings.tracking_uri,
                               home=str(settings.home_dir))
    history = NormHistory()
    layers = ["layers.0", "output"]
    now = [0.0]
    live = LivePlots(history, layers, tracker, every_s=10.0, clock=lambda: now[0])

    def epoch_at(t: float, step: int) -> None:
        now[0] = t
        history.record([f"{n}/{layer}" for n in ("grad_norm", "update_norm")
                        for layer in layers], [[1e-3, 1e-1, 1e-4, 1e-2]], [step])
        live.on_epoch_end(None, {})  # type: ignore[arg-type]
        done = threading.Event()
        tracker.sink.call_soon(done.set)  # after the drawing, if one was queued
        assert done.wait(60)

    # 10 s after the start, then 100 s: past the interval, and past 1 / MAX_SHARE times any
    # drawing here (under 2 s) and SPACING_SHARE of the time so far
    for t, step in ((4.0, 9), (9.9, 19), (10.5, 29), (15.0, 39), (100.0, 49), (104.0, 59)):
        epoch_at(t, step)
    tracker.finish()
    assert live.drawn_steps == [29, 49]
    steps = {step for _, step, i in _images(tracker.client, tracker.run_id) if i != "latest"}
    assert steps == {29, 49}
