"""A finished run's repair: its spec with the diagnosis's suggested fix applied, submitted as a
new experiment linked to the first (`POST /v1/experiments/{id}/repair`, `layerwise repair`,
and on its own with `diagnostics.auto_repair`).

The link lives in the repair's job columns, which only the service writes: `repair_of` (the
repaired job's id), `repair_candidate` (which of its fixes it tries) and `parent_run_id` (its
MLflow run); the worker puts them on the run as `layerwise.repair_of`,
`layerwise.repair_candidate` and `mlflow.parentRunId`. A spec's own tags cannot carry these
keys (services/contract/spec.py), so no one can link a job to another's; a record stored when
the link travelled in the spec's tags is still read by them.

A repair reads every job as its caller: the job repaired and the one it points to must be the
caller's (or the caller an admin), else JobNotFound (404, as for any job one cannot see).

Repairing a job again returns its pending or finished repair, or tries the next candidate:
the caller's repair of that job with a candidate (not cancelled) is returned while it is
queued or running, or once it finished and helped; one that finished without helping moves
on to the next candidate, until one is new (it is submitted) or every one was tried (409).

Try and check (AutoTrainer's loop): a finding carries its fix and `alternatives`, ranked. A
repair that did not help (`repair_outcome.repair_helped`: not healthy, and its headline
metric not `FAIR_SHARE` of the way from the task's baseline to perfect) is repaired by going
back to that job and trying its next candidate (`layerwise.repair_candidate` counts them); a
repair that helped but still has a problem is repaired by its own diagnosis's first fix.

An unfinished run (`healthy` with `needs_more_epochs: N`) is not done: its one fix is
`training.epochs` raised by N, within the contract's cap (`MAX_EPOCHS`).
"""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from services.contract import mlflow_names as names
from services.contract.sections import MAX_EPOCHS
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecError, SpecInvalid
from services.contract.sweep_spec import apply_params
from services.contract.tags import STORED, user_tags
from services.lifecycle import Status
from services.records import JobRecord
from services.settings import Settings
from services.store import JobNotFound, JobStore
from workers.submission.pipeline import Cluster, submit_experiment
from workers.submission.repair_outcome import (
    FINISHED,
    diagnosis_of_record,
    record_outcome,
    repair_helped,
)

log = logging.getLogger("layerwise.repair")

_ROUND = re.compile(r"^(?P<base>.*) \(repair (?P<round>\d+)\)$", re.DOTALL)
_NAME_MAX = 250  # the spec's name field


class RepairRefused(ValueError):
    """The job cannot be repaired as it is (HTTP 409); the message says why and what to do."""


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
    diagnosis = diagnosis_of_record(record)
    # Failed by diverging: the loop's `diverged` finding, primary or behind its cause (the
    # data's scale, say).
    diverged = isinstance(diagnosis, dict) and any(
        isinstance(f, dict) and f.get("verdict") == "diverged"
        for f in [diagnosis, *(diagnosis.get("findings") or [])])
    if record.status != Status.SUCCEEDED.value and not (
            diverged and record.status == Status.FAILED.value):
        raise RepairRefused(f"job {record.id} is {record.status}; only a succeeded job (or "
                            "one that failed by diverging) has a diagnosis to repair (a failed "
                            "one: read its error, fix the spec and submit it again)")
    if not isinstance(diagnosis, dict) or not diagnosis.get("verdict"):
        raise RepairRefused(f"job {record.id} has no diagnosis (nothing was measured: "
                            "diagnostics.grad_norms was off); change its spec by hand and "
                            "submit it")
    if diagnosis["verdict"] == "healthy" and not _needs_more_epochs(diagnosis):
        raise RepairRefused(f"job {record.id} was diagnosed healthy: there is nothing to "
                            "repair")
    return diagnosis


def _needs_more_epochs(diagnosis: dict[str, Any]) -> int | None:
    """The epochs a healthy run still on its way needs (curves' `needs_more_epochs`), if any:
    such a run is unfinished, not done, and its repair trains it longer."""
    more = diagnosis.get("needs_more_epochs")
    return more if isinstance(more, int) and not isinstance(more, bool) and more > 0 else None


def _longer(record: JobRecord, more: int) -> dict[str, Any]:
    """`training.epochs` raised by `more`, within the spec's cap on epochs.

    Raises:
        RepairRefused: the run trained for the most epochs a spec allows already.
    """
    epochs = ExperimentSpec.model_validate(record.spec, context=STORED).training.epochs
    longer = min(MAX_EPOCHS, epochs + more)
    if longer <= epochs:
        raise RepairRefused(f"job {record.id} needs about {more} more epochs, but "
                            f"training.epochs is at its cap of {MAX_EPOCHS} already; raise "
                            "optimizer.lr instead (the same epochs then go further)")
    return {"training.epochs": longer}


