"""Where what a run's diagnostics say goes: `DiagnosisSink`, the small protocol the session,
the live diagnosis and the analyses write through (a tag, JSON and PNG artifacts, metrics, the
report), and `TrackerSink`, its MLflow implementation over the run's `RunTracker`.

Everything goes out on the metric sink's thread (`tracker.sink.call_soon`), in order: plots are
drawn there too (the data is on the host), so they overlap with the rest of the run's end, and
the report, queued last, sees every plot drawn before it.
"""

from __future__ import annotations

import io
import posixpath
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from matplotlib.figure import Figure

from services.contract import mlflow_names as names
from workers.diagnostics.report import REPORT_FILE, render_report
from workers.tracking.run_tracker import RunTracker


class DiagnosisSink(Protocol):
    """What records a run's diagnosis, plots and analyses."""

    def tag(self, verdict: str) -> None:
        """The run's verdict so far (`layerwise.diagnosis`)."""

    def log_json(self, payload: Any, artifact_file: str) -> None: ...

    def log_plot(self, build: Callable[[], Figure], name: str) -> None:
        """Draw `build()` and keep it as `plots/<name>.png`."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_report(self, spec_summary: Mapping[str, Any], metrics: Mapping[str, Any],
                   diagnosis: Mapping[str, Any] | None, *,
                   own_plots: Mapping[str, bytes] | None = None,
                   uses_gradients: bool = True,
                   pretraining: Sequence[Mapping[str, Any]] = ()) -> None:
        """`report.html`, with every plot logged before it and `own_plots`, the model's own
        (already logged: `workers.tracking.model_report`); `uses_gradients` as the model
        declares it (a kind without gradients is judged, and reported, by its own checks);
        `pretraining` the layer-wise pretraining's stages (`PretrainingStages.stages`)."""


class TrackerSink:
    """A `DiagnosisSink` onto the run's MLflow run, through its metric sink's thread."""

    def __init__(self, tracker: RunTracker):
        self.tracker = tracker
        self.plots: dict[str, bytes] = {}  # the PNGs drawn, for report.html

    def tag(self, verdict: str) -> None:
        self.tracker.sink.call_soon(
            lambda: self.tracker.set_tags({names.TAG_DIAGNOSIS: str(verdict)}))

    def log_json(self, payload: Any, artifact_file: str) -> None:
        self.tracker.sink.call_soon(lambda: self.tracker.log_json(payload, artifact_file))

    def log_plot(self, build: Callable[[], Figure], name: str) -> None:
        def draw() -> None:
            self.plots[name] = log_png(self.tracker, build(), f"plots/{name}.png")
        self.tracker.sink.call_soon(draw)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.tracker.sink.log(metrics, step=step)

    def log_report(self, spec_summary: Mapping[str, Any], metrics: Mapping[str, Any],
                   diagnosis: Mapping[str, Any] | None, *,
                   own_plots: Mapping[str, bytes] | None = None,
                   uses_gradients: bool = True,
                   pretraining: Sequence[Mapping[str, Any]] = ()) -> None:
        own = dict(own_plots or {})

        def render() -> None:  # on the sink's thread, after the plots queued before it
            # A kind without gradients shows its own checks first: they are its diagnosis.
            plots = {**own, **self.plots} if not uses_gradients else {**self.plots, **own}
            self.tracker.log_text(render_report(spec_summary, metrics, diagnosis, plots,
                                                uses_gradients=uses_gradients,
                                                pretraining=pretraining), REPORT_FILE)
        self.tracker.sink.call_soon(render)


def log_png(tracker: RunTracker, figure: Figure, artifact_file: str) -> bytes:
    """Log `figure` as the PNG `artifact_file` and return its bytes, drawn once for both the
    artifact and the report."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    png = buffer.getvalue()
    folder, name = posixpath.split(artifact_file)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, name).write_bytes(png)
        tracker.artifacts.log_artifact(str(Path(tmp, name)), folder or None)
    return png
