"""Row 12: the diagnosis on faults written elsewhere, measured through REST as a user meets it.

The cases (benchmarks/faults/cases.yaml, bench/faults_cases.py) are published faulty training
programs (DeepFD's and DeepLocalize's Stack Overflow and GitHub faults, AutoTrainer's models)
translated into specs, each with its published fix as a healthy counterpart. The row starts the
real service (`ServerThread`: the FastAPI app over HTTP, its dispatcher on Ray, MLflow),
submits every buggy and fixed spec with `POST /v1/experiments` (a 422 refusal that names a
field is a detection at submission), waits for each job and reads its record (`GET
/v1/experiments/{id}`: status, diagnosis, result), then repairs each buggy run that did not
leave its problem with `POST /v1/experiments/{id}/repair`, up to three times, each time
repairing the previous repair when it did not help. Scoring: bench/faults_score.py.

`python -m bench.faults [--half tuning|held-out|both] [--limit N] [--cases ID,...]` writes
bench/results/faults.json; `python -m bench` runs it with the other rows (`--tiny`: 2 cases).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import faults_score as score
from bench.faults_cases import DATA, fixed_spec, half, load_cases, load_labels, select
from bench.faults_cases import buggy_spec as make_buggy
from tests.utils.server import ServerThread
from tests.utils.settings import local_settings

RESULTS = Path(__file__).parent / "results"
TRIES = 3  # repairs per buggy run at most, each on the previous one when it did not help
TINY = ("deepfd-48934338", "deepfd-52800582")  # one learning-rate case, one data case
TIMEOUT_S = 900.0


def _quiet(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as the bench submits it: no plots (drawing them is a feature's cost, timed
    elsewhere) and no auto-repair (the bench repairs through REST itself)."""
    spec = json.loads(json.dumps(spec))
    diagnostics = spec.setdefault("diagnostics", {})
    diagnostics["plots"] = False
    diagnostics["auto_repair"] = 0
    return spec


# The bench speaks plain HTTP and reads plain JSON, as a user's script would: the typed
# client (api.client) validates each record against its response model, and a record that
# breaks the model must show up in the report, not stop the bench.


def submit(http: httpx.Client, spec: dict[str, Any]) -> dict[str, Any]:
    """{job_id}, or {refused: [field, ...], detail} for a 422 (its fields as dotted paths)."""
    response = http.post("/v1/experiments", json=_quiet(spec))
    if response.status_code == 422:
        problem = response.json()
        fields = [".".join(str(p) for p in e.get("loc") or [] if p != "body")
                  for e in problem.get("errors") or []]
        return {"refused": [f for f in fields if f] or ["body"],
                "detail": str(problem.get("detail", ""))[:500]}
    response.raise_for_status()
    return {"job_id": response.json()["id"]}


