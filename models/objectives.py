"""Output functions and losses: what turns a model's pre-output `z` into a loss and a prediction.

Models return `z`; the objective applies the lecture's output function (linear, sigmoid,
softmax, hard limit) and the loss (squared error, cross-entropy, binary cross-entropy, or the
perceptron criterion for a hard-limit output, whose derivative is otherwise zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# The tasks the output function and loss are chosen for.
_AUTO_OUTPUT = {"classification": "softmax", "binary": "sigmoid", "regression": "linear",
                "sequence": "linear", "language_model": "softmax", "reconstruction": "linear",
                "recall": "linear"}
_AUTO_LOSS = {"softmax": "cross_entropy", "sigmoid": "bce", "linear": "mse",
              "hardlimit": "perceptron"}
# Which outputs each loss is defined for.
_LOSS_OUTPUTS = {"cross_entropy": {"softmax"}, "bce": {"sigmoid"}, "perceptron": {"hardlimit"},
                 "mse": {"linear", "sigmoid", "softmax"}}


class ObjectiveError(ValueError):
    def __init__(self, loc: tuple[str, ...], msg: str):
        super().__init__(msg)
        self.loc = loc
        self.msg = msg


def resolve_output(task: str, output: str) -> str:
    return _AUTO_OUTPUT[task] if output == "auto" else output


def resolve_loss(output: str, loss: str) -> str:
    return _AUTO_LOSS[output] if loss == "auto" else loss


@dataclass(frozen=True)
class Objective:
    """The task's output function and loss, resolved from `auto`.

    Targets: classification y is a class index (N,); binary y is 0/1 of shape (N, 1);
    regression y is (N, D).
    """

    task: str
    output: str
    loss_name: str

    @classmethod
    def resolve(cls, task: str, output: str = "auto", loss: str = "auto") -> Objective:
        """Raises ObjectiveError naming the spec field when output and loss do not fit the task."""
        out = resolve_output(task, output)
        loss_name = resolve_loss(out, loss)
        if out not in _LOSS_OUTPUTS[loss_name]:
            allowed = sorted(_LOSS_OUTPUTS[loss_name])
            raise ObjectiveError(("loss",), f"loss {loss_name!r} needs model.output in {allowed}, "
                                            f"got {out!r}; set loss: auto to choose by the output")
        if out == "softmax" and task not in ("classification", "language_model"):
            raise ObjectiveError(("model", "output"), f"softmax output needs a classification "
                                                      f"task, the data's task is {task!r}")
        if out in ("sigmoid", "hardlimit") and task == "regression" and loss_name != "mse":
            raise ObjectiveError(("model", "output"), f"{out} output cannot fit a regression "
                                                      "target; use output: linear")
        return cls(task, out, loss_name)

    @property
    def is_classifier(self) -> bool:
        return self.task in ("classification", "binary", "language_model")

    def apply_output(self, z: torch.Tensor) -> torch.Tensor:
        """The output function: what the network answers for pre-output z."""
        if self.output == "softmax":
            return torch.softmax(z, dim=-1)
        if self.output == "sigmoid":
            return torch.sigmoid(z)
        if self.output == "hardlimit":
            return (z > 0).to(z.dtype)
        return z

    def loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "cross_entropy":
            return F.cross_entropy(z.reshape(-1, z.shape[-1]), y.reshape(-1))
        if self.loss_name == "bce":
            return F.binary_cross_entropy_with_logits(z, y)
        if self.loss_name == "perceptron":
            return _perceptron_loss(z, y)
        return F.mse_loss(self.apply_output(z), self._dense_target(z, y))

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """Class indices for classifiers, values for regression."""
        if self.task in ("classification", "language_model"):
            return z.argmax(dim=-1)
        if self.task == "binary":
            return (z > 0).to(z.dtype)
        return self.apply_output(z)

    @torch.no_grad()
    def metrics(self, z: torch.Tensor, y: torch.Tensor, loss: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor | float]:
        """Per-batch metric sums kept on the device: {"loss", "correct" or "sq_error"}, and
        "count" as a float; recall has both (accuracy = the fraction of patterns restored
        exactly). `loss`, the batch's mean loss when the caller has it (the training step
        computed it), saves computing it again."""
        # Few kernels: this runs after every training step, where each kernel launch is a
        # visible share of a small model's step (BENCHMARKS.md).
        count = float(y.shape[0])
        mean = self.loss(z, y) if loss is None else loss
        out: dict[str, torch.Tensor | float] = {"loss": mean.detach() * count, "count": count}
        if self.is_classifier:
            hits = self.predict(z) == y
            out["correct"] = hits.sum() if y.dim() == 1 else hits.float().sum() / y[0].numel()
        else:
            out["sq_error"] = ((self.apply_output(z) - y) ** 2).mean(
                dim=tuple(range(1, y.dim()))).sum() if y.dim() > 1 else ((z - y) ** 2).sum()
        if self.task == "recall":  # a +-1 pattern is recalled when every unit has its sign
            out["correct"] = (torch.sign(z) == torch.sign(y)).flatten(1).all(dim=1).float().sum()
        return out

    def _dense_target(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.task in ("classification", "language_model"):
            return F.one_hot(y, z.shape[-1]).to(z.dtype)
        return y


def _perceptron_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The perceptron criterion: zero for correct answers, the margin violation otherwise."""
    if z.shape[-1] == 1:  # binary, y in {0, 1}
        sign = 2.0 * y - 1.0
        return F.relu(-sign * z).mean()
    true_score = z.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    return (z.max(dim=-1).values - true_score).mean()
