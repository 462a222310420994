"""A finished run's repair: its spec with the diagnosis's suggested fix applied, submitted as a
new experiment linked to the first (`POST /v1/experiments/{id}/repair`, `layerwise repair`,
and on its own with `diagnostics.auto_repair`).

The link travels in the repair's spec tags: `layerwise.repair_of` (the repaired job's id) and
`mlflow.parentRunId` (its MLflow run). The worker already puts a spec's tags on its run, so the
MLflow link needs nothing of the worker; the store needs no new column (the record reads the
link from the spec), and the spec logged as `spec.yaml` says what it repairs.

Try and check (AutoTrainer's loop): a finding carries its fix and `alternatives`, ranked. A
repair that did not help (`helped`: not healthy, and its headline metric not `CLEAR_GAIN`
better than the job it repairs) is repaired by going back to that job and trying its next
candidate (`layerwise.repair_candidate` counts them); a repair that helped but still has a
problem is repaired by its own diagnosis's first fix.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import ValidationError

from services.contract import mlflow_names as names
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecError, SpecInvalid
from services.contract.sweep_spec import apply_params
from services.lifecycle import Status
from services.settings import Settings
from services.store import JobRecord, JobStore
from workers.submission.pipeline import Cluster, submit_experiment

log = logging.getLogger("layerwise.repair")

_ROUND = re.compile(r"^(?P<base>.*) \(repair (?P<round>\d+)\)$", re.DOTALL)
_NAME_MAX = 250  # the spec's name field


class RepairRefused(ValueError):
    """The job cannot be repaired as it is (HTTP 409); the message says why and what to do."""


CLEAR_GAIN = 0.02  # of accuracy, or of loss, for a repair to count as helping
TAG_CANDIDATE = names.TAG_REPAIR_CANDIDATE


def diagnosis_of(record: JobRecord) -> dict[str, Any]:
    """The job's diagnosis, after checking the job can be repaired at all.

    Raises:
        RepairRefused: not an experiment, not finished (or failed for another cause than
            diverging), no diagnosis, or healthy.
    """
    if record.job_type != "experiment":
        raise RepairRefused(f"job {record.id} is a {record.job_type}; repair one of its "
                            "trials' experiments instead")
    diagnosis = record.diagnosis or (record.result or {}).get("diagnosis")
    diverged = isinstance(diagnosis, dict) and diagnosis.get("verdict") == "diverged"
    if record.status != Status.SUCCEEDED.value and not (
            diverged and record.status == Status.FAILED.value):
        raise RepairRefused(f"job {record.id} is {record.status}; only a succeeded job (or "
                            "one that failed by diverging) has a diagnosis to repair (a failed "
                            "one: read its error, fix the spec and submit it again)")
    if not isinstance(diagnosis, dict) or not diagnosis.get("verdict"):
        raise RepairRefused(f"job {record.id} has no diagnosis (nothing was measured: "
                            "diagnostics.grad_norms was off); change its spec by hand and "
                            "submit it")
    if diagnosis["verdict"] == "healthy":
        raise RepairRefused(f"job {record.id} was diagnosed healthy: there is nothing to "
                            "repair")
    return diagnosis


def candidate_fixes(record: JobRecord) -> tuple[str, list[dict[str, Any]]]:
    """The verdict of the job's diagnosis and the fixes its primary finding suggests, in the
    order to try them (`fix`, then `alternatives`).

    Raises:
        RepairRefused: see `diagnosis_of`, or no fix.
    """
    diagnosis = diagnosis_of(record)
    verdict = str(diagnosis["verdict"])
    finding = _primary_finding(diagnosis) or {}
    ranked = [finding.get("fix"), *(finding.get("alternatives") or [])]
    ranked = [fix for fix in ranked if isinstance(fix, dict) and fix]
    if not ranked:
        raise RepairRefused(f"the diagnosis of job {record.id} ({verdict}) suggests no fix "
                            "to apply; read its findings and change the spec by hand")
    return verdict, ranked


def primary_fix(record: JobRecord) -> tuple[str, dict[str, Any]]:
    """The verdict of the job's diagnosis and the first fix it suggests."""
    verdict, ranked = candidate_fixes(record)
    return verdict, ranked[0]


