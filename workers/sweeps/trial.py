"""One sweep trial on Ray Tune: the experiment's own run (data, model, Trainer, MLflow) with the
trial's values applied, tagged as a child of the sweep's run, reporting to Tune.

Tune's `report` waits for the driver each time, so a trial reports every epoch only when the
scheduler judges running trials (ASHA, median, PBT); otherwise once, at the end. The last report
carries FINAL_KEY, which tells the driver a finished trial from one a scheduler stopped.

A trial is a job of its own (`trial_job_id`): its MLflow run's job id and its checkpoint file,
which concurrent trials of one sweep must not share. It keeps one MLflow run, continued when PBT
restarts it from a checkpoint and when a sweep restored after a crash runs it again.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import ray
import torch
from mlflow.tracking import MlflowClient
from pydantic import ValidationError
from ray import tune

from services.contract import mlflow_names as names
from services.contract.spec import ExperimentSpec
from services.contract.sweep_spec import PBT_FIXED_PREFIXES, SweepSpec
from services.contract.tags import STORED
from services.contract.trial_status import DIAGNOSIS_STOP
from workers.diagnostics.live import LiveDiagnosis
from workers.run import RunHooks, RunOptions, run_experiment
from workers.sweeps.context import TrialContext
from workers.tracking.run_tracker import RunTracker
from workers.training.callback_base import TrainerView

FINAL_KEY = "layerwise_final"
RUN_ID_KEY = "mlflow_run_id"
# The live verdict in every result a trial reports: the trial table's and PBT's to read.
VERDICT_KEY = "layerwise_verdict"
STOP_REASON_KEY = "stop_reason"
TAG_TRIAL_ID = "layerwise.trial_id"
TAG_TRIAL_STATUS = "layerwise.trial_status"
TAG_STOP_REASON = "layerwise.stop_reason"
STATE_FILE = "state.pt"

# Parsed once per worker process: Tune reuses the actor, and a warm worker runs many trials.
_sweeps: dict[str, SweepSpec] = {}
SWEEPS_KEPT = 8


class TrialSpecInvalid(ValueError):
    """The trial's values give a spec that does not validate; the trial fails, the sweep goes
    on."""


def trial_job_id(sweep_id: str, trial_id: str) -> str:
    """The trial's job id: its run's `layerwise.job_id` and its checkpoint file's name."""
    return f"{sweep_id}/{trial_id}"


def train_trial(config: dict[str, Any], ctx: TrialContext, restored: bool = False) -> None:
    """Tune's trainable for trials that report while they run (ASHA, median, PBT, GPUs): the
    training runs in Tune's actor, so `tune.report` can stop it between epochs."""
    tune.report(run_trial(config, ctx, tune.get_context().get_trial_id(),
                          tune.get_checkpoint(), restored=restored))


