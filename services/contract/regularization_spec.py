"""The spec's `regularization` section: penalties, constraints, dropout, input corruption and
early stopping. Which field switches which regularizer on is declared once, in
services/contract/regularizer_kinds.py."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from services.contract.sections import Strict


class EarlyStoppingSpec(Strict):
    """Stop when a monitored metric has not improved for `patience` epochs."""

    patience: int | None = Field(None, ge=1, description="epochs without improvement of "
                                                         "`monitor` before training stops; "
                                                         "null: off")
    monitor: str = Field("val/loss", description="any logged train/ or val/ metric")
    mode: Literal["auto", "min", "max"] = Field(
        "auto", description="auto: max for accuracy, min for everything else")
    min_delta: float = Field(0.0, ge=0.0, description="smallest change that counts as better")
    restore_best: bool = Field(True, description="end with the weights of the best epoch")

    @model_validator(mode="after")
    def _settings_need_patience(self) -> EarlyStoppingSpec:
        # Changed from the default, not merely present: a dumped spec names every field.
        inert = sorted(name for name in self.model_fields_set - {"patience"}
                       if getattr(self, name) != type(self).model_fields[name].default)
        if self.patience is None and inert:
            raise ValueError(f"{', '.join(inert)} only act when early stopping is on; set "
                             "patience (epochs without improvement) or remove them")
        return self


MC_SAMPLES = 20


class DropoutInferenceSpec(Strict):
    """How a model trained with dropout predicts."""

    mode: Literal["expected", "mc"] = Field(
        "expected", description="expected: the expected activation (one pass, no masks); "
                                "mc: the average output over `samples` sampled masks")
    samples: int = Field(MC_SAMPLES, ge=2, le=1000, description="mc: masks sampled per "
                                                                "evaluation")

    @model_validator(mode="after")
    def _samples_need_mc(self) -> DropoutInferenceSpec:
        if self.mode == "expected" and self.samples != MC_SAMPLES:
            raise ValueError("samples only act with mode: mc; set mode: mc or remove samples")
        return self


class RegularizationSpec(Strict):
    """Penalties, constraints, dropout, input corruption and early stopping; a setting that
    has nothing to act on in the model is refused at submission."""

    l1: float = Field(0.0, ge=0.0, description="lambda of the L1 penalty on weights "
                                               "(lambda * sum |W|), logged in train/penalty")
    l2: float = Field(0.0, ge=0.0, description="lambda of the L2 penalty on weights "
                                               "(lambda * sum W^2); distinct from "
                                               "optimizer.weight_decay")
    penalize_biases: bool = Field(False, description="l1 and l2 cover biases too")
    activity_l1: float = Field(0.0, ge=0.0, description="lambda * sum |h| over hidden units")
    activity_l2: float = Field(0.0, ge=0.0, description="lambda * sum h^2 over hidden units")
    max_norm: float | None = Field(None, gt=0.0, description="cap on each unit's incoming "
                                                             "weight norm, after every step")
    unit_norm: bool = Field(False, description="each unit's incoming weight vector rescaled "
                                               "to norm 1 after every step")
    non_neg: bool = Field(False, description="weights clipped at 0 from below after every step")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="probability of dropping a hidden "
                                                            "unit during training")
    dropout_inference: DropoutInferenceSpec = Field(default_factory=DropoutInferenceSpec)
    input_noise_std: float = Field(0.0, ge=0.0, description="Gaussian noise added to the "
                                                            "inputs during training")
    input_flip_prob: float = Field(0.0, ge=0.0, le=0.5, description="binary inputs: "
                                                                    "probability of flipping "
                                                                    "each bit during training")
    early_stopping: EarlyStoppingSpec = Field(default_factory=EarlyStoppingSpec)

    @model_validator(mode="after")
    def _one_norm_constraint(self) -> RegularizationSpec:
        if self.unit_norm and self.max_norm is not None:
            raise ValueError("unit_norm and max_norm both set the weight norm; keep one")
        return self
