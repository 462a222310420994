"""A finished run's repair: its spec with the diagnosis's suggested fix applied, submitted as a
new experiment linked to the first (`POST /v1/experiments/{id}/repair`, `layerwise repair`,
and on its own with `diagnostics.auto_repair`).

The link travels in the repair's spec tags: `layerwise.repair_of` (the repaired job's id) and
`mlflow.parentRunId` (its MLflow run). The worker already puts a spec's tags on its run, so the
MLflow link needs nothing of the worker; the store needs no new column (the record reads the
link from the spec), and the spec logged as `spec.yaml` says what it repairs.
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


def primary_fix(record: JobRecord) -> tuple[str, dict[str, Any]]:
    """The verdict of the job's diagnosis and the fix its primary finding suggests.

    Raises:
        RepairRefused: not a finished experiment, no diagnosis, healthy, or no fix.
    """
    if record.job_type != "experiment":
        raise RepairRefused(f"job {record.id} is a {record.job_type}; repair one of its "
                            "trials' experiments instead")
    if record.status != Status.SUCCEEDED.value:
        raise RepairRefused(f"job {record.id} is {record.status}; only a succeeded job has a "
                            "diagnosis to repair (a failed one: read its error, fix the spec "
                            "and submit it again)")
    diagnosis = record.diagnosis or (record.result or {}).get("diagnosis")
    if not isinstance(diagnosis, dict) or not diagnosis.get("verdict"):
        raise RepairRefused(f"job {record.id} has no diagnosis (nothing was measured: "
                            "diagnostics.grad_norms was off); change its spec by hand and "
                            "submit it")
    verdict = str(diagnosis["verdict"])
    if verdict == "healthy":
        raise RepairRefused(f"job {record.id} was diagnosed healthy: there is nothing to "
                            "repair")
    finding = _primary_finding(diagnosis)
    fix = finding.get("fix") if finding else None
    if not isinstance(fix, dict) or not fix:
        raise RepairRefused(f"the diagnosis of job {record.id} ({verdict}) suggests no fix "
                            "to apply; read its findings and change the spec by hand")
    return verdict, fix


def _primary_finding(diagnosis: dict[str, Any]) -> dict[str, Any] | None:
    """The finding whose verdict is the diagnosis's (findings[0] by the contract)."""
    findings = [f for f in diagnosis.get("findings") or [] if isinstance(f, dict)]
    for finding in findings:
        if finding.get("verdict") == diagnosis["verdict"]:
            return finding
    return findings[0] if findings else None


def repaired_spec(record: JobRecord) -> ExperimentSpec:
    """The job's spec with the primary fix applied by dotted path, one round of auto repair
    used, named `<name> (repair N)` and tagged with its link to the job.

    Raises:
        RepairRefused: see `primary_fix`, or the fix is already in the spec.
        SpecInvalid: the fix makes a spec that does not parse (each field named).
    """
    _, fix = primary_fix(record)
    original = ExperimentSpec.model_validate(record.spec)
    before = original.model_dump(mode="json")
    payload = apply_params(before, fix)
    if payload == before:
        raise RepairRefused(f"the fix suggested for job {record.id} ({_describe(fix)}) is "
                            "already in its spec; change the spec by hand and submit it")
    diagnostics = payload.setdefault("diagnostics", {})
    diagnostics["auto_repair"] = max(0, original.diagnostics.auto_repair - 1)
    payload["name"] = repair_name(original.name or record.id[:8])
    tags = {**original.tags, names.TAG_REPAIR_OF: record.id}
    if record.mlflow_run_id:
        tags[names.PARENT_RUN_TAG] = record.mlflow_run_id
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
    return submit_experiment(repaired_spec(record), store=store, settings=settings,
                             owner=owner, cluster=cluster, idempotency_key=idempotency_key)


def repair_of(record: JobRecord) -> str | None:
    """The id of the job this one repairs, if it is a repair."""
    return (record.spec.get("tags") or {}).get(names.TAG_REPAIR_OF)


def headline_metric(record: JobRecord) -> tuple[str, str]:
    """The metric a repair is judged by, and which way is better: validation accuracy when
    the run measured one (a classifier), validation loss otherwise."""
    if "val/accuracy" in (record.result or {}):
        return "val/accuracy", "higher"
    return "val/loss", "lower"


def before_after(original: JobRecord, repair: JobRecord) -> dict[str, Any]:
    """The headline metric of the repaired job and of its repair (None until it finished)."""
    metric, better = headline_metric(original)
    return {"of": original.id, "metric": metric, "better": better,
            "before": (original.result or {}).get(metric),
            "after": (repair.result or {}).get(metric)}


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
        if wants_repair(record):
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


def wants_repair(record: JobRecord) -> bool:
    """Rounds of auto repair left, and a fix that changes the spec. Cheap (the record and a
    spec's validation), for the dispatcher's thread; a fix that makes an invalid spec counts,
    so that its refusal is logged."""
    rounds = ((record.spec.get("diagnostics") or {}).get("auto_repair") or 0)
    if rounds <= 0:
        return False
    try:
        repaired_spec(record)
    except RepairRefused:
        return False
    except SpecInvalid:
        return True
    return True
