"""`compare` overlays the runs' loss and accuracy curves: read back from MLflow by step, in
the table (JSON, and the CLI's) and under the per-layer panels of the figure."""

from __future__ import annotations

import io
import struct

import numpy as np
from mlflow.tracking import MlflowClient
from rich.console import Console

from api.cli.curves_view import curves_view
from services.run_comparison import Comparison, EpochCurve, RunComparison
from tests.utils.settings import worker_settings
from tests.utils.specs import mlp_spec
from workers.diagnostics.training_plots import RunCurves, compare_runs, png_bytes
from workers.run import run_experiment
from workers.tracking.comparison import epoch_curves


def _png_size(png: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def test_the_loss_and_accuracy_curves_come_back_by_step_and_are_overlaid(settings):
    reports: list[dict] = []
    results = [run_experiment(f"job-curves-{epochs}", mlp_spec(
        name=f"e{epochs}", training={"epochs": epochs, "batch_size": 256},
        diagnostics={"plots": False}), worker_settings(settings), reports.append)
        for epochs in (2, 3)]
    run_ids = [r["mlflow_run_id"] for r in reports if "mlflow_run_id" in r]
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    curves = [epoch_curves(client, run_id) for run_id in run_ids]

    assert set(curves[0]) == {"train/loss", "val/loss", "train/accuracy", "val/accuracy"}
    for result, run in zip(results, curves, strict=True):
        per_epoch = result["steps"] // result["epochs_run"]
        assert run["val/loss"].steps == [per_epoch * e - 1
                                         for e in range(1, result["epochs_run"] + 1)]
        assert run["val/accuracy"].values[-1] == result["val/accuracy"]

    table = Comparison(metric="grad_norm", runs=[RunComparison(
        id=f"job-{i}", name=f"run {i}", status="succeeded", model_kind="mlp", verdict=None,
        first_last_ratio=None, layers=[], result={}, curves=run) for i, run in enumerate(curves)])
    assert Comparison.model_validate_json(table.model_dump_json()) == table
    console = Console(width=100, file=io.StringIO())
    console.print(curves_view(table))
    shown = console.file.getvalue()
    assert f"{curves[1]['val/accuracy'].values[-1]:.4g}" in shown and "val/loss" in shown

    steps = np.arange(4)
    norms = np.full((4, 2), 1e-2)
    with_curves = [RunCurves(f"run {i}", ["layers.0", "output"], steps, norms,
                             {k: (c.steps, c.values) for k, c in run.items()})
                   for i, run in enumerate(curves)]
    without = [RunCurves(c.title, c.layers, c.steps, c.values) for c in with_curves]
    overlaid = compare_runs(with_curves, "grad_norm")
    assert len(overlaid.axes) == 4  # a panel per run, then the loss and accuracy overlays
    loss_axis = overlaid.axes[2]
    assert len(loss_axis.get_lines()) == 4  # train and val of each run
    assert loss_axis.get_ylabel() == "loss" and overlaid.axes[3].get_ylabel() == "accuracy"
    assert _png_size(png_bytes(overlaid))[1] > 1.5 * _png_size(png_bytes(
        compare_runs(without, "grad_norm")))[1]


def test_a_value_that_is_not_finite_is_null_and_gaps_the_line():
    curve = EpochCurve(steps=[0, 1], values=[2.3, None])
    figure = compare_runs([RunCurves("diverged", ["output"], np.arange(2), np.ones((2, 1)),
                                     {"train/loss": (curve.steps, curve.values)})], "grad_norm")
    line = figure.axes[1].get_lines()[0]
    assert np.isnan(line.get_ydata()[1])
    assert curves_view(Comparison(metric="grad_norm", runs=[])) is None