def _primary_finding(diagnosis: dict[str, Any]) -> dict[str, Any] | None:
    """The finding whose verdict is the diagnosis's (findings[0] by the contract)."""
    findings = [f for f in diagnosis.get("findings") or [] if isinstance(f, dict)]
    for finding in findings:
        if finding.get("verdict") == diagnosis["verdict"]:
            return finding
    return findings[0] if findings else None


def helped(before: float | None, after: float | None, better: str,
           after_verdict: str | None = None) -> bool:
    """Whether a repair helped: its headline metric is `CLEAR_GAIN` better, or it is healthy
    and not `CLEAR_GAIN` worse (a cure that costs accuracy is not one), or it has a metric
    where the job it repairs had none (a run that diverged)."""
    if after is None:
        return False
    if before is None:
        return True
    gain = after - before if better == "higher" else before - after
    return gain >= CLEAR_GAIN or (after_verdict == "healthy" and gain > -CLEAR_GAIN)


def next_attempt(record: JobRecord, store: JobStore | None = None
                 ) -> tuple[JobRecord, int, dict[str, Any]]:
    """(the job whose spec to change, which of its candidate fixes, that fix).

    A repair that did not help sends the next attempt back to the job it repairs, with the
    candidate after the one it tried; any other job is changed by its own first fix.

    Raises:
        RepairRefused: see `candidate_fixes`, or every candidate of the repaired job tried.
    """
    original_id = repair_of(record)
    original = store.get(original_id) if store is not None and original_id else None
    if original is not None and not repair_helped(original, record):
        diagnosis_of(record)  # the attempt itself must be finished and not healthy
        tried = _candidate_index(record)
        _, ranked = candidate_fixes(original)
        if tried + 1 >= len(ranked):
            raise RepairRefused(
                f"the {len(ranked)} fixes suggested for job {original.id} were tried (the last "
                f"by job {record.id}) and none helped; change the spec by hand (the report of "
                "each attempt says what it measured)")
        return original, tried + 1, ranked[tried + 1]
    _, fix = primary_fix(record)
    return record, 0, fix


def _candidate_index(record: JobRecord) -> int:
    raw = (record.spec.get("tags") or {}).get(TAG_CANDIDATE, "0")
    return int(raw) if str(raw).isdigit() else 0


def repaired_spec(record: JobRecord, store: JobStore | None = None) -> ExperimentSpec:
    """The next attempt's spec (`next_attempt`): the base job's spec with the fix applied by
    dotted path, one round of auto repair used, named `<name> (repair N)`, tagged with its
    link to the job it repairs and the candidate it tries, without the `{diagnosis: ...}`
    expectations (the problem it repairs) but with the metric bounds.

    Raises:
        RepairRefused: see `next_attempt`, or the fix is already in the spec.
        SpecInvalid: the fix makes a spec that does not parse (each field named).
    """
    base, index, fix = next_attempt(record, store)
    original = ExperimentSpec.model_validate(base.spec)
    before = original.model_dump(mode="json")
    payload = apply_params(before, fix)
    if payload == before:
        raise RepairRefused(f"the fix suggested for job {base.id} ({_describe(fix)}) is "
                            "already in its spec; change the spec by hand and submit it")
    rounds = ExperimentSpec.model_validate(record.spec).diagnostics.auto_repair
    diagnostics = payload.setdefault("diagnostics", {})
    diagnostics["auto_repair"] = max(0, rounds - 1)
    payload["name"] = repair_name(record.spec.get("name") or record.id[:8])
    # A `{diagnosis: ...}` expectation described the problem the repair removes; its metric
    # bounds still say what the run should reach.
    payload["expect"] = [e for e in payload.get("expect") or []
                         if not (isinstance(e, dict) and "diagnosis" in e)]
    tags = {**original.tags, names.TAG_REPAIR_OF: base.id, TAG_CANDIDATE: str(index)}
    if base.mlflow_run_id:
        tags[names.PARENT_RUN_TAG] = base.mlflow_run_id
    payload["tags"] = tags
    try:
        return ExperimentSpec.model_validate(payload)
    except ValidationError as exc:
        raise SpecInvalid([SpecError(tuple(e["loc"]), f"{e['msg']} (after the suggested fix "
                                     f"{_describe(fix)}; change the spec by hand)")
                           for e in exc.errors()]) from None


