"""The experiment spec (v1): the one contract between the user, the store, Ray and MLflow.

Structure is checked here (pydantic, `extra="forbid"` everywhere, `model` a discriminated union
on `kind`). What needs the data or the built model (dataset params, shapes, settings a kind does
not honour) is checked by `workers.submission.pipeline` at submission, with the same error format.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

import models  # noqa: F401  (registers every family before the union is built)
from models.config import SEED_MAX, StrictConfig
from models.objectives import LossName
from models.registry import model_families
from services.contract.expectations import EXPECT_DESCRIPTION, ExperimentExpect

Task = Literal["auto", "classification", "binary", "regression", "sequence", "language_model",
              "reconstruction", "recall"]


class Strict(StrictConfig):
    """A spec section: unknown fields, NaN, infinities and NUL characters refused."""


class DataSpec(Strict):
    """The data: a built-in generator by name, or a file below a data root; split into
    train, validation and test sets deterministically."""

    source: Literal["builtin", "file"] = Field(
        "builtin", description="builtin: a generated dataset by `name`; file: `path`")
    name: str | None = Field(None, description="built-in dataset (GET /v1/catalog lists them)")
    path: str | None = Field(None, description="file below one of LAYERWISE_DATA_ROOTS "
                                               "(.npz with x, y; .csv with a target column)")
    params: dict[str, Any] = Field(default_factory=dict, description="the built-in dataset's "
                                   "params (see the datasets below)")
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="share held out for "
                                "validation (unless the .npz gives x_val, y_val)")
    test_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="share held out for the "
                                 "test metrics, evaluated once at the end")

    @model_validator(mode="after")
    def _source_fields(self) -> DataSpec:
        if self.source == "builtin" and not self.name:
            raise ValueError("a builtin dataset needs `name` (GET /v1/catalog lists them)")
        if self.source == "file" and not self.path:
            raise ValueError("a file dataset needs `path`, relative to a data root")
        if self.source == "file" and self.name:
            raise ValueError("`name` is for builtin datasets; a file dataset has only `path`")
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% for training")
        return self


def _model_union() -> Any:
    configs = tuple(family.config_cls for family in model_families())
    union = configs[0] if len(configs) == 1 else Union[configs]  # noqa: UP007
    return Annotated[union, Field(discriminator="kind")]


if TYPE_CHECKING:
    # What type checkers see of the union built at runtime from the registered families:
    # one family's config, whose `kind` names the family.
    from models.config import ModelConfig as AnyModelConfig
else:
    AnyModelConfig = _model_union()


class OptimizerSpec(Strict):
    """The optimizer (torch.optim) and its settings."""

    name: Literal["sgd", "adam", "adamw", "rmsprop"] = Field("sgd", description="optimizer")
    lr: float = Field(0.1, gt=0.0, le=10.0, description="learning rate (the schedule's start)")
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="sgd and rmsprop")
    nesterov: bool = Field(False, description="sgd with momentum > 0")
    weight_decay: float = Field(0.0, ge=0.0, description="the optimizer's decoupled or coupled "
                                                         "decay; distinct from regularization.l2")
    betas: tuple[float, float] = Field((0.9, 0.999), description="adam and adamw")

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> OptimizerSpec:
        if self.nesterov and (self.name != "sgd" or self.momentum <= 0):
            raise ValueError("nesterov needs name: sgd and momentum > 0")
        return self


class ScheduleSpec(Strict):
    """The learning rate over epochs."""

    name: Literal["constant", "step", "exponential", "cosine", "warmup"] = Field(
        "constant", description="learning-rate schedule, stepped once per epoch")
    step_epochs: int = Field(10, ge=1, description="step: decay every this many epochs")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="step and exponential: decay factor")
    warmup_epochs: int = Field(1, ge=0, description="warmup: linear ramp length, then cosine")
    min_lr: float = Field(0.0, ge=0.0, description="cosine and warmup: the floor")


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


class TrainingSpec(Strict):
    """The loop's length, batches, seed, gradient clipping and precision."""

    epochs: int = Field(20, ge=1, le=100_000, description="passes over the training set "
                        "(capped by LAYERWISE_MAX_EPOCHS)")
    batch_size: int | Literal["full"] = Field(64, description="examples per step, or 'full' "
                                                              "for full-batch gradient descent")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="seeds torch and numpy (below 2^32)")
    grad_clip_norm: float | None = Field(None, gt=0.0, description="rescale the gradient to "
                                                                   "this total L2 norm when "
                                                                   "it is larger")
    grad_clip_value: float | None = Field(None, gt=0.0, description="clip each gradient "
                                                                    "element to [-v, v]")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="autocast dtype of the forward pass; fp16 scales the loss")
    max_runtime_s: float | None = Field(None, gt=0.0, description="stop after the epoch that "
                                                                  "passes this many seconds")

    @model_validator(mode="after")
    def _positive_batch(self) -> TrainingSpec:
        if isinstance(self.batch_size, int) and self.batch_size < 1:
            raise ValueError("batch_size must be >= 1, or 'full' for full-batch descent")
        return self


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


