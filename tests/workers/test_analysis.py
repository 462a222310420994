"""After-training analyses on small CPU runs: adversarial robustness, input sensitivity and
retraining on the top inputs, and the submission checks that refuse what cannot run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.base import DataShape
from models.builders import build_model
from models.objectives import Objective
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecInvalid
from tests.utils.specs import mlp_spec
from workers.diagnostics.analysis.adversarial import deepfool, fgsm
from workers.diagnostics.analysis.prune import pruning_metrics, retrain_on
from workers.diagnostics.analysis.sensitivity import sensitivity
from workers.run import prepare
from workers.submission.pipeline import check_experiment
from workers.training.build import build_trainer
from workers.training.evaluation import Split

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def _train(spec: ExperimentSpec, model, objective, splits: dict[str, Split]) -> dict:
    torch.manual_seed(spec.training.seed)
    return build_trainer(spec, model, objective, splits, device=CPU).fit()


@pytest.fixture(scope="module")
def digits_classifier():
    """A small MLP trained on the digits for a few epochs (val accuracy about 0.95)."""
    spec = ExperimentSpec.model_validate(mlp_spec(training={"epochs": 5}))
    torch.manual_seed(0)
    bundle, objective, model = prepare(spec, [], CPU)
    splits = {name: Split(torch.as_tensor(x), torch.as_tensor(y))
              for name, (x, y) in bundle.splits().items()}
    result = _train(spec, model, objective, splits)
    assert result["val/accuracy"] > 0.9
    return model, objective, splits["val"].x[:200], splits["val"].y[:200]


def test_fgsm_accuracy_falls_as_epsilon_grows(digits_classifier):
    model, objective, x, y = digits_classifier
    grid = fgsm(model, objective, x, y, [0.4, 0.02, 0.1, 0.05, 0.2])
    assert grid.eps == [0.02, 0.05, 0.1, 0.2, 0.4]
    assert grid.clean_accuracy > 0.9
    accuracy = [grid.clean_accuracy, *grid.accuracy]
    assert all(b <= a + 0.02 for a, b in zip(accuracy, accuracy[1:], strict=False)), accuracy
    assert accuracy[-1] < 0.3 < accuracy[0], accuracy


def test_deepfool_flips_nearly_all_with_less_than_fgsm_needs(digits_classifier):
    model, objective, x, y = digits_classifier
    fool = deepfool(model, x, y, max_iter=50, overshoot=0.02)
    assert fool.correct > 150 and fool.flipped_fraction >= 0.9
    grid = fgsm(model, objective, x, y, list(np.linspace(0.01, 1.0, 40)))
    fgsm_l2 = [v for v in grid.min_flip_l2 if v is not None]
    assert len(fgsm_l2) > 0.8 * fool.correct
    assert np.mean(fool.perturbation_l2) < np.mean(fgsm_l2), (
        np.mean(fool.perturbation_l2), np.mean(fgsm_l2))
    # each perturbation really is what moved the example across the boundary
    assert fool.perturbations is not None and fool.originals is not None
    moved = model(fool.originals + fool.perturbations).argmax(dim=1)
    assert (moved != fool.labels).float().mean() >= 0.9


def test_deepfool_and_fgsm_attack_a_binary_classifier_too():
    spec = ExperimentSpec.model_validate(mlp_spec(data={"name": "moons", "params": {"n": 300}},
                                                  model={"hidden": [16, 16]},
                                                  optimizer={"lr": 0.05},
                                                  training={"epochs": 12, "batch_size": 32}))
    torch.manual_seed(0)
    bundle, objective, model = prepare(spec, [], CPU)
    splits = {name: Split(torch.as_tensor(x), torch.as_tensor(y))
              for name, (x, y) in bundle.splits().items()}
    assert _train(spec, model, objective, splits)["val/accuracy"] > 0.85
    x, y = splits["val"].x, splits["val"].y
    assert y.shape == (len(x), 1)  # binary targets: one logit per example
    fool = deepfool(model, x, y)
    assert fool.flipped_fraction >= 0.9
    grid = fgsm(model, objective, x, y, [0.1, 0.5, 1.0])
    assert grid.accuracy[-1] < grid.clean_accuracy


def _informative_and_noise(n: int = 600) -> tuple[torch.Tensor, torch.Tensor]:
    """Five features: the label is sign(2 x0 + x1 - x2 + 0.5 x3); x4 is pure noise."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g)
    y = ((2 * x[:, 0] + x[:, 1] - x[:, 2] + 0.5 * x[:, 3]) > 0).long()
    return x, y


