"""Universal approximation and symmetry: a 1-hidden-layer tanh net's loss does not change when
its hidden units are permuted or a unit's in and out weights are negated (tanh is odd), and a
run on the `function` data draws its fit."""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from models.base import DataShape
from models.builders import build_model
from models.objectives import Objective
from services.contract.spec import ExperimentSpec
from tests.utils.settings import worker_settings
from tests.utils.specs import mlp_spec
from workers.diagnostics.analysis.analysis_plots import fit_plot
from workers.diagnostics.analysis.fit import fit_curve
from workers.run import prepare, run_experiment
from workers.training.build import build_trainer
from workers.training.evaluation import Split

M = 8


def _net_and_data():
    spec = ExperimentSpec.model_validate(mlp_spec(model={"hidden": [M], "activation": "tanh"}))
    torch.manual_seed(0)
    net = build_model(spec.model, DataShape((1,), 1, "regression"))
    x = torch.linspace(-1, 1, 64).unsqueeze(1)  # (N, 1)
    return net, x, torch.sin(torch.pi * x)


@torch.no_grad()
def _loss(net, x, y) -> float:
    return float(Objective.resolve("regression").loss(net(x), y))


def test_permuting_hidden_units_leaves_the_loss_unchanged():
    net, x, y = _net_and_data()
    before = _loss(net, x, y)
    perm = torch.randperm(M, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(perm, torch.arange(M))
    hidden, out = net.layers[0], net.output
    with torch.no_grad():
        hidden.weight.copy_(hidden.weight[perm])  # (M, 1): unit i's input weights
        hidden.bias.copy_(hidden.bias[perm])
        out.weight.copy_(out.weight[:, perm])  # (1, M): unit i's output weight
    assert _loss(net, x, y) == pytest.approx(before, rel=1e-6)


def test_negating_a_tanh_units_in_and_out_weights_leaves_the_loss_unchanged():
    net, x, y = _net_and_data()
    before = _loss(net, x, y)
    hidden, out = net.layers[0], net.output
    with torch.no_grad():
        for unit in (0, 3):
            hidden.weight[unit].neg_()
            hidden.bias[unit].neg_()
            out.weight[:, unit].neg_()
    assert _loss(net, x, y) == pytest.approx(before, rel=1e-6)
    with torch.no_grad():
        out.weight[:, 5].neg_()  # negating only the output side does change the function
    assert _loss(net, x, y) != pytest.approx(before, rel=1e-3)


# Each bar is a small share of the target's variance on [-1, 1] (square 0.089, sin 0.5, abs
# 0.083, sign 1.0); sign's jump is the hardest for 8 smooth units.
@pytest.mark.parametrize(("fn", "bar"), [("square", 0.01), ("sin", 0.05), ("abs", 0.01),
                                        ("sign", 0.15)])
def test_a_few_tanh_units_approximate_each_function(fn, bar):
    spec = ExperimentSpec.model_validate(mlp_spec(
        data={"name": "function", "params": {"fn": fn, "n": 256}},
        model={"hidden": [M], "activation": "tanh"}, optimizer={"name": "adam", "lr": 0.03},
        training={"epochs": 40, "batch_size": 32}))
    torch.manual_seed(0)
    bundle, objective, net = prepare(spec, [], torch.device("cpu"))
    splits = {name: Split(torch.as_tensor(x), torch.as_tensor(y))
              for name, (x, y) in bundle.splits().items()}
    result = build_trainer(spec, net, objective, splits, device=torch.device("cpu")).fit()
    assert result["val/mse"] < bar, result["val/mse"]
    fit = fit_curve(net, objective, splits["val"].x, splits["val"].y, splits["train"].x)
    assert fit.hidden is not None and fit.hidden.shape == (len(fit.grid), M)
    assert fit_plot(fit.x, fit.y, fit.grid, fit.prediction, fit.hidden).axes


@pytest.mark.slow
def test_a_run_on_the_function_data_draws_its_fit(settings):
    worker = worker_settings(settings)
    spec = mlp_spec(data={"name": "function", "params": {"fn": "square", "n": 256}},
                    model={"hidden": [M], "activation": "tanh"},
                    optimizer={"name": "adam", "lr": 0.03},
                    training={"epochs": 30, "batch_size": 32}, diagnostics={"every_steps": 10})
    reports: list[dict] = []
    result = run_experiment("job-fit", spec, worker, reports.append)
    assert result["val/mse"] < 0.01  # the variance of x^2 on [-1, 1] is 0.089
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    plots = {a.path for a in client.list_artifacts(reports[0]["mlflow_run_id"], "plots")}
    assert "plots/fit.png" in plots and "plots/grad_norm_heatmap.png" in plots
