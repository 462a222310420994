"""The gradient-norm heatmap and the update-norm picture while the run trains: redrawn from the
norm history at an epoch end every `REDRAW_EVERY_S` seconds or so (less often when drawing is
slow, and as a long run goes on: `LivePlots`), and logged as MLflow step-indexed images
(`Across layers/grad_norm_heatmap`, `Across layers/update_norms`, at the step they were drawn
at), so the MLflow UI shows the gradient story before the run ends. MLflow's chart pages group
charts into sections by the key's part before its last `/` and sort the sections by name:
`Across layers` comes before every metric's section (`activation`, `grad_norm`, ...), so these
pictures are the first thing a run's charts show.

The training thread only takes the history's joined, read-only arrays (no copy) and queues
the drawing on the metric sink's thread (`MetricSink.call_soon`); while one drawing is still
queued no other is, so a slow store or a busy machine costs fewer redraws, never a backlog.
After training the plots drawn for `plots/` are logged once more as the last step's images
(no second drawing). Step 0 holds a copy of the latest drawing (`LivePlots._log` says why).
"""

from __future__ import annotations

import io
import logging
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import PIL.Image
from matplotlib.figure import Figure
from mlflow.tracking.multimedia import compress_image_size
from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_IMAGES

from workers.diagnostics import training_plots as plots
from workers.diagnostics.history import NormHistory
from workers.diagnostics.verdicts.norms import NormCurves, layer_update_ratios
from workers.tracking.run_tracker import RunTracker
from workers.training.callback_base import Callback, TrainerView

REDRAW_EVERY_S = 10.0
# Drawing both pictures takes about 0.2 s of a CPU (matplotlib holds the interpreter lock for
# much of it, so the training thread waits): at most this share of the run's time goes to it.
MAX_SHARE = 0.02
# A long run is redrawn less often as it goes (at most every this share of its time so far):
# a few dozen drawings an hour, not hundreds, each kept as an image of its step.
SPACING_SHARE = 0.1
LIVE_PLOTS = ("grad_norm_heatmap", "update_norms")  # as the plots/ files are named
IMAGE_SECTION = "Across layers"  # the images' keys: f"{IMAGE_SECTION}/{name}"
IMAGES_FOLDER = "images"  # where MLflow keeps a run's step-indexed images
log = logging.getLogger(__name__)


def norm_pictures(curves: NormCurves, layers: list[str], *, uses_gradients: bool
                  ) -> dict[str, Callable[[], Figure]]:
    """What to draw from the norms so far: {picture name: a function that draws it}."""
    builders: dict[str, Callable[[], Figure]] = {}
    grads = curves.series("grad_norm", layers)
    updates = curves.series("update_norm", layers)
    if grads is not None and uses_gradients:
        builders["grad_norm_heatmap"] = lambda: plots.grad_norm_heatmap(curves.steps, layers,
                                                                        grads)
    if updates is not None:
        ratios = layer_update_ratios(curves, layers)
        builders["update_norms"] = lambda: plots.update_norms(curves.steps, layers, updates,
                                                              ratios)
    return builders


class LivePlots(Callback):
    """Queues a redraw of the norm pictures at an epoch end, `every_s` seconds (by default
    REDRAW_EVERY_S) after the training began or the last drawing, or 1 / MAX_SHARE times as
    long as the last drawing took, or SPACING_SHARE of the time since the training began,
    whichever is longest. A run shorter than `every_s` (a short sweep trial) draws nothing
    while it trains: its final plots are its images."""

    def __init__(self, history: NormHistory, layers: list[str], tracker: RunTracker, *,
                 uses_gradients: bool = True, every_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.history, self.layers, self.tracker = history, layers, tracker
        self.uses_gradients, self.clock = uses_gradients, clock
        self.every_s = REDRAW_EVERY_S if every_s is None else every_s
        self._first_at = self._last_at = clock()  # made just before the training starts
        self._gap_s = self.every_s  # grows when a drawing takes more than MAX_SHARE of it
        self._queued = False  # a drawing waits on the sink's thread
        self.drawn_steps: list[int] = []  # the steps drawn at, on the sink's thread
        self._started_ms = int(time.time() * 1000)  # the timestamp of the step-0 copies
        self._tagged = False
        self.spent_s = 0.0  # the sink thread's time drawing and logging, in all

    def on_epoch_end(self, trainer: TrainerView, metrics: dict[str, float]) -> None:
        now = self.clock()
        gap = max(self._gap_s, SPACING_SHARE * (now - self._first_at))
        if self._queued or now - self._last_at < gap:
            return
        curves = self.history.curves()
        if not len(curves.steps):
            return
        self._last_at, self._queued = now, True
        self.tracker.sink.call_soon(lambda: self._draw(curves, int(curves.steps[-1])))

    def _draw(self, curves: NormCurves, step: int) -> None:
        started = time.perf_counter()
        try:
            for name, build in norm_pictures(curves, self.layers,
                                             uses_gradients=self.uses_gradients).items():
                self._log(plots.png_bytes(build()), name, step)
            self.drawn_steps.append(step)
        except Exception:  # a picture missed is no reason to stop the run's logging
            log.warning("the norm pictures at step %d were not logged", step, exc_info=True)
        finally:
            took = time.perf_counter() - started
            self.spent_s += took
            self._gap_s = max(self.every_s, took / MAX_SHARE)
            self._queued = False

    def log_final(self, drawn: Mapping[str, bytes], step: int) -> None:
        """After training: the pictures drawn for `plots/` (`drawn`, name -> PNG, read when
        this runs on the sink's thread) as the images of the last `step`, unless the last
        redraw was of that step already."""
        def log_drawn() -> None:
            if self.drawn_steps and self.drawn_steps[-1] >= step:
                return
            try:
                for name in LIVE_PLOTS:
                    if name in drawn:
                        self._log(drawn[name], name, step)
                self.drawn_steps.append(step)
            except Exception:  # the plots/ files hold them: the run goes on
                log.warning("the final norm pictures were not logged as images",
                            exc_info=True)
        self.tracker.sink.call_soon(log_drawn)

    def _log(self, png: bytes, name: str, step: int) -> None:
        """`png` as MLflow's step-indexed image `name` at `step`, and as the one at step 0,
        overwritten each time: MLflow's image cards open at step 0 and show only an image
        logged at exactly the step chosen, so step 0 holds the latest drawing."""
        with PIL.Image.open(io.BytesIO(png)) as opened:
            image = opened.convert("RGB")
        stem = f"{IMAGE_SECTION}/{name}".replace("/", "~")  # MLflow's file naming of a key
        now = int(time.time() * 1000)
        with tempfile.TemporaryDirectory() as tmp:
            compressed = compress_image_size(image)  # MLflow's thumbnail, as log_image makes
            for file_stem in (f"{stem}+step+{step}+timestamp+{now}+{uuid.uuid4()}",
                              f"{stem}+step+0+timestamp+{self._started_ms}+latest"):
                image.save(Path(tmp, f"{file_stem}.png"))
                compressed.save(Path(tmp, f"{file_stem}+compressed.webp"))
            self.tracker.artifacts.log_artifacts(tmp, IMAGES_FOLDER)
        if not self._tagged:  # what MLflow's UI looks for before it lists a run's images
            self.tracker.set_tags({MLFLOW_LOGGED_IMAGES: "true"})
            self._tagged = True
