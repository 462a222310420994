"""The `autoencoder` model kind: its config and its declaration (its builder is in
models/autoencoder.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from models.config import ModelConfig
from models.kinds.base import ModelKind
from models.kinds.names import ActivationName, InitName, OutputName


class AutoencoderConfig(ModelConfig):
    kind: Literal["autoencoder"] = "autoencoder"
    hidden: list[Annotated[int, Field(ge=1, le=1_000_000)]] = Field(
        default=[64, 32], min_length=1, max_length=100,
        description="encoder widths, input to code; the decoder mirrors them")
    activation: ActivationName = "sigmoid"
    denoise: float = Field(0.0, ge=0.0, lt=1.0, description="denoising: fraction of each input "
                           "zeroed at random during training and pretraining")
    pretraining: Literal["none", "unsupervised", "supervised"] = Field(
        "unsupervised", description="how the encoder is initialized, one layer at a time, "
        "before fine-tuning: unsupervised (pretrain_with), supervised (a temporary output "
        "layer per layer) or none")
    pretrain_with: Literal["autoencoder", "rbm"] = Field(
        "autoencoder", description="unsupervised: stacked autoencoders or RBMs (CD-k)")
    pretrain_epochs: int = Field(5, ge=1, le=10_000, description="epochs per layer")
    pretrain_lr: float = Field(0.01, gt=0.0, le=10.0, description="Adam's step size for "
                               "autoencoder and supervised stages")
    pretrain_batch_size: int = Field(64, ge=1, le=1_000_000, description="examples per "
                                     "pretraining step")
    cd_k: int = Field(1, ge=1, le=100, description="rbm: Gibbs steps of contrastive divergence")
    # Not pretrain_lr: a CD update is a raw statistics difference, not Adam's normalized step;
    # Adam's 0.01 left the RBMs untrained (the rbm kind's default 0.5 trains them).
    cd_lr: float = Field(0.5, gt=0.0, le=10.0, description="rbm: contrastive divergence's "
                         "step size")
    output: OutputName = "auto"
    init: InitName = "glorot_normal"


KIND = ModelKind(
    AutoencoderConfig,
    description=(
        "Dense or denoising autoencoder, or a deep net "
        "pretrained layer by layer (stacked autoencoders, "
        "RBMs or supervised), then fine-tuned."),
)
