"""Every examples/regularization-*.yaml (and the zero-init symmetry demo) is accepted at
submission and runs, two epochs long, through the worker into MLflow with what its comment
tells the reader to look at."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from services.contract.spec import ExperimentSpec
from tests.utils.specs import merge
from workers.run import WorkerSettings, run_experiment
from workers.submission.pipeline import check_experiment

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = sorted(EXAMPLES.glob("regularization-*.yaml")) + [EXAMPLES / "init-zeros-symmetry.yaml"]
PENALIZED = {"regularization-l1", "regularization-l2", "regularization-activity"}


def test_every_regularizer_has_an_example():
    names = {f.stem.removeprefix("regularization-") for f in FILES}
    assert {"none", "l1", "l2", "activity", "max-norm", "dropout", "dropout-mc",
            "input-noise", "bit-flip", "early-stopping"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_example_runs_small_and_logs_what_its_comment_points_at(path: Path,
                                                                worker: WorkerSettings):
    text = path.read_text()
    assert text.startswith("# ") and "In MLflow" in text, "say what to look at in MLflow"
    small = {"training": {"epochs": 2}, "model": {"hidden": [32]}}  # the setting, not the size
    spec = ExperimentSpec.model_validate(merge(yaml.safe_load(text), small))
    spec = check_experiment(spec, []).spec

    result = run_experiment(f"example-{path.stem}", spec.model_dump(mode="json"), worker)

    client = MlflowClient(tracking_uri=worker.tracking_uri)
    runs = client.search_runs(client.get_experiment_by_name("examples").experiment_id,
                              filter_string=f"tags.`layerwise.job_id` = 'example-{path.stem}'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    history = {key: client.get_metric_history(runs[0].info.run_id, key)
               for key in ("train/loss", "val/loss", "train/penalty")}
    assert len(history["train/loss"]) == len(history["val/loss"]) == 2
    assert result["val/loss"] > 0 and result["epochs_run"] == 2
    if path.stem in PENALIZED:
        assert [m.step for m in history["train/penalty"]] == [m.step for m in
                                                               history["train/loss"]]
        assert all(m.value > 0 for m in history["train/penalty"])
    else:
        assert history["train/penalty"] == []
    if "early_stopping" in text:
        val_loss = [m.value for m in sorted(history["val/loss"], key=lambda m: m.step)]
        assert result["best_epoch"] == val_loss.index(min(val_loss)) + 1
        assert result["best/val/loss"] == pytest.approx(min(val_loss))
        assert result["best/val/loss"] == result["val/loss"]  # the best weights were restored
