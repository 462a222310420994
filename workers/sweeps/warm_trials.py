"""Sweep trials on warm workers.

Tune runs every trial in an actor, and a sweep's actors are new processes: each imported torch,
MLflow and the zoo and opened the tracking store before its first trial trained, a start-up
that every sweep paid again (BENCHMARKS.md). The trainable here is the light half of that actor
(it imports neither): it holds the trial's reservation and has the training run as a Ray task
on its node, on the pooled worker processes that earlier trials and experiments warmed.

The tasks are submitted by a long-lived launcher actor, not by the trial's actor: Ray retires
the worker processes that ran a task once the task's owner dies, and Tune ends its actors with
every sweep.

This serves trials that report to Tune once, at the end (the FIFO scheduler), and need no GPU.
Schedulers that judge running trials, and PBT's checkpoints, keep the training inside Tune's
actor (`workers.sweeps.trial.train_trial`), where `tune.report` can stop it between epochs.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, cast

import ray
from ray import tune
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from workers.sweeps.context import TrialContext
from workers.worker_settings import NAMESPACE

if TYPE_CHECKING:
    from ray import ObjectRef
    from ray.actor import ActorClass

TRIAL_LAUNCHER = "layerwise-trial-launcher"
CANCEL_WAIT_S = 30.0
HOLDER_CHECK_S = 1.0


def train_trial_warm(config: dict[str, Any], ctx: TrialContext, restored: bool = False
                     ) -> None:
    """Tune's trainable: run the trial on a warm worker of this node, report its result.
    restored: the sweep was restored after a crash (`workers.sweeps.trial.run_trial`)."""
    # Looked up, not created: an actor created here would land in this trial's placement
    # group and die with it. The sweep's driver created it.
    launcher = ray.get_actor(TRIAL_LAUNCHER, namespace=NAMESPACE)
    trial_id = tune.get_context().get_trial_id()
    here = ray.get_runtime_context()
    try:
        ref: ObjectRef[dict[str, Any]] = launcher.run.remote(
            config, ctx, trial_id, here.get_node_id(), here.current_actor, restored)
        final = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        raise _trial_error(exc) from None
    except BaseException:
        launcher.cancel.remote(trial_id)  # Tune stopped this trial: the training stops too
        raise
    tune.report(final)


def _trial_error(exc: BaseException) -> BaseException:
    """The trial's own error (an invalid spec, a diverged run), out of Ray's wrappings."""
    while isinstance(exc, ray.exceptions.RayTaskError) and isinstance(exc.cause, Exception):
        exc = exc.cause
    return exc


@ray.remote(num_cpus=0)
class TrialLauncher:
    """Owns the warm trials' tasks and can stop them: one trial, or what is left of a sweep."""

    def __init__(self) -> None:
        self._running: dict[str, tuple[str, Any]] = {}  # trial id -> (sweep id, task)

    async def run(self, config: dict[str, Any], ctx: TrialContext, trial_id: str,
                  node_id: str, holder: Any, restored: bool = False) -> dict[str, Any]:
        """The trial's result. Its task is cancelled if `holder` (the trial's actor) dies:
        a killed sweep driver takes its trial actors along, and a restored sweep runs the
        trial again."""
        here = NodeAffinitySchedulingStrategy(node_id, soft=False)
        ref = _trial_task.options(scheduling_strategy=here).remote(config, ctx, trial_id,
                                                                   restored)
        self._running[trial_id] = (ctx.sweep_id, ref)
        result = asyncio.wrap_future(ref.future())
        try:
            while not (await asyncio.wait([result], timeout=HOLDER_CHECK_S))[0]:
                if not await _alive(holder):
                    ray.cancel(ref, force=True)
                    break
            return await result
        finally:
            self._running.pop(trial_id, None)

    async def cancel(self, trial_id: str) -> None:
        _, ref = self._running.pop(trial_id, (None, None))
        if ref is not None:
            ray.cancel(ref, force=True)

    async def cancel_sweep(self, sweep_id: str) -> int:
        """Stop the sweep's trials still training (Tune stopped them, or the driver failed)
        and wait until they have. Returns how many there were."""
        refs = [ref for s, ref in self._running.values() if s == sweep_id]
        for trial_id in [t for t, (s, _) in self._running.items() if s == sweep_id]:
            await self.cancel(trial_id)
        if refs:
            await asyncio.wait([asyncio.ensure_future(_settled(r)) for r in refs],
                               timeout=CANCEL_WAIT_S)
        return len(refs)


async def _alive(actor: Any) -> bool:
    try:
        await asyncio.wait_for(actor.__ray_ready__.remote(), timeout=HOLDER_CHECK_S)
    except ray.exceptions.RayActorError:
        return False
    except TimeoutError:  # busy, not dead
        return True
    return True


async def _settled(ref: Any) -> None:
    try:
        await ref
    except Exception:  # noqa: BLE001 - cancelled or failed: either way it has ended
        return


def trial_launcher() -> Any:
    """The launcher, created on first use by a sweep's driver (outside any placement group);
    detached, so that it (and the workers its tasks warmed) outlives the sweep."""
    # @ray.remote made the class an ActorClass; mypy does not apply class decorators.
    launcher = cast("ActorClass[TrialLauncher]", TrialLauncher)
    return launcher.options(name=TRIAL_LAUNCHER, namespace=NAMESPACE, get_if_exists=True,
                            lifetime="detached").remote()


# No CPU of its own: the trial's actor holds the trial's share and waits while this runs.
@ray.remote(num_cpus=0, max_retries=0)
def _trial_task(config: dict[str, Any], ctx: TrialContext, trial_id: str,
                restored: bool = False) -> dict[str, Any]:
    # Imported here, in the warm worker, not where this module is: Tune's trial actors import
    # this module and must stay light (no torch, no MLflow).
    from workers.sweeps.trial import run_trial

    return run_trial(config, ctx, trial_id, restored=restored)
