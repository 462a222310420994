"""The spec's `diagnostics` section: what is measured during training, and the thresholds of
each verdict."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from services.contract.sections import Strict


class DiagnosisThresholds(Strict):
    """When the diagnosis calls a run vanishing, exploding, dead, saturated, symmetric, not
    learning, unstable, slow or overfitting."""

    vanishing_ratio: float = Field(
        1e-3, gt=0.0, lt=1.0, description="vanishing: the first layer's gradient norm is below "
                                          "this fraction of the last layer's (median over "
                                          "the run)")
    exploding_ratio: float = Field(
        1e3, gt=1.0, description="exploding: the first layer's gradient norm is above this "
                                 "multiple of the last layer's (median over the run)")
    exploding_growth: float = Field(
        1e3, gt=1.0, description="exploding: grad_norm/total rises to this multiple of its "
                                 "median over the first tenth of the run")
    dead_fraction: float = Field(
        0.5, gt=0.0, le=1.0, description="dead_units: more than this fraction of ReLU units "
                                         "output 0 for every sampled example")
    saturated_fraction: float = Field(
        0.5, gt=0.0, le=1.0, description="saturated: more than this fraction of sigmoid, tanh, "
                                         "arctan or step activations sit where the derivative "
                                         "is nearly 0")
    saturation_derivative: float = Field(
        0.1, gt=0.0, lt=1.0, description="an activation counts as saturated where its "
                                         "derivative is below this fraction of its maximum")
    vanishing_ratio_early: float = Field(
        1e-2, gt=0.0, lt=1.0, description="vanishing, when the run also ends near its "
                                          "baseline: the first layer's gradient norm is below "
                                          "this fraction of the last layer's over the first "
                                          "`early_fraction` of the run")
    early_fraction: float = Field(
        0.1, gt=0.0, le=1.0, description="the share of the logged steps, from the start, "
                                         "that the early-phase gradient checks look at")
    chance_fraction: float = Field(
        0.1, gt=0.0, lt=1.0, description="not_learning: the run closed less than this "
                                         "fraction of the gap between the task's baseline "
                                         "(class prior, mean predictor, ...) and perfect")
    slow_progress: float = Field(
        0.5, gt=0.0, lt=1.0, description="slow: the run ends below this fraction of that gap "
                                         "closed while still improving")
    slow_factor: float = Field(
        1.0, ge=1.0, le=1000.0, description="slow: at the last epochs' pace, closing 90% of "
                                            "the gap would take more than this many times "
                                            "the epochs run")
    stall_progress: float = Field(
        0.5, gt=0.0, lt=1.0, description="not_learning (stalled): the run ends below this "
                                         "fraction of the gap closed, flat, its weights no "
                                         "longer moving")
    stall_update_drop: float = Field(
        100.0, gt=1.0, description="not_learning (stalled): the median update/weight ratio "
                                   "over the last third of the steps is this many times "
                                   "below its median over the first `early_fraction`")
    unstable_rise: float = Field(
        0.05, gt=0.0, le=10.0, description="unstable: an epoch's train loss counts as a rise "
                                           "when it exceeds the previous epoch's by this "
                                           "fraction")
    unstable_rise_fraction: float = Field(
        0.4, gt=0.0, le=1.0, description="unstable (oscillating): more than this fraction of "
                                         "the epochs are rises")
    spike_factor: float = Field(
        2.0, gt=1.0, le=1e6, description="unstable (spiking): an epoch's train loss exceeds "
                                         "this multiple of the lowest loss before it")
    unstable_val_rise: float = Field(
        0.2, gt=0.0, le=10.0, description="unstable: an epoch's val loss counts as a rise when "
                                          "it exceeds the previous epoch's by this fraction "
                                          "(of its level, floored at a tenth of the "
                                          "baseline's loss)")
    unstable_val_rise_fraction: float = Field(
        0.1, gt=0.0, le=1.0, description="unstable (oscillating val loss): more than this "
                                         "fraction of the epochs, and at least two, are val "
                                         "loss rises")
    overfitting_rise: float = Field(
        0.1, gt=0.0, le=10.0, description="overfitting: the val loss (a trailing mean over a "
                                          "tenth of the epochs, at least 3) ends this fraction "
                                          "above its minimum while the train loss kept "
                                          "falling")
    overfitting_floor: float = Field(
        0.05, ge=0.0, lt=1.0, description="overfitting: the rise is measured against the "
                                          "val loss's minimum floored at this fraction of the "
                                          "baseline's loss")
    symmetric_spread: float = Field(
        1e-3, gt=0.0, lt=1.0, description="symmetric: a hidden layer's units' incoming weight "
                                          "rows differ by less than this fraction of their "
                                          "norm")
    live_patience: int = Field(
        2, ge=1, le=1000, description="live diagnosis: epochs a problem must hold before it "
                                      "is reported (and a run stopped)")
    live_min_fraction: float = Field(
        0.25, ge=0.0, le=1.0, description="live diagnosis: the share of the epochs that must "
                                          "have run before a loss-curve problem (not_learning, "
                                          "slow, overfitting) is called")


class DiagnosticsSpec(Strict):
    """What is measured during training for the verdict and the plots."""

    every_steps: int = Field(1, ge=1, description="log per-layer norms every this many steps")
    grad_norms: bool = Field(True, description="log grad_norm/<layer> and grad_norm/total")
    update_norms: bool = Field(True, description="log update_norm/<layer>: the norm of "
                                                 "W_after - W_before")
    weight_norms: bool = Field(True, description="log weight_norm/<layer>")
    activation_stats: bool = Field(True, description="sample dead and saturated units of "
                                                     "every activation layer now and then")
    activation_every_steps: int = Field(100, ge=1, description="activation statistics every "
                                                               "this many steps (and at the "
                                                               "start and end)")
    activation_examples: int = Field(256, ge=1, le=100_000, description="training examples "
                                                                        "the statistics see")
    plots: bool = Field(True, description="draw plots/*.png after training (drawing costs "
                                          "CPU at the end of every run; see BENCHMARKS.md)")
    auto_repair: int = Field(0, ge=0, le=5, description=(
        "rounds of repair done on their own: a run that ends with a problem (or diverges) is "
        "resubmitted with its diagnosis's fix and auto_repair - 1 (as POST "
        "/v1/experiments/{id}/repair does); a repair that did not help is followed by the "
        "repaired run's next suggested fix (its finding's alternatives, in order); 0: never"))
    on_problem: Literal["continue", "stop"] = Field(
        "continue", description="continue: report the live diagnosis only; stop: end the run "
                                "after the epoch at which a problem is confirmed, with the "
                                "verdict as the stop reason")
    thresholds: DiagnosisThresholds = Field(default_factory=DiagnosisThresholds)
