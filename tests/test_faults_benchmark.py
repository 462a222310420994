"""The outside fault benchmark's cases (benchmarks/faults/) are well-formed: every buggy and
fixed spec validates against the spec schema, each case cites a source and labels the mapping
table knows, the split is the hash rule, the data files exist and are what the generator
writes; and the bench's scoring follows issue 29's definitions. No training here: the row
itself (bench/faults.py) runs through the service."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import pytest

from bench import faults_data
from bench import faults_score as score
from bench.faults_cases import (
    DATA,
    ROOT,
    buggy_spec,
    data_files,
    fixed_spec,
    half,
    load_cases,
    load_labels,
    select,
)
from services.contract.spec import ExperimentSpec
from services.contract.verdicts import Verdict

CASES = load_cases()
TABLE = load_labels()


def test_there_are_at_least_sixty_cases_with_distinct_ids():
    ids = [case["id"] for case in CASES]
    assert len(ids) >= 60
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case["id"])
def test_each_case_is_a_cited_labelled_buggy_fixed_pair(case: dict[str, Any]):
    assert case["source"]["repo"].count("/") == 1 and case["source"]["path"]
    assert case["labels"] and all(label in TABLE for label in case["labels"]), case["labels"]
    assert case["fix"], "the published fix, as spec changes"
    assert case["translation"]
    buggy, fixed = buggy_spec(case), fixed_spec(case)
    assert buggy != fixed
    for spec in (buggy, fixed):
        ExperimentSpec.model_validate(spec)
        for path in data_files(spec):
            assert (DATA / path).is_file(), path


def test_expected_causes_are_verdicts_or_the_epochs_note():
    names = {v.value for v in Verdict} | {"needs_more_epochs"}
    assert {case["expected_cause"] for case in CASES} <= names


def test_the_mapping_table_names_only_verdicts():
    names = {v.value for v in Verdict} | {"needs_more_epochs"}
    for label, entry in TABLE.items():
        assert set(entry["verdicts"]) <= names, label


def test_the_split_is_the_hash_rule_and_both_halves_are_used():
    for case in CASES:
        first = hashlib.sha256(case["id"].encode()).digest()[0]
        assert half(case["id"]) == ("tuning" if first % 2 == 0 else "held-out")
    halves = {half(case["id"]) for case in CASES}
    assert halves == {"tuning", "held-out"}
    tuning = select(CASES, "tuning")
    assert tuning and all(half(c["id"]) == "tuning" for c in tuning)
    assert [c["id"] for c in select(CASES, ids=["deepfd-48934338"])] == ["deepfd-48934338"]
    assert len(select(CASES, "both", limit=3)) == 3


def test_the_unexpressible_list_says_why_for_each():
    import yaml

    for entry in yaml.safe_load((ROOT / "unexpressible.yaml").read_text()):
        assert entry["source"] and entry["why"]


def test_the_data_files_are_what_the_generator_writes():
    """Deterministic: regenerating gives the same arrays as the shipped files."""
    for name in ("quadratic", "digits-labels-div255", "adult"):
        for variant, arrays in faults_data.GENERATORS[name]().items():
            path = DATA / (f"{name}-{variant}.npz" if variant else f"{name}.npz")
            shipped = np.load(io.BytesIO(path.read_bytes()))
            for key, value in arrays.items():
                np.testing.assert_array_equal(shipped[key], value)


# -- scoring ------------------------------------------------------------------------------

def _record(verdict: str | None, *, status: str = "succeeded", accuracy: float | None = None,
            loss: float | None = None, baseline: dict[str, Any] | None = None,
            first: str | None = None, more: int | None = None) -> dict[str, Any]:
    result = {k: v for k, v in (("val/accuracy", accuracy), ("val/loss", loss)) if v is not None}
    findings = [{"verdict": first}] if first else []
    return {"status": status, "result": result,
            "diagnosis": {"verdict": verdict, "findings": findings, "baseline": baseline,
                          "needs_more_epochs": more}}


PRIOR = {"kind": "class_prior", "accuracy": 0.1, "loss": 2.3}


def test_help_means_leaving_the_problem():
    assert score.helped(_record("healthy", accuracy=0.2))
    # a ten-class run at chance that gained a little is still at chance
    assert not score.helped(_record("not_learning", accuracy=0.12, baseline=PRIOR))
    assert score.helped(_record("slow", accuracy=0.6, baseline=PRIOR))  # (0.6-0.1)/0.9 > 0.5
    assert not score.helped(_record("unstable", loss=1.5, baseline=PRIOR))  # 35% of the gap
    assert score.helped(_record("unstable", loss=1.0, baseline=PRIOR))
    assert not score.helped(_record(None, status="failed"))


def test_detection_cause_and_false_alarm():
    lr = ["learning rate"]
    diverged = {"record": _record("diverged", status="failed")}
    assert score.is_detected(diverged, lr) and score.is_right_cause(diverged, lr, TABLE)
    data = {"record": _record("bad_data", first="bad_data")}
    assert score.is_detected(data, lr) and not score.is_right_cause(data, lr, TABLE)
    assert score.is_right_cause(data, ["preprocessing"], TABLE)
    # the first finding counts too
    assert score.is_right_cause({"record": _record("unstable", first="saturated")},
                                ["activation"], TABLE)
    refused = {"refused": ["model.output"]}
    assert score.is_detected(refused, ["activation"])
    assert score.is_right_cause(refused, ["activation"], TABLE)
    assert not score.is_right_cause(refused, ["learning rate"], TABLE)
    unfinished = {"record": _record("healthy", more=12)}
    assert score.is_detected(unfinished, ["epochs"])
    assert score.is_right_cause(unfinished, ["epochs"], TABLE)
    assert not score.is_detected(unfinished, ["activation"])  # the note is no activation fault
    healthy = {"record": _record("healthy")}
    assert not score.is_detected(healthy, ["epochs"]) and not score.is_false_alarm(healthy)
    assert score.is_false_alarm(refused) and score.is_false_alarm(data)


def test_the_summary_and_the_confusion_matrix():
    results = [
        {"labels": ["activation"], "buggy": {"detected": True, "right_cause": True,
                                             "called": "saturated"},
         "fixed": {"false_alarm": False}, "repairs": [{"helped": False}, {"helped": True}]},
        {"labels": ["epochs", "batch size"], "buggy": {"detected": False, "right_cause": False,
                                                       "called": "healthy"},
         "fixed": {"false_alarm": True}, "repairs": []},
    ]
    summary = score.summarize(results)
    assert summary["detected"] == 0.5 and summary["false_alarms"] == 1
    assert summary["repairable"] == 1 and summary["first_fix_helps"] == 0.0
    assert summary["helped_within_3"] == 1.0
    assert score.confusion(results) == {"activation": {"saturated": 1},
                                        "epochs": {"healthy": 1}}