def run_trial(config: dict[str, Any], ctx: TrialContext, trial_id: str,
              checkpoint: tune.Checkpoint | None = None, *, restored: bool = False
              ) -> dict[str, Any]:
    """Run the trial's experiment; returns the final result for Tune (FINAL_KEY set).

    checkpoint: Tune's (PBT), to continue from: the trial's own or a better trial's.
    restored: the sweep was restored after a crash, which may have cut this trial off: it
        then continues its MLflow run, from its own last checkpoint.
    """
    if ctx.sweep_id not in _sweeps and len(_sweeps) >= SWEEPS_KEPT:
        _sweeps.clear()
    sweep = _sweeps.get(ctx.sweep_id) or _sweeps.setdefault(
        ctx.sweep_id, SweepSpec.model_validate(ctx.sweep, context=STORED))
    params, repeat = sweep.decode(config)
    payload = sweep.trial_payload(params, repeat, name=f"{sweep.display_name}-{trial_id}")
    try:
        spec = ExperimentSpec.model_validate(payload, context=STORED)
    except ValidationError as exc:
        raise TrialSpecInvalid(f"the values {params} give an invalid spec: {exc}") from None
    state = _load_state(checkpoint)
    if state is not None:  # PBT continues from a checkpoint (its own or a better trial's)
        epochs = payload["training"]["epochs"]
        payload["training"]["epochs"] = max(1, epochs - state["epoch"])
    epochs_planned = int(payload["training"]["epochs"]) + (state["epoch"] if state else 0)
    reporter = TuneReporter(sweep, spec, params, state, board=ctx.board, sweep_id=ctx.sweep_id)

    def report(update: dict[str, Any]) -> None:
        if "mlflow_run_id" in update:
            reporter.run_id = update["mlflow_run_id"]
            ctx.board.report_trial.remote(ctx.sweep_id, trial_id, {
                "mlflow_run_id": reporter.run_id, "params": params, "repeat": repeat,
                "node_id": ray.get_runtime_context().get_node_id()})
        elif "progress" in update:
            progress = update["progress"]
            live = (progress.get("diagnosis") or {}).get("verdict")
            ctx.board.report_trial.remote(ctx.sweep_id, trial_id, {
                "epoch": reporter.offset + progress["epoch"], "metrics": progress["metrics"],
                "metric": progress["metrics"].get(sweep.search.metric),
                **({"verdict": live} if live else {})})

    run_id = _trial_run(ctx, trial_id) if state is not None or restored else None
    options = RunOptions(
        tags={names.TAG_SWEEP_ID: ctx.sweep_id, TAG_TRIAL_ID: trial_id,
              names.PARENT_RUN_TAG: ctx.parent_run_id},
        hooks=reporter,
        run_id=run_id,
        # Tune's checkpoint, when there is one, says where training continues; otherwise a
        # run cut off by a crash resumes from the trial's own last checkpoint.
        resume=state is None and run_id is not None,
        experiment_id=ctx.experiment_id)
    result = run_experiment(trial_job_id(ctx.sweep_id, trial_id), payload, ctx.settings,
                            report, options)
    epoch = reporter.offset + int(result.get("epochs_run", 0))
    final = {**reporter.last_metrics, **_numbers(result), FINAL_KEY: 1, "epoch": epoch,
             RUN_ID_KEY: reporter.run_id, **reporter.outcome(result, planned=epochs_planned)}
    ctx.board.report_trial.remote(ctx.sweep_id, trial_id, {
        "epoch": epoch, "metrics": {k: v for k, v in final.items() if "/" in k},
        "metric": final.get(sweep.search.metric), **trial_outcome(final)})
    return final


def trial_outcome(result: dict[str, Any]) -> dict[str, Any]:
    """What a trial's row says beyond its metrics: its verdict and, when its diagnosis stopped
    it, the stop reason and the CPU-seconds the stop saved."""
    row: dict[str, Any] = {}
    if result.get(VERDICT_KEY):
        row["verdict"] = str(result[VERDICT_KEY])
    if result.get(STOP_REASON_KEY):
        row["stop_reason"] = str(result[STOP_REASON_KEY])
    if result.get("cpu_seconds_saved") is not None:
        row["cpu_seconds_saved"] = float(result["cpu_seconds_saved"])
    return row


