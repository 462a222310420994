"""After-training analyses the spec's `analysis` section switches on: input sensitivity (and
retraining on the top-k inputs), adversarial robustness, gradients through time; and the fit
picture of a 1-D regression. Results go out as metrics, JSON artifacts and plots."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any, Protocol

import torch
from matplotlib.figure import Figure

from models.base import DataShape
from services.contract.spec import ExperimentSpec
from workers.diagnostics.analysis import analysis_plots as plots
from workers.diagnostics.analysis.adversarial import deepfool, fgsm
from workers.diagnostics.analysis.bptt import gradient_through_time
from workers.diagnostics.analysis.common import Splits, analysis_sample, picture_of
from workers.diagnostics.analysis.fit import fit_curve, has_fit
from workers.diagnostics.analysis.prune import pruning_metrics, retrain_on
from workers.diagnostics.analysis.sensitivity import sensitivity


class Recorder(Protocol):
    """Where analyses put what they find (the run's MLflow run, in a worker)."""

    def log_json(self, payload: Any, artifact_file: str) -> None: ...

    def log_plot(self, build: Callable[[], Figure], name: str) -> None: ...


def run_analyses(spec: ExperimentSpec, model: Any, objective: Any, splits: Splits,
                 shape: DataShape, final: dict[str, Any], recorder: Recorder, *,
                 device: torch.device, plots_on: bool = True) -> dict[str, float]:
    """Runs what `spec.analysis` asks for; returns the metrics found (`sensitivity/...`,
    `robust/...`, `bptt/...`). `final` holds the trained model's final metrics."""
    analysis = spec.analysis
    metrics: dict[str, float] = {}
    plot = recorder.log_plot if plots_on else (lambda build, name: None)
    if plots_on and has_fit(shape):
        x, y = analysis_sample(splits, analysis.max_examples)
        fit = fit_curve(model, objective, x, y, splits["train"][0])
        plot(lambda: plots.fit_plot(fit.x, fit.y, fit.grid, fit.prediction, fit.hidden), "fit")
    if analysis.sensitivity or analysis.prune_top_k:
        metrics |= _sensitivity(spec, model, objective, splits, shape, final, recorder, plot,
                                device)
    adversarial = analysis.adversarial
    if adversarial.fgsm_eps or adversarial.deepfool:
        metrics |= _robustness(spec, model, objective, splits, shape, recorder, plot)
    if analysis.bptt_norms:
        x, y = analysis_sample(splits, analysis.max_examples)
        through = gradient_through_time(model, objective, x, y, analysis.bptt_steps or None)
        if through is not None:
            recorder.log_json(through.as_dict(), "bptt_norms.json")
            plot(lambda: plots.bptt_plot(through), "bptt_norms")
            metrics |= through.decay()
    return metrics


def _sensitivity(spec: ExperimentSpec, model: Any, objective: Any, splits: Splits,
                 shape: DataShape, final: dict[str, Any], recorder: Recorder,
                 plot: Callable[[Callable[[], Figure], str], None], device: torch.device
                 ) -> dict[str, float]:
    x, y = analysis_sample(splits, spec.analysis.max_examples)
    found = sensitivity(model, objective, x, y)
    recorder.log_json(found.as_dict(), "sensitivity.json")
    plot(lambda: plots.sensitivity_plot(found, picture_of(shape)), "sensitivity")
    k = spec.analysis.prune_top_k
    if not k:
        return {}
    features = found.ranking[:k]
    pruned = retrain_on(spec, shape, objective, splits, features, device)
    recorder.log_json({"features": features, "result": pruned}, "sensitivity_pruned.json")
    return pruning_metrics(final, pruned, k)


def _robustness(spec: ExperimentSpec, model: Any, objective: Any, splits: Splits,
                shape: DataShape, recorder: Recorder,
                plot: Callable[[Callable[[], Figure], str], None]) -> dict[str, float]:
    settings = spec.analysis.adversarial
    x, y = analysis_sample(splits, settings.max_examples)
    metrics: dict[str, float] = {}
    report: dict[str, Any] = {"examples": len(x)}
    grid = fgsm(model, objective, x, y, settings.fgsm_eps) if settings.fgsm_eps else None
    if grid is not None:
        metrics["robust/clean_accuracy"] = grid.clean_accuracy
        for eps, accuracy in zip(grid.eps, grid.accuracy, strict=True):
            metrics[f"robust/fgsm_accuracy/eps_{eps:g}"] = accuracy
        flips = [v for v in grid.min_flip_l2 if v is not None]
        if flips:
            metrics["robust/fgsm_min_flip_l2_mean"] = statistics.fmean(flips)
        report["fgsm"] = {"eps": grid.eps, "accuracy": grid.accuracy,
                          "clean_accuracy": grid.clean_accuracy,
                          "min_flip_eps": grid.min_flip_eps, "min_flip_l2": grid.min_flip_l2}
    fool = None
    if settings.deepfool:
        fool = deepfool(model, x, y, max_iter=settings.deepfool_max_iter,
                        overshoot=settings.deepfool_overshoot)
        metrics["robust/deepfool_flipped_fraction"] = fool.flipped_fraction
        if fool.perturbation_l2:
            metrics["robust/deepfool_l2_mean"] = statistics.fmean(fool.perturbation_l2)
            metrics["robust/deepfool_l2_median"] = statistics.median(fool.perturbation_l2)
            metrics["robust/deepfool_relative_l2_median"] = statistics.median(fool.relative_l2)
        report["deepfool"] = {"attacked": fool.correct, "flipped_fraction": fool.flipped_fraction,
                              "l2": fool.perturbation_l2, "relative_l2": fool.relative_l2}
    recorder.log_json(report, "adversarial.json")
    if grid is not None or (fool is not None and fool.perturbation_l2):
        plot(lambda: plots.robustness_plot(grid, fool), "adversarial")
    picture = picture_of(shape)
    if fool is not None and picture is not None and fool.correct:
        plot(lambda: plots.adversarial_examples(picture, fool, grid), "adversarial_examples")
    return metrics
