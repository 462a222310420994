"""The live diagnosis: called only once a problem holds, carried in the progress and the tag,
and, with `diagnostics.on_problem: stop`, ending a doomed run early; then real short runs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from mlflow.tracking import MlflowClient

from services.contract.diagnostics_spec import DiagnosticsSpec
from tests.utils.settings import local_settings, worker_settings
from tests.utils.specs import mlp_spec
from workers.diagnostics.live import LiveDiagnosis
from workers.diagnostics.verdicts import Diagnosis, Finding
from workers.run import RunOptions, run_experiment
from workers.training.loop import Diverged


def _diagnosis(*verdicts: str, phase: str | None = None) -> Diagnosis:
    evidence = {"phase": phase} if phase else {"x": 1}
    return Diagnosis(verdicts[0] if verdicts else "healthy",
                     [Finding(v, dict(evidence)) for v in verdicts], None, None, [], {}, [], {})


class FakeTrainer(SimpleNamespace):
    def request_stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason


def _feed(live: LiveDiagnosis, sequence: list[Diagnosis], epochs: int) -> FakeTrainer:
    trainer = FakeTrainer(epochs=epochs, epoch=0, step=0, stop_reason=None)
    queue = iter(sequence)
    live.judge = lambda total: next(queue)
    for epoch in range(len(sequence)):
        trainer.epoch, trainer.step = epoch, (epoch + 1) * 10
        live.on_epoch_end(trainer, {})
    return trainer


def test_a_problem_is_called_once_it_holds_and_then_stops_the_run_when_asked():
    tags: list[str] = []
    live = LiveDiagnosis(lambda total: _diagnosis(), DiagnosticsSpec(on_problem="stop"),
                         tags.append)
    blip = [_diagnosis(), _diagnosis("exploding"), _diagnosis(), _diagnosis()]
    trainer = _feed(live, blip, epochs=10)
    assert live.verdict == "healthy" and tags == [] and trainer.stop_reason is None

    live = LiveDiagnosis(lambda total: _diagnosis(), DiagnosticsSpec(on_problem="stop"),
                         tags.append)
    trainer = _feed(live, [_diagnosis(), _diagnosis("symmetric"), _diagnosis("symmetric")], 10)
    assert live.verdict == "symmetric" and tags == ["symmetric"]
    assert live.detected_at_step == 19  # the step the condition appeared at, not confirmed at
    assert trainer.stop_reason == "diagnosis: symmetric"
    update = live.decorate({"progress": {"epoch": 3}})
    assert update["progress"]["diagnosis"]["verdict"] == "symmetric"
    assert update["progress"]["epoch"] == 3

    live = LiveDiagnosis(lambda total: _diagnosis(), DiagnosticsSpec(), tags.append)
    trainer = _feed(live, [_diagnosis("symmetric")] * 3, 10)
    assert live.verdict == "symmetric" and trainer.stop_reason is None  # on_problem: continue


def test_curve_problems_wait_for_a_share_of_the_run():
    live = LiveDiagnosis(lambda total: _diagnosis(), DiagnosticsSpec(), lambda v: None,
                         budget=None)  # judged at every epoch end
    _feed(live, [_diagnosis("not_learning")] * 2 + [_diagnosis("vanishing", phase="early")] * 2,
          epochs=20)
    assert live.verdict == "healthy"  # every run starts at its baseline
    _feed(live, [_diagnosis("not_learning")] * 8, epochs=20)
    assert live.verdict == "not_learning"
    assert live.payload is not None and live.payload["candidate"] == "not_learning"


def test_after_the_first_epochs_judging_stays_within_its_budget():
    def costly(total: int) -> Diagnosis:  # a judgement that costs far more than the "epochs"
        time.sleep(0.002)
        return _diagnosis("dead_units")

    live = LiveDiagnosis(costly, DiagnosticsSpec(), lambda v: None, budget=0.01,
                         first_epochs=3)
    trainer = FakeTrainer(epochs=20, epoch=0, step=0, stop_reason=None)
    for epoch in range(20):
        trainer.epoch, trainer.step = epoch, (epoch + 1) * 10
        live.on_epoch_end(trainer, {})
    assert [step for step, _ in live.seen] == [9, 19, 29, 199]  # the first three, the last
    assert live.verdict == "dead_units" and live.detected_at_step == 9
    assert live.spent >= 4 * 0.002


def test_a_problem_seen_once_is_judged_again_at_the_next_epoch_within_a_larger_budget():
    live = LiveDiagnosis(lambda total: _diagnosis(), DiagnosticsSpec(), lambda v: None,
                         budget=0.005, first_epochs=3)
    trainer = FakeTrainer(epochs=20, epoch=10, step=110, stop_reason=None)
    live._started = time.perf_counter() - 1.0
    live.spent = 0.01  # 1% of the training's time so far: over the budget of 0.5%
    live.seen = [(99, "healthy")]
    assert not live.due(trainer)
    live.seen = [(99, "not_learning")]  # suspected, not called: confirmed or refuted next
    assert live.due(trainer)
    live.verdict = "not_learning"  # called already: nothing waits for confirmation
    assert not live.due(trainer)
    live.verdict, live.spent = "healthy", 0.03  # past the confirmation budget too
    assert not live.due(trainer)


def test_a_sample_is_taken_for_each_judged_epoch_but_the_last():
    sampled: list[int] = []
    live = LiveDiagnosis(lambda total: _diagnosis(), DiagnosticsSpec(), lambda v: None,
                         sample=sampled.append, budget=None)
    _feed(live, [_diagnosis()] * 4, epochs=4)
    assert sampled == [10, 20, 30]  # the last epoch's sample is taken after training


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    """One MLflow store for this module's runs: creating a store costs more than a run."""
    return local_settings(tmp_path_factory.mktemp("live"))