class TuneReporter(RunHooks):
    """Reports each epoch's metrics to Tune (when the scheduler needs them) and, for PBT,
    saves the weights every perturbation interval and starts from Tune's checkpoint."""

    def __init__(self, sweep: SweepSpec, spec: ExperimentSpec, params: dict[str, Any],
                 state: dict[str, Any] | None, *, board: Any = None, sweep_id: str = ""):
        self.per_epoch = sweep.reports_every_epoch
        self.pbt = sweep.scheduler.name == "pbt"
        self.checkpoint_every = getattr(sweep.scheduler, "perturbation_interval", None)
        self.spec, self.params, self.state = spec, params, state
        self.offset = state["epoch"] if state else 0
        self.run_id: str | None = None
        self.tracker: RunTracker | None = None
        self.last_metrics: dict[str, float] = {}
        # search.stop_on: the verdicts that end the trial after the grace epochs (not under
        # PBT, which replaces such a trial by exploiting it: FinishAwarePBT).
        self.stop_on = set(sweep.search.stop_on) if not self.pbt else set()
        self.grace = sweep.search.stop_grace_epochs
        self.live: LiveDiagnosis | None = None
        self.cpus = spec.resources.cpus
        self.started: float | None = None  # when this segment's training started
        self.epochs_timed = 0
        self.seconds = 0.0
        # search.log_models: which trials log their model (ranked on the board's best so far)
        self.log_models, self.metric = sweep.search.log_models, sweep.search.metric
        self.mode, self.board, self.sweep_id = sweep.search.mode, board, sweep_id
        self.stopped_on_diagnosis = False

    def on_run_start(self, tracker: RunTracker) -> None:
        self.tracker = tracker

    def on_train_start(self, trainer: TrainerView) -> None:
        """Start from Tune's checkpoint, if any. PBT changes values between segments of one
        run: they are logged as metrics, since an MLflow param cannot change."""
        self.live = next((c for c in trainer.callbacks if isinstance(c, LiveDiagnosis)), None)
        self.started = time.perf_counter()
        if self.state is not None:
            self.restore(trainer)
        if self.pbt and self.tracker is not None:
            values = {f"hparam/{path}": float(value) for path, value in self.params.items()
                      if not path.startswith(PBT_FIXED_PREFIXES)
                      and isinstance(value, int | float)}
            self.tracker.sink.log(values, step=trainer.step)

    @property
    def verdict(self) -> str | None:
        """The live diagnosis's verdict (called once it held `live_patience` epochs)."""
        return self.live.verdict if self.live is not None else None

    def on_epoch_end(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        self.last_metrics = metrics
        self.epochs_timed += 1
        if self.started is not None:
            self.seconds = time.perf_counter() - self.started
        epoch = self.offset + trainer.epoch + 1
        self._stop_on_diagnosis(trainer, epoch)
        if not self.per_epoch or trainer.epoch + 1 >= trainer.epochs \
                or trainer.stop_reason is not None:
            return  # the last epoch is reported with the final result
        result = {**metrics, RUN_ID_KEY: self.run_id, "epoch": epoch,
                  VERDICT_KEY: self.verdict or ""}
        if self.checkpoint_every and epoch % self.checkpoint_every == 0:
            with tempfile.TemporaryDirectory() as tmp:
                torch.save({"model": trainer.model.state_dict(), "step": trainer.step,
                            "epoch": epoch, "optimizer": trainer.optimizer.state_dict()
                            if trainer.optimizer is not None else None},
                           Path(tmp, STATE_FILE))
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))
        else:
            tune.report(result)

    def _stop_on_diagnosis(self, trainer: TrainerView, epoch: int) -> None:
        """End training after this epoch when the live verdict is one of `search.stop_on`
        and the grace epochs have run: the trial then ends like a finished one (its metric
        reaches the searcher) and frees its resources."""
        verdict = self.verdict
        last = trainer.epoch + 1 >= trainer.epochs  # nothing left to stop, nothing saved
        if verdict not in self.stop_on or epoch < self.grace or last \
                or trainer.stop_reason is not None:
            return
        reason = f"{DIAGNOSIS_STOP}{verdict}"
        trainer.request_stop(reason)
        self.stopped_on_diagnosis = True
        if self.tracker is not None:
            tracker = self.tracker
            tracker.sink.call_soon(lambda: tracker.set_tags({
                TAG_STOP_REASON: reason, TAG_TRIAL_STATUS: "stopped_on_diagnosis"}))

    def outcome(self, result: dict[str, Any], *, planned: int) -> dict[str, Any]:
        """The trial's verdict (the diagnosis after training, else the live one), its stop
        reason and, when the diagnosis stopped it, an estimate of the CPU-seconds saved: the
        epochs it did not run times its measured seconds per epoch times its CPUs."""
        diagnosis = result.get("diagnosis")
        verdict = diagnosis.get("verdict") if isinstance(diagnosis, dict) else self.verdict
        reason = result.get(STOP_REASON_KEY)
        stopped = isinstance(reason, str) and reason.startswith(DIAGNOSIS_STOP)
        if stopped:  # the verdict it was stopped for, whatever the shorter run ends with
            verdict = str(reason).removeprefix(DIAGNOSIS_STOP)
        out: dict[str, Any] = {VERDICT_KEY: verdict or ""}
        if reason:
            out[STOP_REASON_KEY] = str(reason)
        if stopped and self.epochs_timed:
            per_epoch = self.seconds / self.epochs_timed
            ran = self.offset + int(result.get("epochs_run", self.epochs_timed))
            out["seconds_per_epoch"] = per_epoch
            out["cpu_seconds_saved"] = max(0, planned - ran) * per_epoch * self.cpus
        return out

    def restore(self, trainer: TrainerView) -> None:
        """Load the checkpoint's weights and optimizer state; the trial's own values (a
        perturbed learning rate) replace the ones saved with it."""
        assert self.state is not None, "restore needs a checkpoint"
        trainer.model.load_state_dict(self.state["model"])
        if trainer.optimizer is not None and self.state["optimizer"] is not None:
            trainer.optimizer.load_state_dict(self.state["optimizer"])
            for group in trainer.optimizer.param_groups:
                group["lr"] = group["initial_lr"] = self.spec.optimizer.lr
        trainer.step = self.state["step"]

    def log_model(self, tracker: RunTracker, model: torch.nn.Module) -> None:
        """The trial's model, when `search.log_models` asks for it: saving one is a visible
        share of a short trial's fixed cost (BENCHMARKS.md, rows 3 and 10)."""
        if self.log_models == "all" or (self.log_models == "best" and self.best_so_far()):
            log_model_files(tracker, model)

    def best_so_far(self) -> bool:
        """Whether this trial ends as the sweep's best so far (the board keeps the best). A
        trial stopped on its diagnosis is not; when the board cannot answer, the model is
        kept rather than lose the best one."""
        value = self.last_metrics.get(self.metric)
        if self.stopped_on_diagnosis or value is None or not math.isfinite(value):
            return False
        if self.board is None:
            return True
        try:
            return bool(ray.get(self.board.claim_best.remote(self.sweep_id, float(value),
                                                             self.mode), timeout=30))
        except (ray.exceptions.RayError, TimeoutError):
            return True

    def close_status(self, tracker: RunTracker, exc: BaseException) -> str | None:
        """Tune ends a trial it stops by raising SystemExit inside `report`. A trial that
        reports only at the end is stopped by cancelling it (SystemExit on SIGTERM,
        KeyboardInterrupt): a cancelled sweep, which closes the run as KILLED."""
        if not isinstance(exc, SystemExit | KeyboardInterrupt):
            return "FAILED"
        if self.pbt or not self.per_epoch:
            return None  # PBT paused or exploited it (it goes on later), or it was cancelled
        tracker.set_tags({TAG_TRIAL_STATUS: "early_stopped"})
        return "FINISHED"


