"""Row 7: the verdict engine against the labelled pathology suite (examples/pathologies/).

Every spec there builds one pathology on purpose and says which verdict it expects
(`expect: [{diagnosis: <verdict>}]`). The row trains each (in process, a real MLflow store),
and reports:

- the confusion matrix, label x verdict (a Hopfield or RBM run that passes its own checks is
  `healthy` with a `no_gradients` finding: it counts as `no_gradients`, the label it carries);
- `healthy` on problem runs (goal 0) and false alarms on healthy runs (goal 0);
- the median fraction of training (detected_at_step / the run's total steps) before the live
  diagnosis called the problem;
- repairs, tried and checked as `workers.submission.repair` chains them: the primary
  finding's fix applied to the spec and the spec run again, then, while it did not help, its
  alternatives in turn (at most `TRIES` runs). An attempt helps as the job record says
  (`repair_outcome.outcome`): the rerun is healthy, or its headline metric (val accuracy for
  a classifier, else val loss) went at least half the way from the task's baseline to
  perfect. Reported: the success rate within the tries, the first fix's alone, the mean
  attempts, and the mean gain over the repairs where both runs have the metric.

`python -m bench` runs it with every other row (`--tiny`: three specs); `python -m bench.diagnosis
[--tiny] [--seeds 0,1,2]` runs this row alone.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from mlflow.tracking import MlflowClient

from services.contract.spec import ExperimentSpec
from services.contract.sweep_spec import apply_params
from tests.utils.settings import local_settings, worker_settings
from workers.diagnostics.verdicts.record import VERDICTS
from workers.run import run_experiment
from workers.submission import repair_outcome
from workers.training.loop import Diverged

SUITE = Path(__file__).resolve().parents[1] / "examples" / "pathologies"
# `--tiny`: three quick specs (tests/examples/test_pathologies.py trains ten, one per verdict).
TINY = ("healthy-mlp-moons", "diverged-mlp-identity-lr10", "symmetric-mlp-zeros")
TRIES = 3  # candidate fixes a repair tries at most (AutoTrainer tries its solutions in turn)


def load_suite(directory: Path = SUITE) -> dict[str, dict[str, Any]]:
    """{file stem: spec payload} of every pathology spec."""
    return {path.stem: yaml.safe_load(path.read_text())
            for path in sorted(directory.glob("*.yaml"))}


def label(spec: dict[str, Any]) -> str:
    """The verdict a spec expects (its first `{diagnosis: ...}` expectation)."""
    for item in spec.get("expect") or []:
        if isinstance(item, dict) and "diagnosis" in item:
            return str(item["diagnosis"])
    raise ValueError(f"spec {spec.get('name')} expects no diagnosis")


def called(diagnosis: dict[str, Any]) -> str:
    """The verdict as the suite labels it: a gradient-free run that passes its own checks is
    `no_gradients` (the engine says `healthy` and lists the `no_gradients` finding)."""
    verdict = str(diagnosis.get("verdict"))
    kinds = [f.get("verdict") for f in diagnosis.get("findings") or []]
    return "no_gradients" if verdict == "healthy" and "no_gradients" in kinds else verdict


def run_spec(spec: dict[str, Any], home: Path, *, seed: int | None = None) -> dict[str, Any]:
    """Train `spec` (with `seed` as training.seed when given) and return {verdict, called,
    diagnosis, fraction, headline, result}. A run that diverges raises in the loop (and one
    whose NaN weights fail after it, e.g. drawing text samples): its diagnosis is read back
    from MLflow."""
    payload = copy.deepcopy({k: v for k, v in spec.items() if k != "expect"})
    if seed is not None:
        payload = apply_params(payload, {"training.seed": seed})
    payload.setdefault("diagnostics", {})["plots"] = False
    settings = local_settings(home)
    reports: list[dict[str, Any]] = []
    try:
        result = run_experiment("pathology", payload, worker_settings(settings), reports.append)
    except Exception as exc:  # noqa: BLE001 - a failed run is diagnosed too (Diverged above all)
        if not reports:
            raise
        client = MlflowClient(tracking_uri=settings.tracking_uri)
        run_id = reports[0]["mlflow_run_id"]
        try:
            path = client.download_artifacts(run_id, "diagnosis.json", str(settings.home_dir))
        except Exception:  # noqa: BLE001 - no diagnosis was written: the failure is the answer
            raise exc from None
        diagnosis = json.loads(Path(path).read_text())
        result = {"diagnosis": diagnosis, "failed": type(exc).__name__,
                  "diverged": isinstance(exc, Diverged)}
    diagnosis = result.get("diagnosis") or {"verdict": None, "findings": []}
    return {"verdict": diagnosis.get("verdict"), "called": called(diagnosis),
            "diagnosis": diagnosis, "fraction": _fraction(payload, result, reports),
            "headline": headline(result), "result": result}


def _fraction(payload: dict[str, Any], result: dict[str, Any],
              reports: list[dict[str, Any]]) -> float | None:
    """detected_at_step over the steps the whole run would have taken."""
    step = (result.get("diagnosis") or {}).get("detected_at_step")
    if step is None:
        return None
    epochs = ExperimentSpec.model_validate(payload).training.epochs
    done, steps = result.get("epochs_run"), result.get("steps")
    if not done or not steps:  # diverged: the last progress report says how far it got
        progress = [r["progress"] for r in reports if "progress" in r]
        done = progress[-1].get("epoch") if progress else None
        steps = progress[-1].get("step") if progress else None
    per_epoch = float(steps) / float(done) if done and steps else _diverged_epoch_steps(result)
    if not per_epoch:
        return None
    return min(1.0, float(step) / (per_epoch * epochs))


def _diverged_epoch_steps(result: dict[str, Any]) -> float | None:
    """A run that diverged in its first epoch finished none: its finding says how many steps
    an epoch has."""
    for finding in (result.get("diagnosis") or {}).get("findings") or []:
        if finding.get("verdict") == "diverged":
            return (finding.get("evidence") or {}).get("steps_per_epoch")
    return None


def headline(result: dict[str, Any]) -> float | None:
    """Val accuracy for a classifier, else -val loss (higher is better either way)."""
    if result.get("val/accuracy") is not None:
        return float(result["val/accuracy"])
    loss = result.get("val/loss")
    return -float(loss) if loss is not None else None


def candidates(diagnosis: dict[str, Any]) -> list[dict[str, Any]]:
    """The primary finding's fix and its alternatives, in the order a repair tries them."""
    findings = [f for f in diagnosis.get("findings") or []
                if f.get("verdict") == diagnosis.get("verdict")]
    if not findings:
        return []
    return [fix for fix in [findings[0].get("fix"), *(findings[0].get("alternatives") or [])]
            if fix]


