"""Vanishing through time: a recurrent net whose error does not reach back along the sequence
(the lecture's "issues with RNNs": in a vanilla cell dh[k+1]/dh[k] is diag(g') W, so the
gradient shrinks geometrically with the steps back). The layer check cannot see it: the
recurrent weights sit in one layer whose gradient sums every step's.

The measure is `RunRecord.through_time_ratio`, ||dJ/dh[1]|| / ||dJ/dh[T]|| on a few training
examples (the recorders take it with the activation sample). Vanishing through time matters
when the task needs the memory, which the run shows by falling short: it is called when the
ratio is below `vanishing_ratio` and the run ends below `slow_progress` of the way from its
baseline to perfect, or below `vanishing_ratio_early` when it ends near its baseline. A gated
cell (LSTM, GRU) is held to the square of those limits: its gates carry the error in jumps
that a few examples' ratio underrates (an LSTM learning the adding problem over 60 steps sits
near 1e-4 while it learns). A recurrent net that learns its task with a short memory is
healthy, whatever its ratio.
"""

from __future__ import annotations

from typing import Any

from services.contract.verdicts import Verdict
from workers.diagnostics.verdicts.record import Finding, RunRecord, num


def through_time_findings(record: RunRecord, evidence: dict[str, Any], *, near_baseline: bool
                          ) -> list[Finding]:
    ratio, t = record.through_time_ratio, record.thresholds
    if ratio is None or not record.uses_gradients:
        return []
    evidence["through_time_ratio"] = num(ratio)
    progress = record.progress
    short = progress is not None and progress.final < t.slow_progress
    if not short:
        return []
    limit = t.vanishing_ratio_early if near_baseline else t.vanishing_ratio
    spec = record.spec
    gated = spec is not None and getattr(spec.model, "cell", "vanilla") != "vanilla"
    if ratio >= (limit ** 2 if gated else limit):
        return []
    recurrent = [layer for layer in record.layers if layer.startswith("rnn.")]
    return [Finding(Verdict.VANISHING, {
        "through_time_ratio": num(ratio), "phase": "through_time",
        "progress": num(progress.final) if progress is not None else None},
        recurrent[:1] or list(record.layers[:1]))]