def log_model_files(tracker: RunTracker, model: torch.nn.Module) -> None:
    """The trained model as an MLflow pytorch model in the run's artifacts (runs:/<id>/model).

    A trial skips MLflow's logged-model entity: registering one reads back every metric
    history of the run, longer than a short trial's training (BENCHMARKS.md).
    """
    torch_version = torch.__version__.split("+")[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model")
        mlflow.pytorch.save_model(model.cpu(), path, serialization_format="pickle",
                                  pip_requirements=[f"torch=={torch_version}"])
        tracker.log_files(path, "model")


def _trial_run(ctx: TrialContext, trial_id: str) -> str | None:
    """The trial's MLflow run, if it has one: left open when PBT paused the trial or a crash
    cut it off. Whatever its status (a trial that ended just before a crash, which Tune's
    saved state missed, runs again): one trial, one run."""
    client = MlflowClient(tracking_uri=ctx.settings.tracking_uri)
    runs = client.search_runs(
        [ctx.experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
        filter_string=(f"tags.`{names.TAG_SWEEP_ID}` = '{ctx.sweep_id}' and "
                       f"tags.`{TAG_TRIAL_ID}` = '{trial_id}'"))
    return runs[0].info.run_id if runs else None


def _load_state(checkpoint: tune.Checkpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        # Tensors, numbers and optimizer state only: nothing in a checkpoint may carry code.
        return torch.load(Path(folder, STATE_FILE), map_location="cpu", weights_only=True)


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}
