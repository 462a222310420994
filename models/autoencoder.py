"""Dense and denoising autoencoders, and deep nets pretrained layer by layer, then fine-tuned.

On recall data (x corrupted, y clean) the net is an autoencoder: encoder, mirrored decoder,
linear output of the input's size. On any other task it is a classifier or regressor: the
encoder and an output layer. Before the training loop, `pretraining` initializes the encoder
greedily, one layer at a time: `unsupervised` with stacked autoencoders or RBMs (Hinton 2006),
`supervised` with a temporary output layer per layer, or `none` (random initialization);
the loop then fine-tunes the whole net.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models.base import DataShape, LayerwiseModel, MetricLog, ModelConfigError
from models.dense import DenseLayer
from models.initializers import initialize
from models.kinds.autoencoder import AutoencoderConfig
from models.pretraining import PretrainPlan, copy_into, mask, pretrain_stack
from models.rbm import RECALL_TASKS


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


def build_autoencoder(config: AutoencoderConfig, shape: DataShape, dropout: float = 0.0
                      ) -> AutoencoderNet:
    if (config.pretraining == "unsupervised" and config.pretrain_with == "rbm"
            and config.activation != "sigmoid"):
        raise ModelConfigError(("activation",), "an RBM's hidden units are sigmoid units: "
                               "pretrain_with: rbm needs activation: sigmoid")
    return AutoencoderNet(config, shape, dropout)
