"""One run's diagnostics, put together: the recorders spliced into the training's callbacks
(`recorders`), the engine judging what they kept (`verdicts`), the sink that tags, logs and
draws what it says (`sink`, `run_plots`), and the analyses the spec asks for.

During training: the live diagnosis at epoch ends, each time on a fresh activation sample
(`live.LiveDiagnosis`: the job's progress, the tag; `live=False` leaves it out, as
`RunOptions.live_diagnosis` does); with `diagnostics.plots`, the gradient-norm heatmap and the
update-norm picture redrawn now and then as MLflow images (`live_plots`). After training: the
diagnosis (tag `layerwise.diagnosis`, `diagnosis.json`, the job record), the plots, the
analyses, what the model itself shows (`LayerwiseModel.after_training`: a Hopfield net's
recall, energy and capacity) and `report.html`, with every one of those plots. A run the loop
stopped because its loss was not finite is diagnosed `diverged` from that step, its fix from
the same remedies table as every verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from models.base import DataShape, LayerwiseModel
from services.contract.spec import ExperimentSpec
from services.contract.verdicts import Verdict
from workers.diagnostics.analysis import run_analyses
from workers.diagnostics.live import live_agrees
from workers.diagnostics.live_plots import LivePlots
from workers.diagnostics.pretraining_stages import PretrainingStages
from workers.diagnostics.recorders import RunRecorders
from workers.diagnostics.run_plots import plot_pretraining, plot_training
from workers.diagnostics.sink import TrackerSink
from workers.diagnostics.verdicts import (
    Diagnosis,
    Divergence,
    Finding,
    diagnose_record,
)
from workers.tracking.model_report import log_model_report
from workers.tracking.run_tracker import RunTracker
from workers.training.callback_base import Callback


class Diagnostics:
    def __init__(self, spec: ExperimentSpec, model: LayerwiseModel, tracker: RunTracker,
                 shape: DataShape, *, live: bool = True):
        self.spec, self.model, self.shape = spec, model, shape
        self.sink = TrackerSink(tracker)
        self.recorders = RunRecorders(spec, model, tracker.sink, live=live)
        # what the layer-wise pretraining's stages measured, when the run kept it (workers.run)
        self.pretraining: PretrainingStages | None = None
        # the norm pictures redrawn while it trains (MLflow images), with diagnostics.plots
        self.live_plots: LivePlots | None = None

    # -- during training -------------------------------------------------------------------
    def attach(self, callbacks: list[Callback], train_x: torch.Tensor,
               train_y: torch.Tensor | None = None, objective: Any = None) -> list[Callback]:
        """`callbacks` with the run's recorders and live diagnosis (`RunRecorders.splice`),
        and with `diagnostics.plots` the norm pictures redrawn as it trains (`live_plots`)."""
        spliced = self.recorders.splice(
            callbacks, train_x, train_y, objective,
            judge=lambda epochs: diagnose_record(self.recorders.record(total_epochs=epochs)),
            tag=self.sink.tag)
        if self.spec.diagnostics.plots and self.recorders.history is not None:
            self.live_plots = LivePlots(self.recorders.history, self.recorders.layers,
                                        self.sink.tracker,
                                        uses_gradients=self.model.uses_gradients)
            spliced.append(self.live_plots)  # after the norm logger's epoch-end flush
        return spliced

    def reporting(self, report: Callable[[dict[str, Any]], None]
                  ) -> Callable[[dict[str, Any]], None]:
        """`report` with the live diagnosis added to each progress update."""
        def decorated(update: dict[str, Any]) -> None:
            live = self.recorders.live
            report(live.decorate(update) if live else update)
        return decorated

    # -- after training ----------------------------------------------------------------------
    def after_training(self, splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
                       objective: Any, final: dict[str, Any], *, step: int,
                       device: torch.device) -> dict[str, Any]:
        """Verdict, plots, analyses, the model's own report and report.html. Returns what goes
        into the job's result: the analysis metrics and, when anything was measured,
        "diagnosis"."""
        diagnosis = self.diagnose(final)
        if diagnosis is not None:
            self._record(diagnosis)
        stages = self.pretraining.stages() if self.pretraining is not None else []
        if self.spec.diagnostics.plots:
            plot_training(self.recorders, self.sink)
            if self.live_plots is not None:  # the last step's images: the plots just drawn
                self.live_plots.log_final(self.sink.plots, step)
            if self.pretraining is not None and stages:
                plot_pretraining(self.pretraining.curves(), self.sink)
        metrics = run_analyses(self.spec, self.model, objective, splits, self.shape, final,
                               self.sink, device=device, plots_on=self.spec.diagnostics.plots)
        if metrics:
            self.sink.log_metrics(metrics, step=step)
        # After the analyses, as before: an RBM's Gibbs samples draw from torch's generator.
        own_plots = log_model_report(self.sink.tracker, self.model.after_training(splits))
        verdict = diagnosis.as_dict() if diagnosis else None
        self.sink.log_report(self.spec.model_dump(mode="json"), {**final, **metrics}, verdict,
                             own_plots=own_plots, uses_gradients=self.model.uses_gradients,
                             pretraining=stages)
        return {**metrics, **({"diagnosis": verdict} if verdict else {})}

    def diagnose(self, final: dict[str, Any] | None = None) -> Diagnosis | None:
        """The diagnosis after training, from the loop's `final` metrics too; None when the run
        measured nothing to judge by. `detected_at_step` comes from the live diagnosis."""
        if not self.recorders.measuring:
            return None
        diagnosis = diagnose_record(self.recorders.record(final=final or {}))
        if self.recorders.live is not None:
            diagnosis.detected_at_step = self.recorders.live.detected_at(diagnosis.verdict)
            live_agrees(diagnosis, self.recorders.live.calls)
        return diagnosis

    def diverged(self, message: str, step: int,
                 report: Callable[[dict[str, Any]], None] | None = None, *,
                 non_finite_data: dict[str, Any] | None = None) -> dict[str, Any]:
        """The loop raised `Diverged` at `step` (the first step whose loss was not finite):
        record that diagnosis, detected at that step, before the run fails, hand `report` the
        last epoch's progress with it (the live diagnosis's), and return it for the job's
        record. Judged whatever was measured, nothing included (a loss not finite at the very
        first step, or the norms off): the divergence is the loop's own finding.
        `non_finite_data` (the loop's: NaN/inf in the training split) makes the data the
        cause: no rate would help, so the finding says what to change in the file instead."""
        recorders = self.recorders
        diagnosis = diagnose_record(recorders.record(), diverged=Divergence(
            message, step, recorders.steps_per_epoch, non_finite_data=non_finite_data))
        if non_finite_data:
            blame_the_data(diagnosis, non_finite_data, self.spec)
        self._record(diagnosis)
        live = recorders.live
        if live is not None:
            live.diverged(diagnosis, step)
            if report is not None and live.last_epoch_end is not None:
                epoch, at = live.last_epoch_end  # progress as of the last epoch's end
                report({"progress": {
                    "epoch": epoch, "epochs": self.spec.training.epochs, "step": at,
                    "metrics": recorders.epochs.metrics[-1] if recorders.epochs.metrics
                    else {}}})
        return diagnosis.as_dict()

    def _record(self, diagnosis: Diagnosis) -> None:
        self.sink.tag(diagnosis.verdict)
        self.sink.log_json(diagnosis.as_dict(), "diagnosis.json")


def blame_the_data(diagnosis: Diagnosis, where: dict[str, Any], spec: ExperimentSpec) -> None:
    """A run that diverged because its training split holds NaN/inf (the loop found it):
    the primary finding is `bad_data` with the fault `non_finite_data` and what to change in
    the file (`fix_in_file`, as `verdicts.data_faults` words it), unless the data's statistics
    already gave that finding; the `diverged` finding keeps its evidence but suggests no rate
    (a lower rate does not make a NaN finite: its repair would only fail again)."""
    source = spec.data.path if spec.data.source == "file" else f"dataset {spec.data.name!r}"
    field = "inputs (x)" if where.get("field") == "x" else "targets (y)"
    change = (f"the {field} of {source} hold NaN or infinite values (row {where.get('row')} "
              "of the training split is the first): drop or fill those rows (e.g. "
              "numpy.nan_to_num) and save the file again")
    for finding in diagnosis.findings:
        if finding.verdict == Verdict.DIVERGED:
            finding.fix, finding.alternatives = {}, []
    if not any(f.verdict == Verdict.BAD_DATA and f.evidence.get("fault") == "non_finite_data"
               for f in diagnosis.findings):
        diagnosis.findings.insert(0, Finding(Verdict.BAD_DATA, {
            "fault": "non_finite_data", "field": where.get("field"),
            "first_row": where.get("row"), "fix_in_file": change}))
    diagnosis.verdict = Verdict.BAD_DATA