def wait_all(http: httpx.Client, job_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each job's final record, polled together."""
    records: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + TIMEOUT_S * max(1, len(job_ids) // 2)
    pending = list(job_ids)
    while pending:
        for job_id in list(pending):
            response = http.get(f"/v1/experiments/{job_id}")
            response.raise_for_status()
            record = response.json()
            if record["status"] in ("succeeded", "failed", "cancelled"):
                records[job_id] = record
                pending.remove(job_id)
        if pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still running: {pending}")
            time.sleep(0.5)
    return records


def _slim(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the report keeps of a record."""
    if record is None:
        return None
    diagnosis = record.get("diagnosis") or {}
    result = record.get("result") or {}
    return {"id": record["id"], "status": record["status"],
            "error": (record.get("error") or "")[:300] or None,
            "verdict": diagnosis.get("verdict"),
            "findings": [{k: f.get(k) for k in ("verdict", "fix", "alternatives")}
                         for f in diagnosis.get("findings") or []][:4],
            "baseline": diagnosis.get("baseline"),
            "needs_more_epochs": diagnosis.get("needs_more_epochs"),
            "metrics": {k: result.get(k) for k in ("val/accuracy", "val/loss", "train/loss")
                        if k in result},
            "repair": record.get("repair")}


def evaluate(cases: list[dict[str, Any]], *, tries: int = TRIES) -> list[dict[str, Any]]:
    """Every case through a fresh service: its buggy and fixed runs, then the repairs."""
    table = load_labels()
    with tempfile.TemporaryDirectory(prefix="layerwise-faults-") as tmp, ServerThread(
            local_settings(Path(tmp), data_roots=str(DATA))) as server:
        http = server.http()
        submitted = {c["id"]: {"buggy": submit(http, make_buggy(c)),
                               "fixed": submit(http, fixed_spec(c))} for c in cases}
        jobs = [s[k]["job_id"] for s in submitted.values() for k in ("buggy", "fixed")
                if "job_id" in s[k]]
        records = wait_all(http, jobs)
        results = []
        for case in cases:
            outcome = {}
            for which in ("buggy", "fixed"):
                sent = submitted[case["id"]][which]
                outcome[which] = {**sent, "record": records.get(sent.get("job_id", ""))}
            results.append(_judge(case, outcome["buggy"], outcome["fixed"], table))
        if tries:
            _repair_all(http, results, tries)
    for r in results:
        for which in ("buggy", "fixed"):
            r[which]["record"] = _slim(r[which].get("record"))
    return results


def _judge(case: dict[str, Any], buggy: dict[str, Any], fixed: dict[str, Any],
           table: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    buggy.update(detected=score.is_detected(buggy, case["labels"]),
                 right_cause=score.is_right_cause(buggy, case["labels"], table),
                 named=score.causes(buggy), called=score.called(buggy))
    fixed.update(false_alarm=score.is_false_alarm(fixed), called=score.called(fixed))
    return {"id": case["id"], "half": half(case["id"]), "labels": case["labels"],
            "expected_cause": case.get("expected_cause"), "buggy": buggy, "fixed": fixed,
            "reproduced": score.reproduced(buggy, fixed), "repairs": []}


def _baseline(result: dict[str, Any]) -> dict[str, Any] | None:
    for which in ("buggy", "fixed"):
        record = result[which].get("record") or {}
        found = (record.get("diagnosis") or {}).get("baseline")
        if found:
            return found
    return None


def _repair_all(http: httpx.Client, results: list[dict[str, Any]], tries: int) -> None:
    """Rounds of `POST .../repair`: every buggy run that ran and was detected is repaired;
    one whose repair did not help is repaired again on that repair, up to `tries`."""
    target = {r["id"]: r["buggy"]["record"]["id"] for r in results
              if r["buggy"].get("record") and r["buggy"]["detected"]}
    by_id = {r["id"]: r for r in results}
    for _ in range(tries):
        launched: dict[str, str] = {}
        for case_id, job_id in target.items():
            response = http.post(f"/v1/experiments/{job_id}/repair")
            if response.status_code in (200, 201):
                launched[case_id] = response.json()["id"]
            else:  # 409: nothing to repair (no fix suggested); 422: the fix was refused
                by_id[case_id]["repairs"].append({"of": job_id, "refused": response.status_code,
                                                  "detail": response.text[:300],
                                                  "helped": False})
        records = wait_all(http, list(launched.values()))
        target = {}
        for case_id, job_id in launched.items():
            record = records[job_id]
            ok = score.helped(record, _baseline(by_id[case_id]))
            by_id[case_id]["repairs"].append({
                "of": record.get("repair_of"), "job": _slim(record), "helped": ok,
                "gap_closed": score.own_gap_closed(record, _baseline(by_id[case_id]))})
            if not ok:
                target[case_id] = job_id
        if not target:
            break


def report(results: list[dict[str, Any]]) -> dict[str, Any]:
    halves = {h: [r for r in results if r["half"] == h] for h in ("tuning", "held-out")}
    return {"summary": {h: score.summarize(rs) for h, rs in halves.items() if rs},
            "summary_reproduced": {h: score.summarize([r for r in rs if r["reproduced"]])
                                   for h, rs in halves.items() if rs},
            "confusion": {h: score.confusion(rs) for h, rs in halves.items() if rs},
            "cases": results}


def run(tiny: bool = False, results: Path | None = RESULTS, *, which: str = "both",
        limit: int | None = None, ids: list[str] | None = None) -> list[dict[str, Any]]:
    cases = select(load_cases(), which, list(TINY) if tiny and not ids else ids, limit)
    # tiny: one repair round, to keep `python -m bench --tiny` quick
    outcome = report(evaluate(cases, tries=1 if tiny else TRIES))
    if results is not None:
        results.mkdir(parents=True, exist_ok=True)
        name = "faults-tiny.json" if tiny else "faults.json"
        (results / name).write_text(json.dumps(outcome, indent=2, default=str))
    print(json.dumps({k: outcome[k] for k in ("summary", "summary_reproduced", "confusion")},
                     indent=2))
    rows = []
    for name, summary in outcome["summary"].items():
        figures = {k: float(v) for k, v in summary.items() if isinstance(v, int | float)}
        met = (summary["detected"] is not None and summary["detected"] >= 0.95
               and (summary["right_cause"] or 0) >= 0.8 and summary["false_alarms"] == 0
               and (summary["first_fix_helps"] or 0) >= 0.7
               and (summary["helped_within_3"] or 0) >= 0.9)
        rows.append({"row": f"12 outside faults through REST ({name} half)",
                     "baseline": "DeepDiagnosis 46/53 detected; DeepFD 47/52; AutoTrainer 12/52",
                     **figures, "confusion": outcome["confusion"][name],
                     "target": "detected >= 95%, right cause >= 80%, false alarms 0, first fix "
                               ">= 70%, within 3 >= 90%",
                     # the tiny run's two cases measure too little to be held to the target
                     "met": None if tiny else met})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", choices=("tuning", "held-out", "both"), default="both")
    parser.add_argument("--limit", type=int, default=None, help="at most this many cases")
    parser.add_argument("--cases", default="", help="comma-separated case ids")
    parser.add_argument("--tiny", action="store_true", help=f"only {', '.join(TINY)}")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    ids = [c for c in args.cases.split(",") if c] or None
    run(args.tiny, args.results, which=args.half, limit=args.limit, ids=ids)


if __name__ == "__main__":
    main()