def repair_name(name: str) -> str:
    """`net` -> `net (repair 1)`; `net (repair 1)` -> `net (repair 2)`."""
    match = _ROUND.match(name)
    base, done = (match["base"], int(match["round"])) if match else (name, 0)
    suffix = f" (repair {done + 1})"
    return base[:_NAME_MAX - len(suffix)] + suffix


def submit_repair(record: JobRecord, *, store: JobStore, settings: Settings, owner: str,
                  cluster: Cluster | None, idempotency_key: str | None
                  ) -> tuple[JobRecord, bool]:
    """The repaired spec through the one submission path (caps, dry run, queue)."""
    return submit_experiment(repaired_spec(record, store), store=store, settings=settings,
                             owner=owner, cluster=cluster, idempotency_key=idempotency_key)


def repair_of(record: JobRecord) -> str | None:
    """The id of the job this one repairs, if it is a repair."""
    return (record.spec.get("tags") or {}).get(names.TAG_REPAIR_OF)


def headline_metric(*records: JobRecord) -> tuple[str, str]:
    """The metric a repair is judged by, and which way is better: validation accuracy when
    the runs measured one (a classifier; a run that diverged measured nothing), validation
    loss otherwise."""
    if any("val/accuracy" in (record.result or {}) for record in records):
        return "val/accuracy", "higher"
    return "val/loss", "lower"


def before_after(original: JobRecord, repair: JobRecord) -> dict[str, Any]:
    """The headline metric of the repaired job and of its repair, and whether the repair
    helped (`helped`; None until it finished)."""
    metric, better = headline_metric(original, repair)
    before = (original.result or {}).get(metric)
    after = (repair.result or {}).get(metric)
    finished = repair.status in (Status.SUCCEEDED.value, Status.FAILED.value)
    verdict = (repair.diagnosis or (repair.result or {}).get("diagnosis") or {}).get("verdict")
    return {"of": original.id, "metric": metric, "better": better, "before": before,
            "after": after, "helped": helped(before, after, better, verdict) if finished
            else None}


def repair_helped(original: JobRecord, repair: JobRecord) -> bool:
    return bool(before_after(original, repair)["helped"])


def _describe(fix: dict[str, Any]) -> str:
    return ", ".join(f"{path}={value!r}" for path, value in fix.items())


class AutoRepair:
    """The dispatcher's hook for `diagnostics.auto_repair`: a succeeded job whose spec asks
    for it and whose diagnosis carries a fix gets its repair submitted, owned by the job's
    owner.

    The repair's dry run (data, model, one step) runs on a thread of its own, not on the
    dispatcher's tick, which records outcomes and launches jobs and must not wait on it; one
    thread, so repairs queue rather than compete with API requests for the CPU. The
    Idempotency-Key `auto-repair:<job id>` keeps a job to one automatic repair. A repair
    pending when the process stops is not made: `layerwise repair <id>` makes it.
    """

    def __init__(self, store: JobStore, settings: Settings, cluster: Cluster | None):
        self.store, self.settings, self.cluster = store, settings, cluster
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="auto-repair")

    def __call__(self, record: JobRecord) -> None:
        if wants_repair(record, self.store):
            self._pool.submit(self.repair_now, record)

    def repair_now(self, record: JobRecord) -> JobRecord | None:
        """Submit the job's repair; a refusal is logged, not raised (no one is waiting)."""
        try:
            repair, _ = submit_repair(record, store=self.store, settings=self.settings,
                                      owner=record.owner, cluster=self.cluster,
                                      idempotency_key=f"auto-repair:{record.id}")
        except Exception as exc:
            log.warning("auto repair of job %s not submitted: %s", record.id, exc,
                        extra={"job_id": record.id})
            return None
        log.info("job %s repaired by job %s", record.id, repair.id, extra={"job_id": record.id})
        return repair


def wants_repair(record: JobRecord, store: JobStore | None = None) -> bool:
    """Rounds of auto repair left, and a fix that changes the spec. Cheap (the record and a
    spec's validation), for the dispatcher's thread; a fix that makes an invalid spec counts,
    so that its refusal is logged."""
    rounds = ((record.spec.get("diagnostics") or {}).get("auto_repair") or 0)
    if rounds <= 0:
        return False
    try:
        repaired_spec(record, store)
    except RepairRefused:
        return False
    except SpecInvalid:
        return True
    return True