def _run(settings, spec):
    reports: list[dict] = []
    result = run_experiment("job-live", spec, worker_settings(settings), reports.append)
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    return result, reports, client.get_run(reports[0]["mlflow_run_id"])


ZERO_INIT = {"model": {"hidden": [32, 32], "activation": "sigmoid", "init": "zeros"},
             "optimizer": {"name": "sgd", "lr": 0.5},
             "training": {"epochs": 20, "batch_size": 32},
             "diagnostics": {"on_problem": "stop", "plots": False}}


@pytest.mark.slow
def test_a_zero_init_mlp_is_called_symmetric_live_and_stopped(settings):
    result, reports, run = _run(settings, mlp_spec(**ZERO_INIT))
    assert result["stop_reason"] == "diagnosis: symmetric"
    assert result["epochs_run"] < 5  # stopped as soon as the condition held
    diagnosis = result["diagnosis"]
    assert diagnosis["verdict"] == "symmetric", diagnosis["findings"]
    assert diagnosis["findings"][0]["fix"] == {"model.init": "glorot_normal"}
    assert diagnosis["findings"][0]["layers"] == ["layers.0", "layers.1"]
    assert diagnosis["baseline"]["kind"] == "class_prior"
    assert diagnosis["detected_at_step"] is not None
    assert run.data.tags["layerwise.diagnosis"] == "symmetric"
    live = [r["progress"]["diagnosis"] for r in reports if "diagnosis" in r.get("progress", {})]
    assert live and live[-1]["verdict"] == "symmetric"


@pytest.mark.slow
def test_a_healthy_mlp_is_not_stopped_and_a_hopfield_net_gets_its_own_checks(settings):
    result, reports, run = _run(settings, mlp_spec(
        training={"epochs": 3}, diagnostics={"on_problem": "stop", "plots": False}))
    assert "stop_reason" not in result
    assert result["diagnosis"]["verdict"] == "healthy", result["diagnosis"]["findings"]
    assert run.data.tags["layerwise.diagnosis"] == "healthy"
    assert reports[-1]["progress"]["diagnosis"]["verdict"] == "healthy"

    hopfield = {"name": "hopfield", "project": "tests", "model": {"kind": "hopfield"},
                "data": {"name": "patterns", "params": {
                    "source": "random", "patterns": 5, "size": 64, "corruption": 0.1,
                    "copies": 4}},
                "training": {"epochs": 2}, "diagnostics": {"plots": False}}
    result, _, _ = _run(settings, hopfield)
    diagnosis = result["diagnosis"]
    assert diagnosis["verdict"] == "healthy"
    own = diagnosis["findings"][0]
    assert own["verdict"] == "no_gradients" and own["evidence"]["recall_accuracy"] == 1.0
    assert own["evidence"]["energy_decreasing"] is True
    assert diagnosis["baseline"]["kind"] == "corrupted_input"


@pytest.mark.slow
def test_a_diverging_run_fails_diagnosed_diverged_with_a_fix(settings):
    spec = mlp_spec(optimizer={"name": "sgd", "lr": 10.0}, model={"activation": "identity"},
                    training={"epochs": 3}, diagnostics={"plots": False})
    reports: list[dict] = []
    with pytest.raises(Diverged):
        run_experiment("job-nan", spec, worker_settings(settings), reports.append)
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    run_id = reports[0]["mlflow_run_id"]
    assert client.get_run(run_id).data.tags["layerwise.diagnosis"] == "diverged"
    with open(client.download_artifacts(run_id, "diagnosis.json",
                                        str(settings.home_dir))) as handle:
        diagnosis = json.load(handle)
    # From the remedies table like every verdict: SGD at 10 goes to its usual rate, clipped,
    # with the table's alternatives to try next.
    assert diagnosis["findings"][0]["fix"]["optimizer.lr"] == 0.1
    assert diagnosis["findings"][0]["alternatives"]
    # detected at the step whose loss was not finite, which the live diagnosis reports too
    step = diagnosis["findings"][0]["evidence"]["step"]
    assert diagnosis["detected_at_step"] == step
    assert f"diverged at step {step}:" in diagnosis["findings"][0]["evidence"]["error"]
    live = reports[-1]["progress"]["diagnosis"]
    assert live["verdict"] == "diverged" and live["detected_at_step"] == step


PATHOLOGIES = Path(__file__).resolve().parents[2] / "examples" / "pathologies"


@pytest.mark.slow
def test_dead_relus_are_called_live_before_the_last_epoch_and_not_without_the_live_diagnosis(
        settings):
    spec = yaml.safe_load((PATHOLOGIES / "dead_units-mlp-relu-huge-lr.yaml").read_text())
    spec.pop("expect")
    result, reports, _ = _run(settings, spec)
    diagnosis = result["diagnosis"]
    assert diagnosis["verdict"] == "dead_units", diagnosis["findings"]
    per_epoch = result["steps"] // result["epochs_run"]
    # called from a sample at an epoch end, not from the one after training
    assert diagnosis["detected_at_step"] is not None
    assert diagnosis["detected_at_step"] < result["steps"] - per_epoch

    reports = []
    result = run_experiment("job-live-off", spec, worker_settings(settings), reports.append,
                            RunOptions(live_diagnosis=False))
    assert result["diagnosis"]["verdict"] == "dead_units"  # the diagnosis after training
    assert result["diagnosis"]["detected_at_step"] is None
    assert not any("diagnosis" in r.get("progress", {}) for r in reports)
