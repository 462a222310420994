"""The sweep driver: builds a Ray Tune experiment from a SweepSpec, runs it (or resumes it with
`Tuner.restore` when its state exists), keeps the trial table on the progress board and records
the MLflow parent run. Runs as a Ray task (`workers.runtime.ray_tasks.sweep_task`).

What keeps small trials cheap: trials that report once train on warm pooled workers
(`workers.sweeps.warm_trials`), actors are reused between trials, each trial runs one torch thread
per CPU of its share, Tune's per-result log files are off, nothing is checkpointed except for
PBT, and a trial reports to Tune once unless its scheduler judges it every epoch.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.tune.search import BasicVariantGenerator, Repeater, SearchAlgorithm, Searcher

from services.contract.sweep_spec import (
    PBT_FIXED_PREFIXES,
    REPEAT_KEY,
    ChoiceDomain,
    GridDomain,
    LogUniformDomain,
    QUniformDomain,
    RandIntDomain,
    SweepSpec,
    UniformDomain,
)
from services.contract.tags import STORED
from services.contract.trial_status import ended_status
from workers.sweeps.context import TrialContext
from workers.sweeps.summary import ParentRun
from workers.sweeps.trial import (
    FINAL_KEY,
    RUN_ID_KEY,
    STOP_REASON_KEY,
    TAG_TRIAL_ID,
    VERDICT_KEY,
    train_trial,
    trial_outcome,
)
from workers.sweeps.warm_trials import train_trial_warm, trial_launcher
from workers.training import checkpoints
from workers.worker_settings import WorkerSettings

# Per-result CSV/JSON/TensorBoard files cost more than a small trial's training; the experiment
# state (what a restore needs) is saved every 2 s instead of Tune's adaptive >= 10 s.
TUNE_ENV = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "TUNE_GLOBAL_CHECKPOINT_S": "2"}
STOP_POLL_S = 0.5
_cancelled: set[str] = set()  # sweeps whose stop was requested, in this driver process
_tables: dict[str, TrialTable] = {}  # the table callback Tune runs (restored from its state)
_boards: dict[str, Any] = {}  # the board each sweep driven in this process reports to


def run_sweep(sweep_id: str, payload: dict[str, Any], settings: WorkerSettings, board: Any, *,
              parent_run_id: str | None = None) -> dict[str, Any]:
    """Run (or resume) the sweep to the end. Returns the summary the dispatcher stores:
    {trials, best, configurations, trials_total, restored, cancelled}."""
    sweep = SweepSpec.model_validate(payload, context=STORED)
    os.environ.update(TUNE_ENV)
    # Without the per-result files the final result grid cannot read them back; the table
    # comes from the trials themselves, so that warning says nothing.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    parent = ParentRun.open(sweep, sweep_id, settings, run_id=parent_run_id)
    launcher = trial_launcher()
    board.report.remote(sweep_id, {"mlflow_run_id": parent.run_id,
                                   "mlflow_experiment_id": parent.experiment_id})
    _boards[sweep_id] = board
    try:
        grid, restored = _fit(sweep, sweep_id, settings, parent, board)
        # A warm trial Tune stopped (a cancelled sweep) may still be training: it ends before
        # the runs it leaves open are closed.
        ray.get(launcher.cancel_sweep.remote(sweep_id))
        table = _tables.pop(sweep_id, None) or TrialTable(sweep_id, sweep)
        cancelled = sweep_id in _cancelled
        rows = table.final_rows(grid)
        # Restored or not: a parent run continued after a crash before Tune saved any state
        # may hold the open runs of trials the new start does not know.
        _kill_abandoned_runs(parent, {row["trial_id"] for row in rows})
        summary = parent.finish(rows, cancelled=cancelled)
        shutil.rmtree(checkpoints.sweep_folder(settings.home, sweep_id), ignore_errors=True)
    except BaseException:
        launcher.cancel_sweep.remote(sweep_id)  # a failed driver leaves no trial training
        raise
    finally:
        _boards.pop(sweep_id, None)
        _cancelled.discard(sweep_id)
    return {**summary, "trials_total": sweep.trial_count(), "restored": restored,
            "cancelled": cancelled}


def _fit(sweep: SweepSpec, sweep_id: str, settings: WorkerSettings, parent: ParentRun,
         board: Any) -> tuple[Any, bool]:
    """Tune's run of the sweep, resumed from its saved state when there is one. Returns the
    result grid and whether it was resumed."""
    root = tune_storage(settings)
    path = f"{root}/{sweep_id}"
    restored = tune.Tuner.can_restore(path)
    ctx = TrialContext(sweep_id=sweep_id, sweep=sweep.model_dump(mode="json"),
                       parent_run_id=parent.run_id, experiment_id=parent.experiment_id,
                       settings=settings, board=board)
    resources = sweep.base.resources
    # Trials that report once and need no GPU train on warm pooled workers; the others in
    # Tune's actors (see workers.sweeps.warm_trials).
    warm = not sweep.reports_every_epoch and resources.gpus == 0
    # Restored, a trial that a crash cut off continues its own MLflow run and checkpoint.
    trainable = tune.with_resources(tune.with_parameters(
        train_trial_warm if warm else train_trial, ctx=ctx, restored=restored),
                                    {"cpu": resources.cpus, "gpu": resources.gpus,
                                     **resources.custom})
    if restored:
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True)
    else:
        tuner = build_tuner(sweep, sweep_id, trainable, root)
    return tuner.fit(), restored


def _kill_abandoned_runs(parent: ParentRun, trial_ids: set[str]) -> None:
    """Open runs of trials this start's Tune experiment does not hold (created after Tune last
    saved its state, or by a start that saved none, under other ids) were cut off for good:
    KILLED, rather than closed as finished with the others."""
    for run in parent.children("RUNNING"):
        if run.data.tags.get(TAG_TRIAL_ID) not in trial_ids:
            parent.client.set_terminated(run.info.run_id, status="KILLED")


def tune_storage(settings: WorkerSettings) -> str:
    """Where Tune keeps sweeps' state (each under `<root>/<sweep id>`): a directory, or a URI
    every node reaches on a cluster."""
    return (settings.tune_storage or str(Path(settings.home, "tune"))).rstrip("/")


# -- the Tune experiment ---------------------------------------------------------------------
def build_tuner(sweep: SweepSpec, sweep_id: str, trainable: Any, storage: str) -> tune.Tuner:
    search = sweep.search
    num_samples = search.num_samples * (sweep.repeat if search.algorithm == "tpe" else 1)
    return tune.Tuner(
        trainable, param_space=param_space(sweep),
        tune_config=tune.TuneConfig(
            metric=search.metric, mode=search.mode, search_alg=search_algorithm(sweep),
            scheduler=scheduler(sweep), num_samples=num_samples,
            # The basic generator limits itself; Tune wraps a Searcher (TPE) in a limiter.
            max_concurrent_trials=search.max_concurrent if search.algorithm == "tpe" else None,
            reuse_actors=True),
        run_config=tune.RunConfig(
            name=sweep_id, storage_path=storage, verbose=0, log_to_file=False,
            stop=CancelStop(sweep_id), callbacks=[TrialTable(sweep_id, sweep)],
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=4 if sweep.scheduler.name == "pbt" else None),
            failure_config=tune.FailureConfig(max_failures=0)))


def tune_domain(domain: Any, algorithm: str) -> Any:
    """A spec domain as a Tune domain. Listed values travel as indices: any value (a list of
    widths, a dict) then works with every searcher, Optuna included."""
    if isinstance(domain, ChoiceDomain | GridDomain):
        indices = list(range(len(domain.values)))
        enumerated = algorithm == "grid" or (isinstance(domain, GridDomain)
                                             and algorithm != "tpe")
        return tune.grid_search(indices) if enumerated else tune.choice(indices)
    if isinstance(domain, UniformDomain):
        return tune.uniform(domain.low, domain.high)
    if isinstance(domain, LogUniformDomain):
        return tune.loguniform(domain.low, domain.high)
    if isinstance(domain, RandIntDomain):
        return tune.randint(domain.low, domain.high)
    if isinstance(domain, QUniformDomain):
        return tune.quniform(domain.low, domain.high, domain.q)
    raise TypeError(f"no Tune domain for {domain!r}")


def param_space(sweep: SweepSpec) -> dict[str, Any]:
    space = {path: tune_domain(d, sweep.search.algorithm) for path, d in sweep.space.items()}
    if sweep.repeat > 1 and sweep.search.algorithm != "tpe":
        space[REPEAT_KEY] = tune.grid_search(list(range(sweep.repeat)))
    return space


def search_algorithm(sweep: SweepSpec) -> SearchAlgorithm | Searcher:
    seed = sweep.base.training.seed
    if sweep.search.algorithm == "tpe":
        from ray.tune.search.optuna import OptunaSearch

        # search.prior: an earlier sweep's trials, told to the study before it proposes
        told = [(config, trial.metric) for trial in sweep.search.prior
                if (config := sweep.encode(trial.params)) is not None]
        searcher: Searcher = OptunaSearch(
            seed=seed, points_to_evaluate=[c for c, _ in told] or None,
            evaluated_rewards=[m for _, m in told] or None)
        return Repeater(searcher, repeat=sweep.repeat, set_index=True) if sweep.repeat > 1 \
            else searcher
    # Random values are drawn once per sample and shared by every grid point (the seeds of
    # `repeat` included), so grid values are compared on the same draws.
    # An extension (search.prior) draws after the earlier sweep's draws, not the same again.
    return BasicVariantGenerator(constant_grid_search=True,
                                 random_state=seed + 7919 * len(sweep.search.prior),
                                 max_concurrent=sweep.search.max_concurrent or 0)


def scheduler(sweep: SweepSpec) -> TrialScheduler:
    spec = sweep.scheduler
    epochs = sweep.base.training.epochs
    if spec.name == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=spec.max_t or epochs,
                             grace_period=spec.grace_period,
                             reduction_factor=spec.reduction_factor, brackets=spec.brackets)
    if spec.name == "median":
        return MedianStoppingRule(time_attr="training_iteration",
                                  grace_period=spec.grace_period,
                                  min_samples_required=spec.min_samples_required)
    if spec.name == "pbt":
        mutations = {path: (list(range(len(d.values))) if isinstance(d, ChoiceDomain | GridDomain)
                            else tune_domain(d, "random"))
                     for path, d in sweep.space.items() if not path.startswith(PBT_FIXED_PREFIXES)}
        return FinishAwarePBT(
            time_attr="training_iteration", perturbation_interval=spec.perturbation_interval,
            hyperparam_mutations=mutations, quantile_fraction=spec.quantile_fraction,
            resample_probability=spec.resample_probability, synch=spec.synch,
            stop_on=sweep.search.stop_on, stop_grace_epochs=sweep.search.stop_grace_epochs)
    return FIFOScheduler()


class FinishAwarePBT(PopulationBasedTraining):
    """PBT that leaves a trial alone once it has trained its last epoch: exploiting it then
    would copy another trial's weights and train the last epochs again.

    With `search.stop_on`, a trial whose live verdict is one of those (after the grace
    epochs) counts among the worst at the next exploit step, whatever its metric: PBT
    replaces it with a perturbed copy of a top trial rather than stopping it."""

    def __init__(self, *args: Any, stop_on: list[str] | None = None,
                 stop_grace_epochs: int = 1, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.stop_on, self.stop_grace_epochs = set(stop_on or ()), stop_grace_epochs

    def _quantiles(self) -> tuple[list[Trial], list[Trial]]:
        lower, upper = super()._quantiles()
        if not self.stop_on or not upper:
            return lower, upper
        broken = [trial for trial, state in self._trial_state.items()
                  if not trial.is_finished() and self._broken(state.last_result or {})]
        kept = [t for t in upper if t not in broken]
        if not kept:  # nothing healthy to copy from: PBT's own choice stands
            return lower, upper
        return [*lower, *(t for t in broken if t not in lower)], kept

    def _broken(self, result: dict[str, Any]) -> bool:
        return (result.get(VERDICT_KEY) in self.stop_on
                and int(result.get("epoch", 0)) >= self.stop_grace_epochs)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]
                        ) -> str:
        if result.get(FINAL_KEY):
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


# -- following the trials --------------------------------------------------------------------
def _board(sweep_id: str) -> Any:
    """The progress board this driver reports to. Kept per sweep in the driver process rather
    than in the callbacks: a restored experiment's callbacks come back from Tune's saved
    state, which holds the board handle of the service that started it."""
    return _boards[sweep_id]


class CancelStop(tune.Stopper):
    """Ends the whole experiment once the service asked the board to stop this sweep: Tune
    then stops every trial and releases their placement groups (a force-killed driver leaves
    them reserved)."""

    def __init__(self, sweep_id: str):
        self.sweep_id = sweep_id
        self._checked = 0.0

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        if self.sweep_id in _cancelled:
            return True
        now = time.monotonic()
        if now - self._checked < STOP_POLL_S:
            return False
        self._checked = now
        if ray.get(_board(self.sweep_id).stop_requested.remote(self.sweep_id)):
            _cancelled.add(self.sweep_id)
            return True
        return False


class TrialTable(tune.Callback):
    """Reports each trial's status changes (and its values, on first sight) to the board."""

    def __init__(self, sweep_id: str, sweep: SweepSpec):
        self.sweep_id, self.sweep = sweep_id, sweep
        self.trials: list[Trial] = []
        self._sent: dict[str, str] = {}

    def setup(self, **info: Any) -> None:  # type: ignore[override]
        self._sent = {}  # a restored experiment reports every trial again
        _tables[self.sweep_id] = self

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self.trials = trials
        board = None
        for trial in trials:
            status = self.status(trial)
            if self._sent.get(trial.trial_id) == status:
                continue
            update = self.row(trial, status, first=trial.trial_id not in self._sent)
            board = board or _board(self.sweep_id)
            board.report_trial.remote(self.sweep_id, trial.trial_id, update)
            self._sent[trial.trial_id] = status

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self.on_step_end(0, trials)

    def status(self, trial: Trial) -> str:
        if trial.status == Trial.TERMINATED:
            last = trial.last_result or {}
            return ended_status(finished=bool(last.get(FINAL_KEY)),
                                stop_reason=last.get(STOP_REASON_KEY),
                                cancelled=self.sweep_id in _cancelled).value
        return {Trial.PENDING: "queued", Trial.RUNNING: "running", Trial.PAUSED: "paused",
                Trial.ERROR: "failed"}.get(trial.status, "queued")

    def row(self, trial: Trial, status: str, *, first: bool = True) -> dict[str, Any]:
        update: dict[str, Any] = {"status": status}
        if first:
            params, repeat = self.sweep.decode(trial.config)
            update.update(params=params, repeat=repeat)
        last = trial.last_result or {}
        if RUN_ID_KEY in last and last[RUN_ID_KEY]:
            update["mlflow_run_id"] = last[RUN_ID_KEY]
        if self.sweep.search.metric in last:
            update["metric"] = float(last[self.sweep.search.metric])
            update["metrics"] = {k: float(v) for k, v in last.items()
                                 if "/" in k and isinstance(v, int | float)}
            update["epoch"] = int(last.get("epoch", last.get("training_iteration", 0)))
        update.update(trial_outcome(last))
        if status == "failed":
            update.update(_failure(trial))
        return update

    def final_rows(self, grid: Any) -> list[dict[str, Any]]:
        """Every trial's row at the end (status, values, last metrics, run id)."""
        trials = self.trials or []
        if not trials:  # nothing stepped in this process (a restore of a finished sweep)
            return [self._row_of_result(r) for r in grid]
        return [{"trial_id": t.trial_id, **self.row(t, self.status(t))} for t in trials]

    def _row_of_result(self, result: Any) -> dict[str, Any]:
        metrics = result.metrics or {}
        params, repeat = self.sweep.decode(result.config or {})
        row = {"trial_id": metrics.get("trial_id", ""), "params": params, "repeat": repeat,
               "status": "failed" if result.error else ended_status(
                   finished=bool(metrics.get(FINAL_KEY)),
                   stop_reason=metrics.get(STOP_REASON_KEY)).value,
               "mlflow_run_id": metrics.get(RUN_ID_KEY),
               "metric": metrics.get(self.sweep.search.metric), **trial_outcome(metrics)}
        if result.error:
            row["error"] = f"{type(result.error).__name__}: {result.error}"[:2000]
        return row


def _failure(trial: Trial) -> dict[str, Any]:
    """A failed trial's error and, when it diverged, its diagnosis's verdict (the `Diverged`
    error carries the diagnosis through Ray): a diverged trial's row says `diverged` as an
    experiment's record does."""
    try:
        error = trial.get_pickled_error() or trial.get_error()
    except Exception as exc:  # the error file may be gone; the status still says failed
        return {"error": f"the trial failed; its error could not be read ({exc})"}
    cause = getattr(error, "cause", None) or error
    out: dict[str, Any] = {"error": f"{type(cause).__name__}: {cause}"[:2000]}
    diagnosis = getattr(cause, "diagnosis", None)
    if isinstance(diagnosis, dict) and diagnosis.get("verdict"):
        out["verdict"] = str(diagnosis["verdict"])
    return out
