"""The diagnosis engine, a pure function of plain data: `diagnose_record(RunRecord) ->
Diagnosis`. One module per family of checks (gradients, units, symmetry, loss curves, the
non-gradient kinds' own checks), the task's baseline, the progress against it, the norm
curves and their update/weight ratio, and the remedies (fixes as spec changes, one table for
every verdict). It imports no tracking, no plotting and no training code: the recorders that
feed it during training, the sinks that record what it says and the replay of a finished run
live beside it in `workers.diagnostics`."""

from workers.diagnostics.verdicts import fixes
from workers.diagnostics.verdicts.baseline import Baseline, measure_baseline
from workers.diagnostics.verdicts.engine import diagnose, diagnose_record
from workers.diagnostics.verdicts.norms import NormCurves
from workers.diagnostics.verdicts.record import (
    ORDER,
    VERDICTS,
    Diagnosis,
    Divergence,
    Finding,
    RunRecord,
)

__all__ = ["ORDER", "VERDICTS", "Baseline", "Diagnosis", "Divergence", "Finding", "NormCurves",
           "RunRecord", "diagnose", "diagnose_record", "fixes", "measure_baseline"]