# Ray's custom resource names: a word (CPU, GPU and memory are Ray's own, asked for with
# cpus and gpus).
ResourceName = Annotated[str, Field(min_length=1, max_length=64,
                                    pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$")]
RAY_OWN_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")


class ResourcesSpec(Strict):
    """What one job asks Ray for; a request no node could satisfy is refused with 422."""

    cpus: float = Field(1.0, gt=0.0, le=512, description="Ray num_cpus; also torch's threads")
    gpus: float = Field(0.0, ge=0.0, le=64, description="Ray num_gpus; fractions share a GPU")
    custom: dict[ResourceName, Annotated[float, Field(ge=0.0, le=1e9)]] = Field(
        default_factory=dict, max_length=16, description=(
        "Ray custom resources the job needs, e.g. {worker_node: 1} to land on nodes started "
        "with --resources='{\"worker_node\": 1}'"))
    workers: int = Field(1, ge=1, le=256, description=(
        "data-parallel training workers (Ray Train, DDP); cpus, gpus and custom are per "
        "worker; rank 0 logs"))

    @model_validator(mode="after")
    def _custom_not_ray_own(self) -> ResourcesSpec:
        own = sorted(set(self.custom) & set(RAY_OWN_RESOURCES))
        if own:
            raise ValueError(f"custom resources {own} are Ray's own; ask for CPUs and GPUs "
                             "with cpus and gpus, and remove them from custom")
        return self


# Tag keys the service writes on a run (the job's id, its repair link, MLflow's parent run):
# a user's tag under these prefixes could forge them, so a spec may not carry one, except the
# run's description, which is the user's own.
RESERVED_TAG_PREFIXES = ("layerwise.", "mlflow.")
USER_MLFLOW_TAGS = frozenset({"mlflow.note.content"})
# The validation context for a spec read back from the store: a record written before the
# repair link moved to the job's columns carries these keys in its tags, and still runs.
STORED = {"stored": True}


def is_reserved_tag(key: str) -> bool:
    return key.startswith(RESERVED_TAG_PREFIXES) and key not in USER_MLFLOW_TAGS


def user_tags(tags: dict[str, str]) -> dict[str, str]:
    """The tags without the keys only the service writes."""
    return {key: value for key, value in tags.items() if not is_reserved_tag(key)}


def _no_reserved_keys(tags: dict[str, str], info: ValidationInfo) -> dict[str, str]:
    if (info.context or {}).get("stored"):
        return tags
    reserved = [key for key in tags if is_reserved_tag(key)]
    if reserved:  # one error per key, each at tags.<key>
        raise ValidationError.from_exception_data("tags", [InitErrorDetails(
            type=PydanticCustomError("reserved_tag", (
                "keys under layerwise. and mlflow. are written by the service; rename the "
                "tag")), loc=(key,), input=key) for key in reserved])
    return tags


# MLflow's own rules for tag keys (characters, 250 at most) and values (5,000 characters).
TagKey = Annotated[str, Field(min_length=1, max_length=250, pattern=r"^[A-Za-z0-9_\-. /]+$")]
Tags = Annotated[dict[TagKey, Annotated[str, Field(max_length=5000)]],
                 AfterValidator(_no_reserved_keys)]


class ExperimentSpec(Strict):
    """One experiment: the request body, the stored job, the Ray payload and the MLflow
    params. Every field has a default except `data` and `model`."""

    name: str | None = Field(None, max_length=250, description="the MLflow run name")
    project: str = Field("layerwise", min_length=1, max_length=250,
                         description="the MLflow experiment the run goes to")
    task: Task = Field("auto", description="what the targets are; auto: the data's own")
    data: DataSpec = Field(description="where the examples come from")
    model: AnyModelConfig = Field(description="the architecture: one of the model kinds, "
                                              "chosen by `kind`")
    loss: LossName = Field("auto", description="auto: the output's natural loss (softmax: "
                           "cross_entropy, sigmoid: bce, linear: mse, hardlimit: perceptron)")
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    regularization: RegularizationSpec = Field(default_factory=RegularizationSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    diagnostics: DiagnosticsSpec = Field(default_factory=DiagnosticsSpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    priority: int = Field(0, ge=-1000, le=1000, description="higher runs first; among "
                          "equal priorities the owners share the cluster, each owner's jobs in "
                          "submission order (LAYERWISE_QUEUE_POLICY)")
    tags: Tags = Field(default_factory=dict, max_length=64, description="MLflow run tags")
    expect: ExperimentExpect = Field(default_factory=list, description=EXPECT_DESCRIPTION)

    def spec_hash(self) -> str:
        """A stable hash of what determines the run (name, tags and priority excluded)."""
        payload = self.model_dump(mode="json", exclude={"name", "tags", "priority"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested spec as dotted keys, e.g. {"optimizer.lr": 0.1}: the MLflow params."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        if not value and prefix:
            out[prefix[:-1]] = "{}"
        return out
    return {prefix[:-1]: value}
