"""Layerwise's MLflow experiments open in MLflow's model-training view: tagged as such when
created, and when an existing one has no kind yet; a kind someone chose is kept."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from workers.tracking.experiments import (
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING_KIND,
    ensure_experiment,
    run_page_path,
)


def test_experiments_are_model_training_ones_new_or_old_and_a_chosen_kind_stays(settings):
    uri, home = settings.tracking_uri, str(settings.home_dir)
    client = MlflowClient(tracking_uri=uri)
    made = ensure_experiment(client, "fresh", tracking_uri=uri, home=home)
    assert client.get_experiment(made).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND

    older = client.create_experiment("made-before")  # as an earlier version left it
    assert ensure_experiment(client, "made-before", tracking_uri=uri, home=home) == older
    assert client.get_experiment(older).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND

    chosen = client.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    ensure_experiment(client, "chosen", tracking_uri=uri, home=home)
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_run_links_open_the_model_training_view():
    assert run_page_path("3", "abc", "artifacts/report.html") == (
        "#/experiments/3/runs/abc/artifacts/report.html?workflowType=machine_learning")
