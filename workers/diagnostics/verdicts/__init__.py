"""The diagnosis engine: one module per family of checks (gradients, units, symmetry, loss
curves, the non-gradient kinds' own checks), the task's baseline, the fixes as spec changes,
and `diagnose`, which combines them (see `engine`)."""

from workers.diagnostics.verdicts import fixes
from workers.diagnostics.verdicts.baseline import Baseline, measure_baseline
from workers.diagnostics.verdicts.engine import diagnose, diagnose_record
from workers.diagnostics.verdicts.record import (
    ORDER,
    VERDICTS,
    Diagnosis,
    Finding,
    RunRecord,
)

__all__ = ["ORDER", "VERDICTS", "Baseline", "Diagnosis", "Finding", "RunRecord", "diagnose",
           "diagnose_record", "fixes", "measure_baseline"]
