"""The `bad_data` verdict: what the training split's statistics (`DataStats`, measured by
workers/data/statistics.py) show, as findings whose evidence names the fault and its numbers.

The faults (docs/diagnostics.md): `unscaled_inputs`, `unscaled_targets` (both at once:
`unscaled_inputs_and_targets`, one finding and one setting, `data.standardize: both`: a
repair that rescales only the inputs leaves a loss that the targets' scale dominates),
`suspect_labels`, `non_finite_data`, `constant_features`, `leaked_examples`. Each finding's
`evidence["fault"]` names it; the fix is `data.standardize` (remedies.py) or, when only the
file can change, a sentence in `evidence["fix_in_file"]`.

Where a finding goes depends on whether the run has a problem of its own:
- the data alone is wrong (`ALWAYS`: values not finite, labels that are not what the task
  reads): a finding ahead of every other, whatever the run did;
- the scale (`WHEN_POOR`): a net can train on unscaled data (Adam often does), so the scale is
  named as the cause, ahead of the mechanism it produced (exploding, saturated, a loss stuck
  at the mean predictor's), only when the run has a problem; otherwise a note;
- the rest (`CONTEXT`: examples shared between splits, a dominant class, most features
  constant) is not what made a run fail: after the run's own findings. Shared examples make the
  validation metrics meaningless even in a run that looks healthy, so they are always a
  finding; constant features and a dominant class are one only next to a problem.
At submission (no run yet) every fault the data shows is a finding (`data_findings`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.contract.verdicts import Verdict
from workers.diagnostics.verdicts import remedies
from workers.diagnostics.verdicts.record import Diagnosis, Finding, RunRecord, num

if TYPE_CHECKING:
    from services.contract.spec import ExperimentSpec
    from workers.data.statistics import DataStats

UNIT_SCALE = 10.0  # a feature's std or |mean| beyond this is far from the unit scale
SCALE_SPREAD = 1000.0  # non-constant features whose stds differ this many times
TARGET_SCALE = 10.0  # a regression target's std or |mean| beyond this (or std below 1/this)
FEW_TARGET_VALUES = 20  # a float regression target with at most this many distinct values...
FEW_VALUES_MIN_ROWS = 100  # ...over at least this many sampled rows looks like labels
DOMINANT_CLASS = 0.9  # one class holding this share of the labels
EMPTY_CLASSES = 0.5  # labels 0..K-1 of which this share never occurs: ids out of range
LEAK_MARGIN = 0.05  # held-out rows equal to training rows beyond the data's own repeats
# Constant features are a fault when they are most of the input (a file whose columns are
# shifted, a sensor that never read); a few are normal (an image's empty border pixels).
CONSTANT_SHARE = 0.5

ALWAYS = ("non_finite_data", "suspect_labels", "leaked_examples")
WHEN_POOR = ("unscaled_inputs", "unscaled_targets", "unscaled_inputs_and_targets")
CONTEXT = ("leaked_examples", "constant_features", "dominant_class")


def data_findings(stats: DataStats) -> list[Finding]:
    """Every fault the statistics show, most basic first (fixes not attached yet)."""
    found = [*_non_finite(stats), *_suspect_labels(stats), *_unscaled(stats),
             *_leaked(stats), *_constant(stats), *_dominant(stats)]
    return found


def _unscaled(stats: DataStats) -> list[Finding]:
    """The scale faults: one finding when both the inputs and the targets are off the unit
    scale (one cause, one setting: `data.standardize: both`), whose evidence holds both
    parts' numbers; `evidence["parts"]` names what to standardize."""
    inputs, targets = _unscaled_inputs(stats), _unscaled_targets(stats)
    if not (inputs and targets):
        return [*inputs, *targets]
    evidence = {**inputs[0].evidence, **targets[0].evidence,
                "fault": "unscaled_inputs_and_targets", "parts": ["inputs", "targets"]}
    return [Finding(Verdict.BAD_DATA, evidence)]


def place(stats: DataStats, run_findings: list[Finding], notes: list[str]) -> list[Finding]:
    """The run's findings with the data's put where they belong (module docstring); the data
    faults left out are noted."""
    problem = any(f.verdict != Verdict.NO_GRADIENTS for f in run_findings)
    lead, context = [], []
    for finding in data_findings(stats):
        fault = finding.evidence["fault"]
        kind = finding.evidence.get("kind", fault)
        if fault in ALWAYS and kind not in CONTEXT:
            lead.append(finding)
        elif fault in WHEN_POOR and problem:
            lead.append(finding)
        elif kind == "leaked_examples" or (kind in CONTEXT and problem):
            context.append(finding)
        else:
            notes.append(f"the data shows {kind}, but the run trained despite it: "
                         f"{finding.evidence.get('fix_in_file') or _standardize_hint(fault)}")
    return [*lead, *run_findings, *context]


def _finding(fault: str, evidence: dict[str, Any], fix_in_file: str | None = None) -> Finding:
    facts = {"fault": fault, **evidence}
    if fix_in_file:
        facts["fix_in_file"] = fix_in_file
    return Finding(Verdict.BAD_DATA, facts)


def _standardize_hint(fault: str) -> str:
    part = {"unscaled_inputs": "inputs", "unscaled_targets": "targets"}.get(fault, "both")
    return f"data.standardize: {part} would put it at unit scale"


def _non_finite(stats: DataStats) -> list[Finding]:
    if not stats.non_finite:
        return []
    where = " and ".join(stats.non_finite)
    return [_finding("non_finite_data", {"non_finite_values": dict(stats.non_finite),
                                         "rows_sampled": stats.rows},
                     f"the training {where} hold NaN or inf values; drop or fill those rows "
                     "(e.g. numpy.nan_to_num) and save the file again")]


