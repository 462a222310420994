"""`report.html`: the diagnosis in words, its fixes as spec changes, the plots inline, and the
page as a browser shows it (Debian's chromium, headless, with no network)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from models.base import DataShape
from models.builders import build_model
from services.contract.spec import ExperimentSpec
from tests.utils.specs import mlp_spec
from workers.diagnostics import training_plots
from workers.diagnostics.report import render_report
from workers.diagnostics.session import Diagnostics

SPEC = {"name": "deep <sigmoid>", "model": {"kind": "mlp", "hidden": [64, 64],
                                            "activation": "sigmoid", "init": "glorot_normal"},
        "optimizer": {"name": "sgd", "lr": 0.1}, "training": {"epochs": 3},
        "data": {"name": "digits", "params": {"huge": list(range(50))}}}
DIAGNOSIS = {
    "verdict": "saturated",
    "findings": [
        {"verdict": "saturated", "evidence": {"saturated_fraction": 0.83},
         "layers": ["layers.1"], "fix": {"model.activation": "relu"},
         "alternatives": [{"optimizer.lr": 0.01, "model.init": "he_uniform"}]},
        {"verdict": "vanishing", "evidence": {"first_last_grad_ratio": 2.5e-5},
         "layers": ["layers.0", "layers.1"], "fix": {"model.init": "he_normal"}},
        {"verdict": "slow", "evidence": {"update_weight_ratio": {"layers.0": 1e-5}},
         "layers": [], "fix": {"optimizer.lr": 0.5}},
    ],
    "baseline": {"kind": "majority", "loss": 2.3026, "accuracy": 0.1},
    "detected_at_step": 40,
    "notes": ["<b>not bold</b>"],
    "thresholds": {"saturated_fraction": 0.5},
}
METRICS = {"val/loss": 2.29, "val/accuracy": 0.12, "train/loss": 2.3, "epochs_run": 3}


def _plots() -> dict[str, bytes]:
    steps = np.arange(0, 60, 10)
    layers = ["layers.0", "layers.1", "output"]
    grads = np.outer(np.linspace(1, 2, len(steps)), [1e-5, 1e-3, 1e-1])
    keys = ["activation/saturated_fraction/layers.1", "activation/saturated_fraction"]
    stats = np.linspace(0.2, 0.8, len(steps))[:, None].repeat(2, 1)
    figures = {"grad_norm_heatmap": training_plots.grad_norm_heatmap(steps, layers, grads),
               "activation_stats": training_plots.activation_stats(
                   steps, keys, stats, {"layers.1": "sigmoid"})}
    return {name: training_plots.png_bytes(figure) for name, figure in figures.items()}


def test_the_report_says_the_verdict_findings_and_fixes_in_words():
    page = render_report(SPEC, METRICS, DIAGNOSIS, _plots())
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    assert "sigmoid-like units sit on their flat ends" in text  # the verdict's meaning
    for said in ("model.activation: sigmoid -> relu", "model.init: glorot_normal -> he_normal",
                 "optimizer.lr: 0.1 -> 0.5", "sigmoid-like activations saturated: 0.83",
                 "last layer's (median over steps): 2.5e-05", "layers.0: 1e-05", "step 40",
                 "If that does not help, in turn:",
                 "optimizer.lr: 0.1 -> 0.01; model.init: glorot_normal -> he_uniform"):
        assert said in text, said
    assert "Gradients vanish" in text and "Training is slow" in text
    assert page.count('src="data:image/png;base64,') == 2
    # User strings are escaped: the name and the note are text, not markup.
    assert "deep &lt;sigmoid&gt;" in page and "<b>not bold</b>" not in page
    assert "huge" not in page  # dataset params are left to spec.yaml
    assert not re.search(r"https?://", page)


def test_the_baseline_sits_beside_the_runs_result():
    page = render_report(SPEC, METRICS, DIAGNOSIS, {})
    row = re.search(r"<td>accuracy</td>(.*?)</tr>", page)
    assert row and re.findall(r">([^<]*)</td>", row.group(1)) == ["0.1", "0.12"]


def test_an_old_diagnosis_and_missing_keys_still_render():
    old = {"verdict": "vanishing", "findings": ["saturated", "vanishing"],
           "evidence": {"first_last_grad_ratio": 1e-6}, "layers": ["layers.0", "output"],
           "notes": []}
    page = render_report({"name": "old"}, {}, old, {})
    assert page.count('class="finding"') == 2 and "1e-06" in page and "layers.0" in page
    assert "Gradients vanish" in page
    assert "measured nothing" in render_report({}, {}, None, {})
    assert "No problem was found" in render_report({"name": "x"}, {}, {"verdict": "healthy"}, {})


class _Sink:
    def call_soon(self, action) -> None:
        action()

    def log(self, metrics, step) -> None:
        pass


class _Artifacts:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def log_artifact(self, path: str, folder: str | None) -> None:
        name = Path(path).name
        self.files[f"{folder}/{name}" if folder else name] = Path(path).read_bytes()


class _Tracker:
    """What the session writes through, kept in memory."""

    def __init__(self) -> None:
        self.sink, self.artifacts = _Sink(), _Artifacts()

    def log_text(self, text: str, artifact_file: str) -> None:
        self.artifacts.files[artifact_file] = text.encode()


def test_the_session_writes_the_report_with_the_plots_it_drew():
    spec = ExperimentSpec.model_validate(mlp_spec(diagnostics={"plots": False}))
    shape = DataShape((4,), 3, "classification")
    tracker = _Tracker()
    session = Diagnostics(spec, build_model(spec.model, shape), tracker, shape)
    session.sink.log_plot(
        lambda: training_plots.loss_accuracy({"train/loss": ([0, 1], [2.0, 1.0])}),
        "loss_accuracy")
    split = (torch.zeros(8, 4), torch.zeros(8, dtype=torch.long))
    session.after_training({"train": split, "val": split}, None, {"val/loss": 0.5}, step=1,
                           device=torch.device("cpu"))
    png = tracker.artifacts.files["plots/loss_accuracy.png"]
    page = tracker.artifacts.files["report.html"].decode()
    assert base64.b64encode(png).decode() in page and "val/loss" in page


# -- kinds without gradients ---------------------------------------------------------------------
def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def _setting_rows(page: str) -> list[str]:
    spec = page.split("<h2>Spec</h2>", 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr><td>([^<]*)</td>", spec)


def _report_of_a_real_run(tmp_path: Path, spec: dict) -> tuple[str, dict[str, bytes]]:
    """Train `spec` in process (a temporary MLflow store) and read back its report.html and
    its plots' PNGs, as MLflow keeps them."""
    from mlflow.tracking import MlflowClient

    from tests.utils.settings import local_settings, worker_settings
    from workers.run import run_experiment

    settings = local_settings(tmp_path)
    updates: list[dict] = []
    run_experiment("job-report", spec, worker_settings(settings), updates.append)
    run_id = next(u["mlflow_run_id"] for u in updates if "mlflow_run_id" in u)
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    folder = Path(client.download_artifacts(run_id, "", str(tmp_path / "artifacts")))
    plots = {p.stem: p.read_bytes() for p in (folder / "plots").glob("*.png")}
    return (folder / "report.html").read_text(), plots


