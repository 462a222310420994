"""The examples small enough to run in seconds run to the end through the worker, and every
claim their `expect:` states holds, recorded in the result and in MLflow's expectations.json.
(`layerwise check examples/*.yaml` runs them all against a service.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from services.contract.spec import ExperimentSpec
from workers.run import WorkerSettings, run_experiment
from workers.submission.pipeline import check_experiment

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# A few hundred training steps on tiny data each; the others are checked by `layerwise check`.
# The last three are the runs stuck near chance that the first verdict called healthy.
FAST = ["perceptron-xor", "cover-theorem", "hopfield-recall", "init-zeros-symmetry",
        "residual-vs-plain-plain", "vanishing-sigmoid"]


@pytest.mark.parametrize("name", FAST)
def test_example_claims_hold(name: str, worker: WorkerSettings):
    spec = ExperimentSpec.model_validate(yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text()))
    spec = check_experiment(spec, []).spec

    result = run_experiment(f"claims-{name}", spec.model_dump(mode="json"), worker)

    judged = result["expectations"]
    assert [j["expect"] for j in judged] == [e.model_dump(mode="json") for e in spec.expect]
    assert all(j["held"] for j in judged), judged
    client = MlflowClient(tracking_uri=worker.tracking_uri)
    run = client.search_runs([client.get_experiment_by_name(spec.project).experiment_id],
                             filter_string=f"tags.`layerwise.job_id` = 'claims-{name}'")[0]
    path = client.download_artifacts(run.info.run_id, "expectations.json")
    assert json.loads(Path(path).read_text()) == judged
