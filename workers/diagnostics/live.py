"""The live diagnosis: at every epoch end, the diagnosis again from what the loop already
measured (the norm history so far, the epoch metrics, the last activation sample), carried in
the job's progress as `progress["diagnosis"]` and in the MLflow tag `layerwise.diagnosis`.

No false early alarms: a verdict is called only once it has held for `live_patience`
consecutive epochs, and the findings that rest on the loss curve (not_learning, slow,
overfitting, and vanishing called from a run's early phase because the run stays at its
baseline) only once `live_min_fraction` of the epochs have run (every run starts at its
baseline). With
`diagnostics.on_problem: stop` the run ends after the epoch at which a problem is called, with
`diagnosis: <verdict>` as the stop reason. The diagnosis after training stays authoritative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from services.contract.spec import DiagnosticsSpec
from workers.diagnostics.verdicts import Diagnosis, Finding
from workers.training.callbacks import Callback

if TYPE_CHECKING:
    from workers.training.loop import Trainer

CURVE_VERDICTS = ("not_learning", "slow", "overfitting")


def _needs_the_curve(finding: Finding) -> bool:
    """Whether a finding rests on where the loss curve stands (every run starts at its
    baseline): the curve verdicts, and vanishing called from the early phase of a run that
    has not left its baseline."""
    return finding.verdict in CURVE_VERDICTS or finding.evidence.get("phase") == "early"


class LiveDiagnosis(Callback):
    def __init__(self, judge: Callable[[int], Diagnosis], settings: DiagnosticsSpec,
                 set_tag: Callable[[str], None]):
        self.judge = judge  # (epochs the run will have) -> the diagnosis so far
        self.patience = settings.thresholds.live_patience
        self.min_fraction = settings.thresholds.live_min_fraction
        self.stop_on_problem = settings.on_problem == "stop"
        self.set_tag = set_tag
        self.verdict = "healthy"  # the called verdict
        self.detected_at_step: int | None = None
        self.seen: list[tuple[int, str]] = []  # (step, candidate verdict) per epoch
        self.payload: dict[str, Any] | None = None

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        diagnosis = self.judge(trainer.epochs)
        step = max(0, trainer.step - 1)
        done = (trainer.epoch + 1) / max(1, trainer.epochs)
        findings = [f for f in diagnosis.findings
                    if done >= self.min_fraction or not _needs_the_curve(f)]
        candidate = next((f.verdict for f in findings if f.verdict != "no_gradients"),
                         "healthy")
        self.seen.append((step, candidate))
        streak = self._streak(candidate)
        if candidate != self.verdict and len(streak) >= self.patience:
            self.verdict = candidate
            self.detected_at_step = streak[0] if candidate != "healthy" else None
            self.set_tag(candidate)
            if candidate != "healthy" and self.stop_on_problem:
                trainer.request_stop(f"diagnosis: {candidate}")
        payload = diagnosis.as_dict()
        payload.pop("evidence", None)  # the findings carry theirs; the rest stays in MLflow
        payload["findings"] = [f for f in payload["findings"] if f["verdict"] in
                               {x.verdict for x in findings}]
        payload.update(verdict=self.verdict, detected_at_step=self.detected_at_step,
                       candidate=candidate)
        self.payload = payload

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