@pytest.mark.slow
def test_a_hopfield_report_speaks_of_its_own_checks_shows_their_plots_and_no_optimizer(
        tmp_path: Path):
    spec = {"name": "hopfield-report", "project": "tests",
            "data": {"name": "patterns", "params": {"source": "random", "patterns": 4,
                                                    "size": 64, "copies": 4}},
            "model": {"kind": "hopfield", "capacity_max_patterns": 6, "capacity_trials": 1},
            "training": {"epochs": 2, "batch_size": 64}}
    page, plots = _report_of_a_real_run(tmp_path, spec)
    text = _text(page)
    verdict = re.search(r'id="verdict">([^<]*)<', page)
    assert verdict and verdict.group(1) == "healthy", text[:2000]
    assert "gradients reach every layer" not in text  # the MLP's words, not this kind's
    assert "No problem was found by this kind's own checks" in text
    for said in ("recall restored 100% of the validation patterns exactly",
                 "the recalled states' mean energy did not rise",
                 "patterns stored per unit, within the ~0.138"):
        assert said in text, said
    # Its own plots are in the page, inlined, as MLflow keeps them.
    for name in ("hopfield_recall", "hopfield_energy", "hopfield_capacity"):
        assert base64.b64encode(plots[name]).decode() in page, name
    assert "capacity: recall accuracy of random patterns" in text
    rows = _setting_rows(page)
    assert "model.update" in rows and "training.epochs" in rows
    assert not [r for r in rows if r.startswith("optimizer.")], rows  # it has no optimizer
    assert "training.precision" not in rows and "training.grad_clip_norm" not in rows