def repair(spec: dict[str, Any], first: dict[str, Any], home: Path, tries: int = TRIES
           ) -> dict[str, Any] | None:
    """AutoTrainer's loop, as `workers.submission.repair` runs it: the candidates in order, each
    applied to the first spec and run, until one helps (`repair_outcome`) or `tries` ran:
    {fixes, called, gain, ok, attempts, first_ok}, or None when the diagnosis suggests no fix.
    `gain` is the helping attempt's (else the last one's) over the first run."""
    ranked = candidates(first["diagnosis"])
    if not ranked:
        return None
    base = {k: v for k, v in spec.items() if k != "expect"}
    attempts: list[dict[str, Any]] = []
    for fix in ranked[:tries]:
        again = run_spec(apply_params(base, fix), home)
        before, after = first["headline"], again["headline"]
        attempts.append({"fix": fix, "called": again["called"],
                         "gain": after - before if before is not None and after is not None
                         else None,
                         "ok": repair_outcome.outcome(first["result"], first["diagnosis"],
                                                      again["result"],
                                                      again["diagnosis"])["helped"]})
        if attempts[-1]["ok"]:
            break
    last = attempts[-1]
    return {"fixes": [a["fix"] for a in attempts], "called": last["called"],
            "gain": last["gain"], "ok": last["ok"], "attempts": len(attempts),
            "first_ok": attempts[0]["ok"]}


