"""The live diagnosis: at epoch ends, the diagnosis again from what the loop already
measured (the norm history so far, the epoch metrics, an activation sample taken for it),
carried in the job's progress as `progress["diagnosis"]` and in the MLflow tag
`layerwise.diagnosis`.

What it costs is bounded: it judges at the end of each of the first `FIRST_EPOCHS` epochs
(a problem that shows early is called early) and at the last, and in between only while the
time it has spent stays within `BUDGET` of the training's time so far; epochs of a few
milliseconds are then judged every few epochs, long ones every epoch (BENCHMARKS.md, row 7b:
at most 2% of the loop). A run that diverges is called `diverged` at the step whose loss was
not finite.

No false early alarms: a verdict is called only once it has held for `live_patience`
consecutive judged epochs, and the findings that rest on the loss curve (not_learning, slow,
overfitting, and vanishing called from a run's early phase because the run stays at its
baseline) only once `live_min_fraction` of the epochs have run (every run starts at its
baseline). With
`diagnostics.on_problem: stop` the run ends after the epoch at which a problem is called, with
`diagnosis: <verdict>` as the stop reason. The diagnosis after training stays authoritative;
it is the same engine on all the data, and it keeps the live calls (`calls`: `[{step,
verdict}]`, the first judgement's and each change after it) as its `live_verdicts`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from services.contract.diagnostics_spec import DiagnosticsSpec
from services.contract.verdicts import Verdict
from workers.diagnostics.verdicts import Diagnosis, Finding
from workers.training.callback_base import Callback, TrainerView

CURVE_VERDICTS = ("not_learning", "slow", "overfitting")
FIRST_EPOCHS = 5  # judged at every epoch end, whatever it costs
BUDGET = 0.005  # then: the share of the training's time judging (and its sample) may take
# ... and while a problem seen at the last judgement waits for its confirmation: a suspected
# problem is judged again at the next epoch ends (a sweep's `stop_on` then stops it promptly),
# within this larger share.
CONFIRM_BUDGET = 0.02


def _needs_the_curve(finding: Finding) -> bool:
    """Whether a finding rests on where the loss curve stands (every run starts at its
    baseline): the curve verdicts, and vanishing called from the early phase of a run that
    has not left its baseline or through time (called only when the run falls short)."""
    return finding.verdict in CURVE_VERDICTS \
        or finding.evidence.get("phase") in ("early", "through_time")


class LiveDiagnosis(Callback):
    def __init__(self, judge: Callable[[int], Diagnosis], settings: DiagnosticsSpec,
                 set_tag: Callable[[str], None], *,
                 sample: Callable[[int], None] | None = None,
                 budget: float | None = BUDGET, first_epochs: int = FIRST_EPOCHS):
        self.judge = judge  # (epochs the run will have) -> the diagnosis so far
        self.sample = sample  # (step) -> a fresh activation sample, before judging
        self.budget, self.first_epochs = budget, first_epochs
        self.patience = settings.thresholds.live_patience
        self.min_fraction = settings.thresholds.live_min_fraction
        self.stop_on_problem = settings.on_problem == "stop"
        self.set_tag = set_tag
        self.verdict = "healthy"  # the called verdict
        self.detected_at_step: int | None = None
        self.seen: list[tuple[int, str]] = []  # (step, candidate verdict) per judged epoch
        # The called verdict at the first judgement and at each change: [{step, verdict}].
        self.calls: list[dict[str, Any]] = []
        self._judged: tuple[Diagnosis, set[Verdict], str] | None = None  # the last judgement
        self._payload: dict[str, Any] | None = None  # built from it when a report asks
        self.spent = 0.0  # seconds spent judging (sampling for it, building the payload)
        self._started: float | None = None
        # The last epoch end: (epochs done, trainer.step), for a report after a failure.
        self.last_epoch_end: tuple[int, int] | None = None

    def on_train_start(self, trainer: TrainerView) -> None:
        self._started = time.perf_counter()
        self.last_epoch_end = (trainer.start_epoch, trainer.step)

    def due(self, trainer: TrainerView) -> bool:
        """Whether to judge at this epoch end: always in the first `first_epochs` epochs and
        at the last, otherwise while the time spent judging stays within `budget` of the
        training's time so far (`CONFIRM_BUDGET` while a problem awaits its confirmation)."""
        if self.budget is None or trainer.epoch < self.first_epochs \
                or trainer.epoch + 1 >= trainer.epochs:
            return True
        if self._started is None:
            self._started = time.perf_counter()
        pending = bool(self.seen) and self.seen[-1][1] not in ("healthy", self.verdict)
        share = max(self.budget, CONFIRM_BUDGET) if pending else self.budget
        return self.spent <= share * (time.perf_counter() - self._started)

    def on_epoch_end(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        self.last_epoch_end = (trainer.epoch + 1, trainer.step)
        if not self.due(trainer):
            return
        started = time.perf_counter()
        # The last epoch's sample is the one taken after training (after early stopping
        # restores the best weights); a stopping run's too.
        if self.sample is not None and trainer.epoch + 1 < trainer.epochs \
                and trainer.stop_reason is None:
            self.sample(trainer.step)
        diagnosis = self.judge(trainer.epochs)
        step = max(0, trainer.step - 1)
        done = (trainer.epoch + 1) / max(1, trainer.epochs)
        shown = {f.verdict for f in diagnosis.findings
                 if done >= self.min_fraction or not _needs_the_curve(f)}
        candidate = next((f.verdict for f in diagnosis.findings
                          if f.verdict in shown and f.verdict != "no_gradients"), "healthy")
        self.seen.append((step, candidate))
        streak = self._streak(candidate)
        if candidate != self.verdict and len(streak) >= self.patience:
            self.verdict = candidate
            self.detected_at_step = streak[0] if candidate != "healthy" else None
            self.set_tag(candidate)
            if candidate != "healthy" and self.stop_on_problem:
                trainer.request_stop(f"diagnosis: {candidate}")
        if not self.calls or self.calls[-1]["verdict"] != self.verdict:
            self.calls.append({"step": step, "verdict": self.verdict})
        self._judged, self._payload = (diagnosis, shown, candidate), None
        self.spent += time.perf_counter() - started

    def diverged(self, diagnosis: Diagnosis, step: int) -> None:
        """The loop raised `Diverged` at `step` (the loss was not finite there): `diagnosis`
        (verdict diverged) is called at once, detected at that step."""
        self.verdict, self.detected_at_step = "diverged", step
        self.seen.append((step, "diverged"))
        self.calls.append({"step": step, "verdict": "diverged"})
        self._judged = (diagnosis, {f.verdict for f in diagnosis.findings}, "diverged")
        self._payload = None

    @property
    def payload(self) -> dict[str, Any] | None:
        """The live diagnosis as the progress carries it (built when a report asks for it:
        reports are sent a few times a second at most, epochs may end far more often)."""
        if self._payload is None and self._judged is not None:
            started = time.perf_counter()
            diagnosis, shown, candidate = self._judged
            payload = diagnosis.as_dict()
            payload.pop("evidence", None)  # the findings carry theirs; the rest stays in MLflow
            payload["findings"] = [f for f in payload["findings"] if f["verdict"] in shown]
            payload.update(verdict=self.verdict, detected_at_step=self.detected_at_step,
                           candidate=candidate, live_verdicts=list(self.calls))
            self._payload = payload
            self.spent += time.perf_counter() - started
        return self._payload

    def _streak(self, verdict: str) -> list[int]:
        """The steps of the trailing run of epochs whose candidate was `verdict`."""
        steps: list[int] = []
        for step, seen in reversed(self.seen):
            if seen != verdict:
                break
            steps.append(step)
        return steps[::-1]

    def detected_at(self, verdict: str) -> int | None:
        """The step from which `verdict` held to the end of training, if it did."""
        streak = self._streak(verdict)
        return streak[0] if streak and verdict != "healthy" else None

    def decorate(self, update: dict[str, Any]) -> dict[str, Any]:
        """A progress update with the live diagnosis in it."""
        if self.payload is None or "progress" not in update:
            return update
        return {**update, "progress": {**update["progress"], "diagnosis": self.payload}}


def live_agrees(diagnosis: Diagnosis, calls: list[dict[str, Any]]) -> None:
    """The final `diagnosis` with the live calls as its `live_verdicts`, and a note when the
    final verdict is not the one the live line called last (the final one saw every epoch:
    it says which epochs changed its mind through its evidence)."""
    diagnosis.live_verdicts = [dict(call) for call in calls]
    last = calls[-1]["verdict"] if calls else None
    if last is not None and last != diagnosis.verdict:
        diagnosis.notes.append(
            f"the live diagnosis called {last} from step {calls[-1]['step']}; the diagnosis "
            f"after training, on every epoch, is {diagnosis.verdict}")