def test_an_rbm_report_says_its_reconstruction_and_free_energy():
    diagnosis = {"verdict": "healthy", "findings": [
        {"verdict": "no_gradients", "evidence": {
            "reconstruction_error_by_epoch": [0.3, 0.2, 0.12],
            "free_energy_by_epoch": [-10.0, -12.0, -13.5], "reconstruction_improving": True,
            "recall_accuracy": 0.0}, "layers": ["rbm"]}]}
    spec = {"name": "rbm", "model": {"kind": "rbm", "lr": 0.5},
            "optimizer": {"name": "adam", "lr": 0.001}, "training": {"epochs": 3}}
    page = render_report(spec, {}, diagnosis, {"rbm_filters": b"png"})  # as MLflow re-reads it
    text = _text(page)
    assert "the reconstruction error fell over the epochs (0.3 to 0.12)" in text
    assert "the free energy stayed finite" in text
    assert "recall restored" not in text  # not a check of this kind
    assert "the first hidden units' weights" in text  # its plot, in words
    assert _setting_rows(page) == ["model.kind", "model.lr", "training.epochs"]
    failing = {"verdict": "not_learning", "findings": [
        {"verdict": "not_learning", "evidence": {"reconstruction_error_by_epoch": [0.3, 0.3]}},
        {"verdict": "no_gradients", "evidence": {"reconstruction_error_by_epoch": [0.3, 0.3],
                                                 "reconstruction_improving": False}}]}
    text = _text(render_report(spec, {}, failing, {}))
    assert "its reconstruction error did not fall over the epochs" in text
    assert "its own checks measured what follows" in text  # the no_gradients finding
    assert "reconstruction error, by epoch: [0.3, 0.3]" in text


def test_a_kind_with_gradients_still_lists_its_optimizer():
    page = render_report(SPEC, METRICS, {"verdict": "healthy", "findings": []}, {})
    rows = _setting_rows(page)
    assert "optimizer.name" in rows and "optimizer.lr" in rows
    assert "gradients reach every layer" in page
    # The model's word wins over the diagnosis's: no optimizer row for a model without one.
    rows = _setting_rows(render_report(SPEC, METRICS, None, {}, uses_gradients=False))
    assert "optimizer.lr" not in rows and "model.hidden" in rows
    page = render_report(SPEC, {}, {"verdict": "healthy"}, {}, uses_gradients=False)
    assert "gradients reach every layer" not in page and "own checks" in page


@pytest.mark.slow
def test_an_mlp_report_still_lists_its_optimizer_and_speaks_of_gradients(tmp_path: Path):
    page, plots = _report_of_a_real_run(tmp_path, mlp_spec(
        model={"hidden": [16]}, training={"epochs": 2, "batch_size": 256}))
    rows = _setting_rows(page)
    assert {"optimizer.name", "optimizer.lr", "training.precision"} <= set(rows), rows
    assert "own checks" not in page and 'id="pretraining"' not in page
    assert base64.b64encode(plots["loss_accuracy"]).decode() in page


@pytest.mark.slow
def test_an_autoencoders_rbm_pretraining_stages_are_reported_with_their_plot(tmp_path: Path):
    spec = {"name": "stacked-rbm", "project": "tests", "data": {"name": "digits"},
            "model": {"kind": "autoencoder", "hidden": [16, 8], "pretrain_with": "rbm",
                      "pretrain_epochs": 2, "pretrain_batch_size": 256},
            "optimizer": {"name": "adam", "lr": 0.01},
            "training": {"epochs": 1, "batch_size": 256}}
    page, plots = _report_of_a_real_run(tmp_path, spec)
    text = _text(page)
    assert "each layer was an RBM trained by contrastive divergence, without gradients" in text
    stages = re.findall(r"layer (\d): the reconstruction error (fell|did not fall) over its 2 "
                        r"epochs", text)
    assert [layer for layer, _ in stages] == ["0", "1"], text
    assert base64.b64encode(plots["pretraining"]).decode() in page
    assert "optimizer.lr" in _setting_rows(page)  # its fine-tuning has an optimizer


def test_every_plot_a_run_can_log_has_a_caption_that_says_what_to_look_at():
    import re
    from pathlib import Path

    from workers.diagnostics.report_words import PLOT_CAPTIONS

    root = Path(__file__).resolve().parents[2] / "workers"
    logged = {name for path in root.rglob("*.py") for name in re.findall(
        r'(?:log_plot|plot)\(lambda[^"]*"([a-z_]+)"\)', path.read_text())}
    assert {"grad_norm_heatmap", "update_norms", "loss_accuracy", "fit"} <= logged
    for name in logged:
        assert name in PLOT_CAPTIONS, f"plot {name!r} has no caption in report_words"
        assert ":" in PLOT_CAPTIONS[name], f"{name}'s caption does not say what to look at"
