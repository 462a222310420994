"""The causes in the order a user must act on them, where the fixed `ORDER` (causes before
symptoms) would name the wrong one first.

A model that memorizes its training split (its train loss far below its val loss, the val
loss risen from its minimum) ends near its baseline on the val split, and its val loss goes
up: `not_learning` and `unstable` are the symptoms then, and no rate fixes them. Overfitting
goes ahead of both; they stay as secondary findings.
"""

from __future__ import annotations

from services.contract.verdicts import Verdict
from workers.diagnostics.verdicts.record import Finding

# The symptoms an overfit model shows that overfitting explains.
EXPLAINED_BY_OVERFITTING = (Verdict.NOT_LEARNING, Verdict.UNSTABLE)


def in_order_to_act(findings: list[Finding]) -> list[Finding]:
    """`findings` (in `ORDER`) with overfitting moved ahead of the symptoms it explains, when
    its evidence says the train loss ended far below the val loss."""
    overfit = next((f for f in findings if f.verdict == Verdict.OVERFITTING), None)
    if overfit is None or not overfit.evidence.get("train_far_below_val"):
        return findings
    first = next((i for i, f in enumerate(findings) if f.verdict in EXPLAINED_BY_OVERFITTING),
                 None)
    if first is None:
        return findings
    rest = [f for f in findings if f is not overfit]
    return [*rest[:first], overfit, *rest[first:]]