def candidate_fixes(record: JobRecord) -> tuple[str, list[dict[str, Any]]]:
    """The verdict of the job's diagnosis and the fixes its primary finding suggests, in the
    order to try them (`fix`, then `alternatives`).

    Raises:
        RepairRefused: see `diagnosis_of`, or no fix.
    """
    diagnosis = diagnosis_of(record)
    verdict = str(diagnosis["verdict"])
    more = _needs_more_epochs(diagnosis)
    if verdict == "healthy" and more:  # unfinished: the epochs it needs are the one fix
        return verdict, [_longer(record, more)]
    finding = _primary_finding(diagnosis) or {}
    ranked = [finding.get("fix"), *(finding.get("alternatives") or [])]
    ranked = [fix for fix in ranked if isinstance(fix, dict) and fix]
    in_file = (finding.get("evidence") or {}).get("fix_in_file")
    if not ranked and in_file:  # the data's fault (NaN in a file): only the file can change
        raise RepairRefused(f"the diagnosis of job {record.id} ({verdict}) blames the data "
                            f"file, which no spec change repairs: {in_file}")
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


def visible(store: JobStore, job_id: str, owner: str, admin: bool = False) -> JobRecord:
    """The job, read as `owner` reads it (the routes' rule: an admin sees every job).

    Raises:
        JobNotFound: no such job, or another owner's.
    """
    record = store.get(job_id)
    if not admin and record.owner != owner:
        raise JobNotFound(job_id)
    return record


def next_attempt(record: JobRecord, store: JobStore | None = None, *,
                 owner: str | None = None, admin: bool = False
                 ) -> tuple[JobRecord, int, dict[str, Any]]:
    """(the job whose spec to change, which of its candidate fixes, that fix).

    A repair that did not help sends the next attempt back to the job it repairs, with the
    candidate after the one it tried; any other job is changed by its own first fix. The job
    it repairs is read as `owner` (by default the record's own owner).

    Raises:
        RepairRefused: see `candidate_fixes`, or every candidate of the repaired job tried.
        JobNotFound: the job it repairs is not the caller's.
    """
    original_id = repair_of(record)
    original = (visible(store, original_id, owner or record.owner, admin)
                if store is not None and original_id else None)
    if original is not None and not repair_helped(original, record):
        diagnosis_of(record)  # the attempt itself must be finished and not healthy
        tried = _candidate_index(record)
        _, ranked = candidate_fixes(original)
        if tried + 1 >= len(ranked):
            raise _all_tried(ranked, original, record)
        return original, tried + 1, ranked[tried + 1]
    _, fix = primary_fix(record)
    return record, 0, fix


def _candidate_index(record: JobRecord) -> int:
    if record.repair_candidate is not None:
        return record.repair_candidate
    raw = _legacy_tags(record).get(TAG_CANDIDATE, "0")  # a record from before the columns
    return int(raw) if str(raw).isdigit() else 0


def _legacy_tags(record: JobRecord) -> dict[str, Any]:
    return record.spec.get("tags") or {}


@dataclass(frozen=True)
class Attempt:
    """The next attempt: its spec and its link, which goes to the new job's columns."""

    spec: ExperimentSpec
    repair_of: str  # the job whose spec it changes
    candidate: int  # which of that job's candidate fixes it tries
    parent_run_id: str | None  # that job's MLflow run


def plan(record: JobRecord, store: JobStore | None = None) -> Attempt:
    """The next attempt (`next_attempt`, reading the jobs as the record's owner does)."""
    base, index, fix = next_attempt(record, store)
    return Attempt(_spec_of_attempt(record, base, fix), base.id, index, base.mlflow_run_id)


def repaired_spec(record: JobRecord, store: JobStore | None = None) -> ExperimentSpec:
    return plan(record, store).spec


