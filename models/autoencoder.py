"""Dense and denoising autoencoders, and deep nets pretrained layer by layer, then fine-tuned.

On recall data (x corrupted, y clean) the net is an autoencoder: encoder, mirrored decoder,
linear output of the input's size. On any other task it is a classifier or regressor: the
encoder and an output layer. Before the training loop, `pretraining` initializes the encoder
greedily, one layer at a time: `unsupervised` with stacked autoencoders or RBMs (Hinton 2006),
`supervised` with a temporary output layer per layer, or `none` (random initialization);
the loop then fine-tunes the whole net.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from torch import nn

from models.activations import ActivationName
from models.base import DataShape, LayerwiseModel, MetricLog, ModelConfigError
from models.config import ModelConfig
from models.dense import DenseLayer
from models.initializers import InitName, initialize
from models.objectives import OutputName
from models.pretraining import PretrainPlan, copy_into, mask, pretrain_stack
from models.rbm import RECALL_TASKS
from models.registry import register_model


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


class AutoencoderNet(LayerwiseModel):
    def __init__(self, config: AutoencoderConfig, shape: DataShape, dropout: float = 0.0):
        super().__init__()
        self.config = config
        widths = [shape.input_dim, *config.hidden]
        self.encoder = nn.ModuleList(
            DenseLayer(widths[i], widths[i + 1], config.activation, dropout=dropout)
            for i in range(len(config.hidden)))
        self.reconstructs = shape.task in RECALL_TASKS and shape.output_dim == shape.input_dim
        back = config.hidden[::-1] if self.reconstructs else []  # code to first hidden width
        self.decoder = nn.ModuleList(
            DenseLayer(back[i], back[i + 1], config.activation, dropout=dropout)
            for i in range(len(back) - 1))
        self.output = nn.Linear(config.hidden[0] if self.reconstructs else config.hidden[-1],
                                shape.output_dim)
        initialize(self, config.init)
        self._hidden: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)  # (B, D)
        if self.training:
            h = mask(h, self.config.denoise)
        hidden = []
        for layer in [*self.encoder, *self.decoder]:
            h = layer(h)  # (B, H_l)
            hidden.append(h)
        self._hidden = hidden
        return self.output(h)  # (B, out)

    def hidden_activations(self) -> list[torch.Tensor]:
        return self._hidden

    def pretrain(self, x: torch.Tensor, y: torch.Tensor, objective: Any, log: MetricLog) -> int:
        config = self.config
        if config.pretraining == "none":
            return 0
        method = "supervised" if config.pretraining == "supervised" else config.pretrain_with
        plan = PretrainPlan(method, config.activation, config.pretrain_epochs,
                            config.pretrain_lr, config.pretrain_batch_size, config.denoise,
                            config.cd_k, config.cd_lr)
        self.train()
        steps, results = pretrain_stack(list(self.encoder), x, y, plan=plan,  # type: ignore
                                        loss_fn=objective.loss,
                                        output_dim=self.output.out_features, log=log)
        last = results[-1].head
        if last is not None and not self.reconstructs:
            copy_into(self.output, last)
        if self.reconstructs and method != "supervised":
            # Decoder l mirrors encoder l: the stage's decoder is its starting point. An RBM's
            # decoder of the data gives probabilities, not the data's units: not reused.
            targets: list[nn.Linear] = [self.output, *reversed(list(self.decoder))]  # type: ignore
            for index, result in enumerate(results):
                if result.decoder is not None and not (method == "rbm" and index == 0):
                    copy_into(targets[index], result.decoder)
        return steps


@register_model(AutoencoderConfig, description="Dense or denoising autoencoder, or a deep net "
                                               "pretrained layer by layer (stacked autoencoders, "
                                               "RBMs or supervised), then fine-tuned.")
def build_autoencoder(config: AutoencoderConfig, shape: DataShape, dropout: float = 0.0
                      ) -> AutoencoderNet:
    if (config.pretraining == "unsupervised" and config.pretrain_with == "rbm"
            and config.activation != "sigmoid"):
        raise ModelConfigError(("activation",), "an RBM's hidden units are sigmoid units: "
                               "pretrain_with: rbm needs activation: sigmoid")
    return AutoencoderNet(config, shape, dropout)
