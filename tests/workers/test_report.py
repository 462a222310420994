"""`report.html`: the diagnosis in words, its fixes as spec changes, the plots inline, and the
page as a browser shows it (Debian's chromium, headless, with no network)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import numpy as np
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
