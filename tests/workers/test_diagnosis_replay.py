"""The replay: a finished run's diagnosis again, from what it recorded in MLflow, without
training (workers/diagnostics/replay.py). A real run is trained into a local MLflow store and
replayed; the replay must reach the recorded verdict, findings and fixes. Not replayed: the
symmetry check's weight rows (not recorded) and the live diagnosis's detected_at_step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from services.contract.diagnostics_spec import DiagnosisThresholds
from tests.utils.settings import worker_settings
from tests.utils.specs import mlp_spec
from workers.diagnostics.replay import main, replay
from workers.run import run_experiment

REPLAYED = ("verdict", "findings", "baseline", "layers", "thresholds", "notes")


def _train(settings, spec) -> tuple[dict, str]:
    reports: list[dict] = []
    result = run_experiment("job-replay", spec, worker_settings(settings), reports.append)
    return result["diagnosis"], reports[0]["mlflow_run_id"]


def _replayable(diagnosis: dict) -> dict:
    return {key: diagnosis[key] for key in REPLAYED}


@pytest.mark.slow
@pytest.mark.parametrize("model", [
    {"hidden": [16, 16], "activation": "relu"},  # learns: healthy
    {"hidden": [32] * 4, "activation": "sigmoid"},  # a deep sigmoid net under a tiny rate
], ids=["relu", "deep-sigmoid"])
def test_a_replayed_run_gets_the_diagnosis_it_recorded(settings, model, capsys):
    spec = mlp_spec(model=model, diagnostics={"plots": False, "every_steps": 1},
                    training={"epochs": 6},
                    optimizer={"name": "sgd", "lr": 1e-4 if model["activation"] == "sigmoid"
                               else 0.1})
    recorded, run_id = _train(settings, spec)
    replayed = replay(run_id, settings.tracking_uri).as_dict()
    assert _replayable(json.loads(json.dumps(replayed))) == _replayable(recorded)
    # The measurements the verdicts rest on, too (all but the unrecorded weight rows).
    for key in ("progress", "first_last_grad_ratio", "grad_norm_median",
                "update_weight_ratio_median", "dead_fraction", "saturated_fraction"):
        assert replayed["evidence"].get(key) == recorded["evidence"].get(key), key
    assert "weight_row_spread" not in replayed["evidence"]  # not recorded: not replayed

    main([run_id, "--tracking-uri", settings.tracking_uri])
    assert json.loads(capsys.readouterr().out)["verdict"] == recorded["verdict"]


@pytest.mark.slow
def test_a_replay_with_other_thresholds_moves_the_verdict(settings, tmp_path: Path):
    spec = mlp_spec(diagnostics={"plots": False, "every_steps": 1}, training={"epochs": 4})
    recorded, run_id = _train(settings, spec)
    strict = replay(run_id, settings.tracking_uri,
                    thresholds=DiagnosisThresholds(chance_fraction=0.9999))
    assert recorded["verdict"] != "not_learning" and strict.verdict == "not_learning"
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    assert client.get_run(run_id).data.tags["layerwise.diagnosis"] == recorded["verdict"]
