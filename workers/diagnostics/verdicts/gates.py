"""The two lines a run's headline result draws under the findings: how far it went from its
task's baseline toward a perfect score (`RunRecord.progress`: the share of that gap closed,
accuracy's when the run logs it, else the loss's) decides whether a finding may be the verdict.

good fit  a run that closed at least `GOOD_FIT` of the gap (and, a classifier, whose val loss
          beats its baseline's too) did what it was trained for: it is `healthy` unless a
          hard fault holds (`is_hard`): it diverged (a loss or a gradient not finite), its
          data is wrong whatever the run did (labels that are not what the task reads,
          values not finite, validation rows copied from the training rows), or
          it overfits clearly (the train split's progress ends more than `CLEAR_OVERFIT_GAP`
          of the gap above the validation split's, its error `ERROR_RATIO` times the train
          split's, in accuracy when the run logs it: a val loss that rises while the val
          accuracy holds is a model growing confident, not one that stopped generalizing), or
          its instability costs the result (the progress falls by more than `UNSTABLE_SWING`
          between two late epochs: a loss of 0.02 that doubles while the accuracy stays at
          99% is not that). Mechanism findings (saturated or dead units, a noisy
          loss, small first-layer gradients, small steps, unscaled inputs) then become notes:
          they are real, but no change they call for is needed;
poor fit  a run that ends below `POOR_FIT` of the gap and has no finding is not `healthy`:
          `not_learning`, unless it is still improving at a steady pace (the curves'
          `needs_more_epochs` estimate: more epochs, the note, not a problem).

Both lines were chosen on the tuning half of the outside fault benchmark
(benchmarks/faults/, `--half tuning`) and the pathology suite (examples/pathologies/): every
healthy run there ends above `POOR_FIT` or still improving, every fixed counterpart the
suite's checks misread (a saturated sigmoid net at 97% accuracy, a circle classifier at 99%
whose val loss of 0.02 wobbled) above `GOOD_FIT`, and every problem run the suite labels with
a mechanism below it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.contract.verdicts import Verdict
from workers.diagnostics.verdicts.record import Finding, RunRecord, num

GOOD_FIT = 0.85  # share of the gap from baseline to perfect: the run did what it is for
POOR_FIT = 0.5  # below this share (and not still improving), the run did not learn the task
# A clear overfit: the train split's progress this much above the validation split's, and
# the validation split's error (the gap to perfect it left) `ERROR_RATIO` times the train's.
CLEAR_OVERFIT_GAP = 0.03
ERROR_RATIO = 2.0
# Unstable at a good fit is a fault when it costs the result: the val progress falls by more
# than this share of the gap between two epochs from the run's middle on (the suite's unstable
# runs swing 0.1-0.18; a fixed circle classifier at 99% loses one or two of its val examples,
# 0.03).
UNSTABLE_SWING = 0.07
# Data faults that make a run's metrics wrong however good they look (data_faults.ALWAYS);
# a dominant class is a `suspect_labels` fault that a good accuracy progress already beats.
HARD_DATA_FAULTS = ("non_finite_data", "suspect_labels", "leaked_examples")
SOFT_DATA_KINDS = ("dominant_class",)


def good_fit(record: RunRecord) -> float | None:
    """The run's progress when it is a good fit (at least `GOOD_FIT`), else None. An accurate
    classifier whose val loss is no better than its baseline's is not one: its confidence is
    wrong (logits blown up by unscaled inputs score 96% at a loss of 24 against the prior's
    0.69), and what made it so stays the verdict."""
    progress, base = record.progress, record.baseline
    # A user's `chance_fraction` above the gate says what "learned" means for this run: a run
    # below it is not a good fit, whatever the gate's default share.
    if progress is None or progress.final < max(GOOD_FIT, record.thresholds.chance_fraction):
        return None
    loss = record.last(f"{progress.metric.split('/')[0]}/loss")
    if progress.metric.endswith("accuracy") and base is not None and base.loss \
            and loss is not None and not loss < base.loss:
        return None
    return progress.final


def is_hard(finding: Finding, record: RunRecord) -> bool:
    """Whether `finding` stays the verdict of a run with a good fit (module docstring)."""
    verdict, evidence = finding.verdict, finding.evidence
    if verdict == Verdict.DIVERGED:
        return True
    if verdict == Verdict.EXPLODING:
        return bool(evidence.get("grad_norm_nonfinite_steps"))
    if verdict == Verdict.BAD_DATA:
        return evidence.get("fault") in HARD_DATA_FAULTS \
            and evidence.get("kind") not in SOFT_DATA_KINDS
    if verdict == Verdict.OVERFITTING:
        return clear_overfit(record, evidence)
    if verdict == Verdict.UNSTABLE:
        swing = late_swing(record)
        evidence["late_progress_swing"] = num(swing)
        return swing is not None and swing > UNSTABLE_SWING
    return False


def clear_overfit(record: RunRecord, evidence: dict[str, Any]) -> bool:
    """The train split ends more than `CLEAR_OVERFIT_GAP` of the gap ahead of the validation
    split, with a validation error `ERROR_RATIO` times the train error (in accuracy when the
    run logs it, else in loss)."""
    gaps = split_progress(record)
    if gaps is None:
        return False
    train, val = gaps
    evidence["train_progress"], evidence["val_progress"] = num(train), num(val)
    return train - val > CLEAR_OVERFIT_GAP and 1.0 - val > ERROR_RATIO * (1.0 - train)


def late_swing(record: RunRecord) -> float | None:
    """The largest fall of the run's progress between two epochs from its middle epoch on (at
    least the last three): the early epochs' swings are the start of a run that settled."""
    progress = record.progress
    n = len(progress.by_epoch) if progress is not None else 0
    if progress is None or n < 3:
        return None
    tail = progress.by_epoch[min(n // 2, n - 3):]
    return max(0.0, float(np.max(-np.diff(tail))))


def split_progress(record: RunRecord) -> tuple[float, float] | None:
    """(train, validation) progress at the run's end: in accuracy when both splits log it,
    else in loss (None without a baseline or either split)."""
    base = record.baseline
    if base is None:
        return None
    train_acc, val_acc = record.last("train/accuracy"), record.last("val/accuracy")
    if base.accuracy is not None and base.accuracy < 1.0 and train_acc is not None \
            and val_acc is not None:
        return ((train_acc - base.accuracy) / (1.0 - base.accuracy),
                (val_acc - base.accuracy) / (1.0 - base.accuracy))
    train_loss, val_loss = record.last("train/loss"), record.last("val/loss")
    if base.loss and base.loss > 0 and train_loss is not None and val_loss is not None:
        return 1.0 - train_loss / base.loss, 1.0 - val_loss / base.loss
    return None


def gate_good_fit(findings: list[Finding], record: RunRecord) -> list[Finding]:
    """`findings` of a run with a good fit: the hard ones, each other finding a note."""
    share = good_fit(record)
    if share is None:
        return findings
    kept = []
    for finding in findings:
        if finding.verdict == Verdict.NO_GRADIENTS or is_hard(finding, record):
            kept.append(finding)
        else:
            record.notes.append(
                f"{finding.verdict.value} seen ({_facts(finding)}), but the run closed "
                f"{share:.0%} of the gap from its baseline to a perfect score "
                f"({record.progress.metric if record.progress else 'its metric'}): healthy, "
                "nothing to change for it")
    return kept


def poor_fit(record: RunRecord, evidence: dict[str, Any]) -> Finding | None:
    """A `not_learning` finding for a run that ends below `POOR_FIT` and is not still
    improving, else None."""
    progress = record.progress
    measured = evidence.get("progress") or {}
    if progress is None or progress.final >= POOR_FIT or measured.get("on_its_way"):
        return None
    return Finding(Verdict.NOT_LEARNING, {
        "metric": progress.metric, "progress": num(progress.final),
        "value": num(record.last(progress.metric)), "poor_fit": POOR_FIT})


def _facts(finding: Finding) -> str:
    """A finding's numbers, in a few words, for its note."""
    shown = [f"{key} {value:.3g}" for key, value in finding.evidence.items()
             if isinstance(value, float)][:2]
    kind = finding.evidence.get("fault")
    return ", ".join([*([str(kind)] if kind else []), *shown]) or "its check"
