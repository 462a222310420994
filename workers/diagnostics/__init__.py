"""Why a network learns or not: per-layer norm histories, sampled activation statistics, the
diagnosis (after training and live), and the plots of a run (see `session.Diagnostics`)."""

from workers.diagnostics.session import Diagnostics
from workers.diagnostics.verdicts import VERDICTS, Diagnosis, diagnose

__all__ = ["VERDICTS", "Diagnosis", "Diagnostics", "diagnose"]
