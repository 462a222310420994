"""The spec's `analysis` section: the analyses run after training."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from services.contract.sections import Strict


class AdversarialSpec(Strict):
    """Adversarial robustness of a classifier, after training."""

    fgsm_eps: list[Annotated[float, Field(gt=0.0, le=1e6)]] = Field(
        default_factory=list, max_length=100,
        description="fast gradient sign: the accuracy at each of these L-infinity budgets")
    deepfool: bool = Field(False, description="DeepFool: the smallest L2 perturbation that "
                                              "flips each correctly classified example")
    deepfool_max_iter: int = Field(50, ge=1, le=1000, description="DeepFool: steps per "
                                   "example before giving up")
    deepfool_overshoot: float = Field(0.02, ge=0.0, le=1.0, description="DeepFool: how far "
                                      "past the boundary each step goes")
    max_examples: int = Field(256, ge=1, le=100_000, description="validation examples attacked")


class AnalysisSpec(Strict):
    """Analyses run after training: results as metrics, JSON artifacts and plots."""

    sensitivity: bool = Field(False, description="rank inputs by mean |dJ/dx| over validation "
                                                 "examples (a saliency map for images)")
    prune_top_k: int | None = Field(None, ge=1, description="retrain on the k most influential "
                                                            "inputs and report the change")
    max_examples: int = Field(512, ge=1, le=100_000, description="validation examples the "
                                                                 "sensitivity and gradient "
                                                                 "through time average over")
    adversarial: AdversarialSpec = Field(default_factory=AdversarialSpec)
    bptt_norms: bool = Field(False, description="recurrent and autoregressive nets: "
                                                "|dJ_n/dh[k]| for k = n, ..., 1")
    bptt_steps: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list, max_length=16,
        description="the steps n (1-based) to measure from; empty: the last and the middle step")
