"""docs/mlflow.md's list of an experiment run's artifacts against a real run's: every artifact
the run has is on the list, what the list says every such run has is there, and the model is
where the page says (a logged model, not a `model/` folder)."""

from __future__ import annotations

import re
from pathlib import Path

from mlflow.tracking import MlflowClient

from tests.utils.settings import worker_settings
from tests.utils.specs import mlp_spec
from workers.run import run_experiment

PAGE = Path(__file__).resolve().parents[2] / "docs" / "mlflow.md"
# What every experiment run with the default diagnostics has (the rest depend on the spec).
ALWAYS = {"spec.yaml", "layers.json", "diagnosis.json", "report.html", "images/",
          "plots/grad_norm_heatmap.png", "plots/update_norms.png", "plots/loss_accuracy.png",
          "plots/activation_stats.png"}


def documented_rows() -> dict[str, str]:
    """Each path of the experiment run's artifact table -> its row's text."""
    page = PAGE.read_text(encoding="utf-8")
    section = page.split("An experiment's (and a trial's) run:", 1)[1]
    section = section.split("A sweep's parent run:", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            first, rest = line[2:].split(" | ", 1)
            for path in re.findall(r"`([^`]+)`", first):
                rows[path] = rest
    return rows


def _artifacts(client: MlflowClient, run_id: str) -> set[str]:
    """The run's files by path, folders other than plots/ as `name/`."""
    found = set()
    for artifact in client.list_artifacts(run_id):
        if not artifact.is_dir:
            found.add(artifact.path)
        elif artifact.path == "plots":
            found |= {a.path for a in client.list_artifacts(run_id, "plots")}
        else:
            found.add(f"{artifact.path}/")
    return found


def test_a_runs_artifacts_are_the_ones_the_page_lists(settings):
    reports: list[dict] = []
    run_experiment("job-artifacts-doc", mlp_spec(
        model={"hidden": [16, 16], "activation": "sigmoid"},
        training={"epochs": 2, "batch_size": 256}), worker_settings(settings), reports.append)
    run_id = next(r["mlflow_run_id"] for r in reports if "mlflow_run_id" in r)
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    has = _artifacts(client, run_id)
    rows = documented_rows()

    assert not has - set(rows), f"artifacts of the run not in docs/mlflow.md: {has - set(rows)}"
    assert not ALWAYS - has, f"listed, missing from the run: {ALWAYS - has}"
    assert ALWAYS <= set(rows)
    # The model: an MLflow logged model, the run's output, and no model/ folder.
    assert "model/" not in has and "no `model/`" in rows["model/"]
    assert client.get_run(run_id).outputs.model_outputs