def _suspect_labels(stats: DataStats) -> list[Finding]:
    found = []
    distinct = stats.target_distinct
    if _few_values(stats) and distinct is not None:
        found.append(_finding("suspect_labels", {
            "kind": "few_target_values", "distinct_target_values": distinct,
            "target_values": stats.target_values, "rows_sampled": stats.rows},
            f"the regression targets take only {distinct} distinct values "
            f"({', '.join(f'{v:g}' for v in stats.target_values[:5])}, ...): class labels "
            "stored as floats (e.g. divided by 255)? Store them as integer class ids "
            "(e.g. numpy.rint(y * 255).astype(int)) and set task: classification"))
    if (stats.task == "classification" and stats.classes and stats.classes_seen is not None
            and stats.classes > 2
            and (stats.classes - stats.classes_seen) / stats.classes >= EMPTY_CLASSES):
        found.append(_finding("suspect_labels", {
            "kind": "labels_out_of_range", "classes": stats.classes,
            "classes_seen": stats.classes_seen},
            f"the labels make {stats.classes} classes (0..{stats.classes - 1}) but only "
            f"{stats.classes_seen} occur: relabel them 0..K-1 (e.g. numpy.unique(y, "
            "return_inverse=True)[1]) and save the file again"))
    return found


def _few_values(stats: DataStats) -> bool:
    distinct = stats.target_distinct
    return (stats.task == "regression" and distinct is not None
            and distinct <= FEW_TARGET_VALUES and stats.rows >= FEW_VALUES_MIN_ROWS)


def _dominant(stats: DataStats) -> list[Finding]:
    share = stats.largest_class_share
    if share is None or share < DOMINANT_CLASS:
        return []
    return [_finding("suspect_labels", {"kind": "dominant_class", "largest_class_share":
                                        num(share), "classes": stats.classes},
                     f"one class holds {share:.0%} of the training labels: predicting it alone "
                     "scores that well; balance the classes in the file (resample or drop rows "
                     "of the commonest class)")]


def _unscaled_inputs(stats: DataStats) -> list[Finding]:
    if stats.symbol_inputs or stats.feature_std_max is None:
        return []
    largest = max(stats.feature_std_max, stats.feature_abs_mean_max or 0.0)
    spread = stats.feature_std_max / stats.feature_std_min if stats.feature_std_min else 1.0
    if largest <= UNIT_SCALE and not (spread >= SCALE_SPREAD and stats.feature_std_max > 1.0):
        return []
    return [_finding("unscaled_inputs", {
        "parts": ["inputs"], "feature_std_max": num(stats.feature_std_max),
        "feature_std_min": num(stats.feature_std_min),
        "feature_abs_mean_max": num(stats.feature_abs_mean_max),
        "feature_scale_spread": num(spread), "unit_scale": UNIT_SCALE})]


def _unscaled_targets(stats: DataStats) -> list[Finding]:
    if stats.task != "regression" or stats.target_std is None or stats.target_mean is None:
        return []
    if _few_values(stats):  # labels stored as floats: the file, not their scale, is wrong
        return []
    std, mean = stats.target_std, stats.target_mean
    if std <= TARGET_SCALE and abs(mean) <= TARGET_SCALE and (std == 0 or std >= 1 / TARGET_SCALE):
        return []
    return [_finding("unscaled_targets", {"parts": ["targets"], "target_mean": num(mean),
                                          "target_std": num(std), "unit_scale": TARGET_SCALE})]


def _leaked(stats: DataStats) -> list[Finding]:
    limit = 2 * stats.train_duplicate_share + LEAK_MARGIN
    leaked = {name: num(share) for name, share in stats.shared_with_train.items()
              if share > limit}
    if not leaked:
        return []
    return [_finding("leaked_examples", {
        "shared_with_train": leaked, "train_duplicate_share": num(stats.train_duplicate_share)},
        f"{', '.join(f'{share:.0%} of the {name} rows' for name, share in leaked.items())} "
        "also appear in the training rows, so the held-out metrics measure memory: remove "
        "them from x/y (or from x_val/x_test) and save the file again")]


def _constant(stats: DataStats) -> list[Finding]:
    if (stats.symbol_inputs or not stats.features  # padding positions of token ids: by design
            or stats.constant_features / stats.features < CONSTANT_SHARE):
        return []
    return [_finding("constant_features", {"constant_features": stats.constant_features,
                                           "features": stats.features},
                     f"{stats.constant_features} of {stats.features} input features never "
                     "change over the training rows and carry nothing; drop those columns")]


def submission_diagnosis(stats: DataStats, spec: ExperimentSpec) -> Diagnosis | None:
    """What the dry run records at submission when the data alone shows faults: every one of
    them as a `bad_data` finding with its fix; None for data without faults. The worker's
    diagnosis replaces it when the run ends."""
    findings = data_findings(stats)
    if not findings:
        return None
    record = RunRecord([], spec.diagnostics.thresholds, spec=spec, data=stats)
    remedies.attach(findings, record)
    return Diagnosis(verdict=Verdict.BAD_DATA, findings=findings, baseline=None,
                     detected_at_step=None,
                     notes=["found at submission, from the training split alone; the run's "
                            "own diagnosis replaces this when it ends"],
                     thresholds=record.thresholds.model_dump(), layers=[],
                     evidence={"data": stats.as_dict()})
