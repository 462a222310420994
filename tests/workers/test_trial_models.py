"""Which sweep trials log their model (`search.log_models`): by default a trial that ends as the
best so far (the board keeps the best), so the sweep's best always has one and worse trials
skip the cost; `all` logs every one, `none` none. Trials are driven directly, as Tune's
trainables call them, on the session's Ray with a real board and MLflow."""

from __future__ import annotations

import ray
from mlflow.tracking import MlflowClient

from services.contract.sweep_spec import SweepSpec
from tests.utils.settings import worker_settings
from tests.utils.specs import mlp_spec
from workers.runtime.progress_board import ProgressBoard
from workers.sweeps.context import TrialContext
from workers.sweeps.summary import ParentRun
from workers.sweeps.trial import RUN_ID_KEY, run_trial

GOOD, USELESS = 0, 1  # grid indices of optimizer.lr: 0.1 learns xor's 2 epochs, 1e-7 does not


def _context(settings, sweep_id: str, log_models: str) -> TrialContext:
    base = mlp_spec(name="tiny", data={"name": "xor", "params": {"n": 100}},
                    model={"hidden": [8]}, training={"epochs": 2, "batch_size": 16},
                    diagnostics={"every_steps": 5, "plots": False})
    sweep = SweepSpec.model_validate({
        "name": "models", "base": base,
        "space": {"optimizer.lr": {"type": "grid", "values": [0.1, 1e-7]}},
        "search": {"algorithm": "grid", "metric": "val/loss", "mode": "min",
                   "log_models": log_models}})
    worker = worker_settings(settings)
    parent = ParentRun.open(sweep, sweep_id, worker)
    return TrialContext(sweep_id=sweep_id, sweep=sweep.model_dump(mode="json"),
                        parent_run_id=parent.run_id, experiment_id=parent.experiment_id,
                        settings=worker, board=ProgressBoard.remote())


def _has_model(ctx: TrialContext, final: dict) -> bool:
    client = MlflowClient(tracking_uri=ctx.settings.tracking_uri)
    return "model" in {a.path for a in client.list_artifacts(final[RUN_ID_KEY])}


def test_by_default_only_a_trial_that_ends_best_so_far_logs_its_model(ray_cluster, settings):
    ctx = _context(settings, "best-models", "best")
    good = run_trial({"optimizer.lr": GOOD}, ctx, "good")
    useless = run_trial({"optimizer.lr": USELESS}, ctx, "useless")  # ends behind good
    assert useless["val/loss"] > good["val/loss"]
    assert _has_model(ctx, good) and not _has_model(ctx, useless)


def test_the_order_does_not_lose_the_best_model(ray_cluster, settings):
    ctx = _context(settings, "best-last", "best")
    useless = run_trial({"optimizer.lr": USELESS}, ctx, "useless")  # best so far: the first
    good = run_trial({"optimizer.lr": GOOD}, ctx, "good")  # better: logs too
    assert _has_model(ctx, useless) and _has_model(ctx, good)


def test_all_and_none(ray_cluster, settings):
    every = _context(settings, "all-models", "all")
    assert all(_has_model(every, run_trial({"optimizer.lr": i}, every, f"t{i}"))
               for i in (GOOD, USELESS))
    nothing = _context(settings, "no-models", "none")
    assert not _has_model(nothing, run_trial({"optimizer.lr": GOOD}, nothing, "t"))


def test_the_board_keeps_each_sweeps_best_by_its_mode(ray_cluster):
    board = ProgressBoard.remote()
    claims = [ray.get(board.claim_best.remote("a", v, "min")) for v in (3.0, 4.0, 2.0, 2.0)]
    assert claims == [True, False, True, True]  # a tie keeps its model too
    assert ray.get(board.claim_best.remote("b", 0.5, "max"))  # sweeps apart
    assert not ray.get(board.claim_best.remote("b", 0.4, "max"))
    ray.get(board.forget_sweep.remote("a"))
    assert ray.get(board.claim_best.remote("a", 9.0, "min"))  # forgotten: starts again