def confusion(outcomes: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    matrix: dict[str, dict[str, int]] = {}
    for outcome in outcomes:
        row = matrix.setdefault(outcome["label"], {})
        row[outcome["called"]] = row.get(outcome["called"], 0) + 1
    return matrix


def summarize(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    problems = [o for o in outcomes if o["label"] not in ("healthy", "no_gradients")]
    healthy = [o for o in outcomes if o["label"] == "healthy"]
    fractions = [o["fraction"] for o in problems if o["fraction"] is not None]
    repairs = [o["repair"] for o in problems if o.get("repair") is not None]
    gains = [r["gain"] for r in repairs if r["gain"] is not None]
    return {
        "runs": len(outcomes),
        "accuracy": sum(o["called"] == o["label"] for o in outcomes) / max(1, len(outcomes)),
        "healthy_on_problem_rate": sum(o["called"] == "healthy" for o in problems)
        / max(1, len(problems)),
        "false_alarm_rate": sum(o["called"] != "healthy" for o in healthy) / max(1, len(healthy)),
        "median_detection_fraction": statistics.median(fractions) if fractions else None,
        "repairs": len(repairs),
        "repair_success_rate": sum(r["ok"] for r in repairs) / len(repairs) if repairs else None,
        "first_fix_success_rate": sum(r["first_ok"] for r in repairs) / len(repairs)
        if repairs else None,
        "mean_attempts": statistics.fmean(r["attempts"] for r in repairs) if repairs else None,
        "mean_gain": statistics.fmean(gains) if gains else None,
    }


def evaluate(names: list[str] | None = None, *, repairs: bool = True, seeds: tuple[int, ...] = (0,)
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    suite = load_suite()
    outcomes: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="layerwise-pathologies-") as tmp:
        home = Path(tmp)
        for name in names or list(suite):
            spec = suite[name]
            for seed in seeds:
                started = time.perf_counter()
                first = run_spec(spec, home, seed=seed)
                outcome = {"spec": name, "seed": seed, "label": label(spec),
                           "called": first["called"], "verdict": first["verdict"],
                           "fraction": first["fraction"], "headline": first["headline"],
                           "seconds": time.perf_counter() - started}
                if repairs and outcome["label"] not in ("healthy", "no_gradients") \
                        and first["verdict"] != "healthy":
                    outcome["repair"] = repair(spec, first, home)
                outcomes.append(outcome)
    return outcomes, summarize(outcomes)


def print_matrix(matrix: dict[str, dict[str, int]]) -> str:
    columns = [v for v in VERDICTS if any(v in row for row in matrix.values())]
    lines = ["label \\ verdict | " + " | ".join(columns)]
    for verdict in VERDICTS:
        if verdict in matrix:
            lines.append(f"{verdict} | " + " | ".join(str(matrix[verdict].get(c, 0))
                                                      for c in columns))
    return "\n".join(lines)


def run(tiny: bool = False, results: Path | None = None, seeds: tuple[int, ...] = (0,)
        ) -> list[dict[str, Any]]:
    outcomes, summary = evaluate(list(TINY) if tiny else None, repairs=True, seeds=seeds)
    matrix = confusion(outcomes)
    print(print_matrix(matrix))
    print(json.dumps(summary, indent=2))
    if results is not None:
        results.mkdir(parents=True, exist_ok=True)
        (results / ("diagnosis-tiny.json" if tiny else "diagnosis.json")).write_text(
            json.dumps({"summary": summary, "confusion": matrix, "runs": outcomes}, indent=2))
    met = (summary["healthy_on_problem_rate"] == 0 and summary["false_alarm_rate"] == 0
           and (summary["repair_success_rate"] or 0) >= 0.95)
    row = {"row": "7 verdicts on the pathology suite", "baseline": "the specs' labels",
           **{k: float(v) for k, v in summary.items() if isinstance(v, int | float)},
           "confusion": matrix,
           "target": "healthy-on-problem 0, false alarms 0, repairs >= 95%", "met": met}
    return [row]


def main() -> None:
    parser = argparse.ArgumentParser(description="bench row 7 alone: " + __doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help=f"only {', '.join(TINY)}")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    run(args.tiny, args.results, tuple(int(s) for s in args.seeds.split(",")))


if __name__ == "__main__":
    main()
