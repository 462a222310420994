"""The outside fault benchmark's cases (benchmarks/faults/): loading, the split, the specs.

`benchmarks/faults/cases.yaml` lists faulty training programs published by others (DeepFD,
DeepLocalize, AutoTrainer's and DeepDiagnosis's models), each translated into a Layerwise spec:

    - id: deepfd-48385830
      source: {repo: ..., path: ..., row: ..., post: ...}   # where the fault was published
      labels: [activation, loss, learning rate]            # the source's fault labels
      published: {before: ..., after: ...}                 # its figures, when it gives them
      translation: what of the original the spec keeps and what it had to change
      buggy: <spec>
      fix: {dotted.path: value, ...}                       # the published fix, as spec changes
      expected_cause: saturated                            # our reading of what it shows

The fixed counterpart is the buggy spec with `fix` applied (`sweep_spec.apply_params`), so the
fix is exactly the published change. `label_to_verdicts.yaml` says which verdicts (and which
refused spec fields) count as the right cause for each label. `unexpressible.yaml` lists the
published faults the spec cannot express, with why.

The split is a fixed rule: the first byte of sha256(case id) even -> tuning, odd -> held-out.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from services.contract.sweep_spec import apply_params

ROOT = Path(__file__).resolve().parents[1] / "benchmarks" / "faults"
CASES = ROOT / "cases.yaml"
LABELS = ROOT / "label_to_verdicts.yaml"
DATA = ROOT / "data"
HALVES = ("tuning", "held-out")


def half(case_id: str) -> str:
    """The case's half: sha256(id)'s first byte even -> tuning, odd -> held-out."""
    return HALVES[hashlib.sha256(case_id.encode()).digest()[0] % 2]


def load_cases(path: Path = CASES) -> list[dict[str, Any]]:
    cases = yaml.safe_load(path.read_text())
    assert isinstance(cases, list), f"{path}: a list of cases"
    return cases


def load_labels(path: Path = LABELS) -> dict[str, dict[str, list[str]]]:
    """{source label: {verdicts: [...], fields: [...]}}."""
    return yaml.safe_load(path.read_text())["labels"]


def buggy_spec(case: dict[str, Any]) -> dict[str, Any]:
    spec = dict(case["buggy"])
    spec.setdefault("name", f"{case['id']}-buggy")
    spec.setdefault("project", "faults")
    return spec


def fixed_spec(case: dict[str, Any]) -> dict[str, Any]:
    spec = apply_params(buggy_spec(case), case["fix"])
    spec["name"] = f"{case['id']}-fixed"
    return spec


def select(cases: list[dict[str, Any]], which: str = "both", ids: list[str] | None = None,
           limit: int | None = None) -> list[dict[str, Any]]:
    """The cases of half `which` (tuning, held-out or both), or those named in `ids`, at most
    `limit` of them (in file order)."""
    chosen = [c for c in cases if (ids and c["id"] in ids)
              or (not ids and (which == "both" or half(c["id"]) == which))]
    return chosen[:limit] if limit else chosen


def data_files(spec: dict[str, Any]) -> list[str]:
    """The data files a spec reads (relative to benchmarks/faults/data/)."""
    data = spec.get("data") or {}
    return [data["path"]] if data.get("source") == "file" and data.get("path") else []
