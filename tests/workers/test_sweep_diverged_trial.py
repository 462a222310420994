"""A sweep trial that diverges says so in its row: failed, with the diagnosis's verdict
(`diverged`) carried on the error through Ray, as an experiment's record does."""

from __future__ import annotations

import pytest
import ray

from tests.utils.specs import mlp_spec
from tests.workers.test_sweep_driver import Driver

pytestmark = [pytest.mark.slow]


def test_a_diverged_trial_is_failed_with_its_verdict(ray_cluster, settings):
    base = mlp_spec(name="diverges", data={"name": "function", "params": {"n": 200}},
                    model={"hidden": [64, 64], "activation": "identity"},
                    optimizer={"name": "sgd", "lr": 0.01},
                    training={"epochs": 2, "batch_size": 32},
                    diagnostics={"every_steps": 5, "plots": False})
    spec = {"name": "diverged-trial", "base": base,
            "space": {"optimizer.lr": {"type": "grid", "values": [0.01, 10.0]}},
            "search": {"algorithm": "grid", "metric": "val/loss", "mode": "min"}}
    driver = Driver(settings)
    summary = ray.get(driver.launch("diverged-trial", spec))
    by_lr = {row["params"]["optimizer.lr"]: row for row in summary["trials"]}
    assert by_lr[10.0]["status"] == "failed"
    assert "Diverged" in by_lr[10.0]["error"] and by_lr[10.0]["verdict"] == "diverged"
    assert by_lr[0.01]["status"] == "succeeded" and by_lr[0.01]["verdict"] != "diverged"