def _spec_of_attempt(record: JobRecord, base: JobRecord, fix: dict[str, Any]
                     ) -> ExperimentSpec:
    """The base job's spec with the fix applied by dotted path, one round of auto repair
    used, named `<name> (repair N)`, with the base's own tags (not the service's), without
    the `{diagnosis: ...}` expectations (the problem it repairs) but with the metric bounds.

    Raises:
        RepairRefused: the fix is already in the spec.
        SpecInvalid: the fix makes a spec that does not parse (each field named).
    """
    original = ExperimentSpec.model_validate(base.spec, context=STORED)
    before = original.model_dump(mode="json")
    payload = apply_params(before, fix)
    if payload == before:
        raise RepairRefused(f"the fix suggested for job {base.id} ({_describe(fix)}) is "
                            "already in its spec; change the spec by hand and submit it")
    rounds = ExperimentSpec.model_validate(record.spec, context=STORED).diagnostics.auto_repair
    diagnostics = payload.setdefault("diagnostics", {})
    diagnostics["auto_repair"] = max(0, rounds - 1)
    payload["name"] = repair_name(record.spec.get("name") or record.id[:8])
    # A `{diagnosis: ...}` expectation described the problem the repair removes; its metric
    # bounds still say what the run should reach.
    payload["expect"] = [e for e in payload.get("expect") or []
                         if not (isinstance(e, dict) and "diagnosis" in e)]
    payload["tags"] = user_tags(original.tags)  # an old record's link tags are not copied
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
                  cluster: Cluster | None, idempotency_key: str | None, admin: bool = False
                  ) -> tuple[JobRecord, bool]:
    """The repaired spec through the one submission path (caps, dry run, queue), linked in
    the new job's columns. Returns (record, created): the caller's repair of the same job
    that is queued or running, or finished and helped, with created=False; else the new
    repair, with the first candidate no finished repair of that job has tried.

    Raises:
        JobNotFound: the job, or the one it repairs, is not the caller's.
        RepairRefused, SpecInvalid: see `next_attempt` and `_spec_of_attempt`.
    """
    record = visible(store, record.id, owner, admin)
    base, index, fix = next_attempt(record, store, owner=owner, admin=admin)
    with _REPAIRING[hash((owner, base.id)) % len(_REPAIRING)]:
        existing, index, fix = _first_open(store, owner, base, index, fix)
        if existing is not None:
            return existing, False
        # Without a key of the caller's, the repair's own: replicas asked for the same repair
        # at once then meet on the store's unique (owner, key) and make one job; a cancelled
        # repair moves the key on, so asking again after a cancel makes a new one.
        key = idempotency_key or (f"repair:{base.id}:{index}:"
                                  f"{store.cancelled_repairs(owner, base.id, index)}")
        return submit_experiment(
            _spec_of_attempt(record, base, fix), store=store, settings=settings, owner=owner,
            cluster=cluster, idempotency_key=key, repair_of=base.id,
            repair_candidate=index, parent_run_id=base.mlflow_run_id)


def _first_open(store: JobStore, owner: str, base: JobRecord, index: int, fix: dict[str, Any]
                ) -> tuple[JobRecord | None, int, dict[str, Any]]:
    """From candidate `index` of `base` on: (the owner's repair to return, or None; the
    candidate; its fix). A repair queued or running, or finished and helped, is returned; one
    that finished without helping moves on to the next candidate.

    Raises:
        RepairRefused: every candidate was tried and none helped.
    """
    ranked: list[dict[str, Any]] | None = None
    while True:
        existing = store.find_repair(owner, base.id, index)
        if existing is None:
            return None, index, fix
        if existing.status not in FINISHED or repair_helped(base, existing):
            return existing, index, fix
        if ranked is None:
            _, ranked = candidate_fixes(base)
        if index + 1 >= len(ranked):
            raise _all_tried(ranked, base, existing)
        index, fix = index + 1, ranked[index + 1]


# Two requests for a repair of the same job in this process check and create one after the
# other, so that the second finds the first's job (striped: bounded, and unrelated repairs
# rarely wait).
_REPAIRING = [threading.Lock() for _ in range(32)]


def repair_of(record: JobRecord) -> str | None:
    """The id of the job this one repairs, if it is a repair."""
    if record.repair_of is not None:
        return record.repair_of
    legacy = _legacy_tags(record).get(names.TAG_REPAIR_OF)  # a record from before the columns
    return str(legacy) if legacy else None


def before_after(original: JobRecord, repair: JobRecord) -> dict[str, Any]:
    """The headline metric of the repaired job and of its repair, and whether the repair
    helped (`repair_outcome`; None until it finished)."""
    found = record_outcome(original, repair)
    return {"of": original.id, **{key: found[key] for key in
                                  ("metric", "better", "before", "after", "helped")}}


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
    except (RepairRefused, JobNotFound):
        return False
    except SpecInvalid:
        return True
    return True


def _all_tried(ranked: list[Any], base: JobRecord, last: JobRecord) -> RepairRefused:
    return RepairRefused(
        f"the {len(ranked)} fixes suggested for job {base.id} were tried (the last by job "
        f"{last.id}) and none helped; change the spec by hand (the report of each attempt "
        "says what it measured)")