def test_a_pure_noise_feature_ranks_last_and_pruning_keeps_the_accuracy():
    x, y = _informative_and_noise()
    shape = DataShape((5,), 2, "classification")
    spec = ExperimentSpec.model_validate(mlp_spec(model={"hidden": [32]},
                                                  optimizer={"lr": 0.01},
                                                  training={"epochs": 20, "batch_size": 32}))
    objective = Objective.resolve("classification")
    splits = {"train": Split(x[:450], y[:450]), "val": Split(x[450:], y[450:])}
    torch.manual_seed(0)
    model = build_model(spec.model, shape)
    full = _train(spec, model, objective, splits)
    assert full["val/accuracy"] > 0.9

    found = sensitivity(model, objective, splits["val"].x, splits["val"].y)
    assert found.ranking[0] == 0 and found.ranking[-1] == 4, found.scores
    assert found.scores[4] < 0.5 * found.scores[3]

    tuples = {name: (s.x, s.y) for name, s in splits.items()}
    pruned = retrain_on(spec, shape, objective, tuples, found.ranking[:3], CPU)
    metrics = pruning_metrics(full, pruned, 3)
    assert metrics["sensitivity/pruned_features"] == 3
    assert metrics["sensitivity/pruned_val_accuracy"] > 0.8
    assert metrics["sensitivity/pruned_accuracy_change"] == pytest.approx(
        pruned["val/accuracy"] - full["val/accuracy"])


@pytest.mark.parametrize(("overrides", "loc"), [
    ({"analysis": {"adversarial": {"fgsm_eps": [0.1]}},
      "data": {"name": "function"}}, ["analysis", "adversarial"]),
    ({"analysis": {"prune_top_k": 64}}, ["analysis", "prune_top_k"]),
    ({"analysis": {"prune_top_k": 4}, "data": {"val_fraction": 0.0}}, ["data", "val_fraction"]),
    ({"analysis": {"bptt_norms": True}}, ["analysis", "bptt_norms"]),
    ({"analysis": {"prune_top_k": 4}, "data": {"params": {"layout": "image"}},
      "model": {"kind": "cnn", "conv": [{"channels": 4, "kernel_size": 3}], "dense": []}},
     ["analysis", "prune_top_k"]),
    ({"analysis": {"sensitivity": True},
      "data": {"name": "patterns", "params": {"source": "random", "patterns": 3, "size": 16}},
      "model": {"kind": "hopfield"}}, ["analysis", "sensitivity"]),
    ({"analysis": {"sensitivity": True},
      "data": {"name": "sine", "params": {"n": 32, "length": 12, "levels": 8}},
      "model": {"kind": "rnn", "hidden": 4}}, ["analysis", "sensitivity"]),
    ({"analysis": {"bptt_norms": True, "bptt_steps": [3]},
      "data": {"name": "adding", "params": {"n": 32, "length": 12}},
      "model": {"kind": "rnn", "hidden": 4}}, ["analysis", "bptt_steps"]),
])
def test_analyses_that_cannot_run_are_refused_at_submission(overrides, loc):
    body = mlp_spec(**overrides)
    body["model"] = overrides.get("model", body["model"])  # another kind: its own config only
    spec = ExperimentSpec.model_validate(body)
    with pytest.raises(SpecInvalid) as refused:
        check_experiment(spec, [])
    assert [list(e.loc) for e in refused.value.errors] == [loc], refused.value
    assert all(e.msg for e in refused.value.errors)


def test_analyses_that_can_run_pass_the_dry_run():
    spec = ExperimentSpec.model_validate(mlp_spec(analysis={
        "sensitivity": True, "prune_top_k": 8,
        "adversarial": {"fgsm_eps": [0.05, 0.1], "deepfool": True}}))
    assert check_experiment(spec, []).param_count > 0
