"""A repair is the job's spec with its primary finding's fix applied, linked to the job, and
refused with the reason when there is nothing to repair; `diagnostics.auto_repair` repairs on
its own for that many rounds. On a real job store and the real dry run, without Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecInvalid
from services.contract.tags import STORED
from services.lifecycle import Status
from services.records import JobRecord
from services.settings import Settings
from services.store import JobNotFound, JobStore
from tests.utils.specs import mlp_spec
from workers.submission import repair
from workers.submission.repair import AutoRepair, RepairRefused

SLOW = {"optimizer.lr": 0.01, "training.epochs": 3}


def diagnosis(verdict: str = "not_learning", fix: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    """The contract's shape: the primary finding first, with the fix to try."""
    return {"verdict": verdict, "detected_at_step": 10, "baseline": {},
            "findings": [{"verdict": verdict, "evidence": {}, "layers": [],
                          "fix": SLOW if fix is None else fix},
                         {"verdict": "slow", "evidence": {}, "layers": [],
                          "fix": {"optimizer.lr": 99.0}}]}


def finished(store: JobStore, spec: dict[str, Any], found: dict[str, Any] | None = None, *,
             result: dict[str, Any] | None = None, status: Status = Status.SUCCEEDED,
             link: repair.Attempt | JobRecord | None = None, owner: str = "anonymous"
             ) -> JobRecord:
    """A job in the store as the service leaves it (`link`: a planned repair, or a repair's
    record, whose link it gets; a spec with the old link tags: a record stored before the
    columns)."""
    payload = ExperimentSpec.model_validate(spec, context=STORED).model_dump(mode="json")
    if isinstance(link, JobRecord):
        link = repair.Attempt(ExperimentSpec.model_validate(link.spec), link.repair_of or "",
                              link.repair_candidate or 0, link.parent_run_id)
    record, _ = store.create(spec=payload, spec_hash="h", name=payload["name"],
                             project=payload["project"], owner=owner,
                             repair_of=link.repair_of if link else None,
                             repair_candidate=link.candidate if link else None,
                             parent_run_id=link.parent_run_id if link else None)
    store.update(record.id, mlflow_run_id="run-" + record.id[:6])
    if status == Status.QUEUED:
        return store.get(record.id)
    store.move(record.id, Status.RUNNING)
    if status == Status.RUNNING:
        return store.get(record.id)
    return store.move(record.id, status, diagnosis=found,
                      result=result or {"val/accuracy": 0.5, "val/loss": 1.2})


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")


def test_the_fix_is_applied_by_dotted_path_and_linked_to_the_job(store):
    job = finished(store, mlp_spec(diagnostics={"auto_repair": 2}, tags={"team": "a"}),
                   diagnosis())
    planned = repair.plan(job)
    spec = planned.spec
    assert spec.optimizer.lr == 0.01 and spec.training.epochs == 3  # the primary fix only
    assert spec.optimizer.name == "adam" and spec.model.hidden == [32, 32]  # the rest kept
    assert spec.diagnostics.auto_repair == 1
    assert spec.name == "test-mlp (repair 1)"
    assert spec.tags == {"team": "a"}  # the link is the job's, not the spec's
    assert (planned.repair_of, planned.candidate, planned.parent_run_id) == (
        job.id, 0, job.mlflow_run_id)


def test_a_repair_of_a_repair_counts_its_round_and_links_to_its_own_parent(store):
    """The job is stored as before the link moved to the columns: its spec's link tag still
    reads, and is not copied into the repair's spec."""
    job = finished(store, mlp_spec(name="net (repair 1)",
                                   tags={"layerwise.repair_of": "first", "team": "a"}),
                   diagnosis())
    assert repair.repair_of(job) == "first"
    planned = repair.plan(job)
    spec = planned.spec
    assert spec.name == "net (repair 2)"
    assert planned.repair_of == job.id and spec.tags == {"team": "a"}
    assert spec.diagnostics.auto_repair == 0  # never below 0
    assert repair.repair_name("x" * 250).endswith("x (repair 1)")
    assert len(repair.repair_name("x" * 250)) == 250


@pytest.mark.parametrize("status, found, words", [
    (Status.RUNNING, diagnosis(), "is running"),
    (Status.QUEUED, diagnosis(), "is queued"),
    (Status.FAILED, diagnosis(), "is failed"),
    (Status.SUCCEEDED, None, "has no diagnosis"),
    (Status.SUCCEEDED, diagnosis("healthy", {}), "diagnosed healthy"),
    (Status.SUCCEEDED, diagnosis("vanishing", {}), "suggests no fix"),
    # The shape before fixes: findings are verdict names.
    (Status.SUCCEEDED, {"verdict": "vanishing", "findings": ["vanishing"]}, "suggests no fix"),
    (Status.SUCCEEDED, diagnosis(fix={"optimizer.lr": 0.003}), "already in its spec"),
])
def test_a_job_with_nothing_to_repair_is_refused_saying_why(store, status, found, words):
    job = finished(store, mlp_spec(), found, status=status)
    with pytest.raises(RepairRefused, match=words):
        repair.repaired_spec(job)
    assert not repair.wants_repair(job.model_copy(
        update={"spec": {**job.spec, "diagnostics": {"auto_repair": 3}}}))


def test_an_unfinished_healthy_run_is_repaired_by_the_epochs_it_needs(store):
    """Healthy but still on its way (`needs_more_epochs`): not done, so its repair trains it
    that many epochs longer; at the spec's cap it is refused naming the field and the way
    out."""
    unfinished = {**diagnosis("healthy", {}), "findings": [], "needs_more_epochs": 8}
    job = finished(store, mlp_spec(training={"epochs": 2}), unfinished)
    spec = repair.repaired_spec(job)
    assert spec.training.epochs == 10 and spec.optimizer.lr == 0.003  # nothing else changed
    capped = finished(store, mlp_spec(training={"epochs": repair.MAX_EPOCHS}), unfinished)
    with pytest.raises(RepairRefused, match="training.epochs is at its cap"):
        repair.repaired_spec(capped)
    near = finished(store, mlp_spec(training={"epochs": repair.MAX_EPOCHS - 3}), unfinished)
    assert repair.repaired_spec(near).training.epochs == repair.MAX_EPOCHS


def test_a_fix_that_makes_an_invalid_spec_names_the_field(store):
    job = finished(store, mlp_spec(), diagnosis(fix={"optimizer.lr": -1.0}))
    with pytest.raises(SpecInvalid) as refused:
        repair.repaired_spec(job)
    assert refused.value.errors[0].loc == ("optimizer", "lr")
    assert "optimizer.lr=-1.0" in refused.value.errors[0].msg


def test_before_and_after_on_the_headline_metric(store):
    classifier = finished(store, mlp_spec(), diagnosis(), result={"val/accuracy": 0.4})
    fixed = finished(store, mlp_spec(), diagnosis(), result={"val/accuracy": 0.9})
    assert repair.before_after(classifier, fixed) == {
        "of": classifier.id, "metric": "val/accuracy", "better": "higher", "before": 0.4,
        "after": 0.9, "helped": True}
    regression = finished(store, mlp_spec(), diagnosis(), result={"val/loss": 2.0})
    pending = finished(store, mlp_spec(), None, status=Status.RUNNING)
    assert repair.before_after(regression, pending) == {
        "of": regression.id, "metric": "val/loss", "better": "lower", "before": 2.0,
        "after": None, "helped": None}


def test_auto_repair_goes_through_the_submission_path_and_stops_after_n_rounds(
        store, settings: Settings):
    """Each round halves the rate (as a fix computed from the spec would); the real dry run
    checks each repair, and the chain ends when the rounds are used up."""
    auto = AutoRepair(store, settings, cluster=None)
    job = finished(store, mlp_spec(diagnostics={"auto_repair": 2}),
                   diagnosis(fix={"optimizer.lr": 0.0015}))
    chain = [job]
    while repair.wants_repair(job, store):
        made = auto.repair_now(job)
        assert made is not None and made.status == "queued"
        assert auto.repair_now(job) == made  # one automatic repair per job
        lr = made.spec["optimizer"]["lr"]
        # Each round helps: three quarters of the way left to perfect accuracy.
        better = {"val/accuracy": 1.0 - 0.5 / 4 ** len(chain)}
        job = finished(store, made.spec, diagnosis(fix={"optimizer.lr": lr / 2}), result=better,
                       link=made)
        chain.append(job)
    assert [j.spec["diagnostics"]["auto_repair"] for j in chain] == [2, 1, 0]
    assert [j.name for j in chain] == ["test-mlp", "test-mlp (repair 1)", "test-mlp (repair 2)"]
    assert repair.repair_of(chain[2]) == chain[1].id


def test_an_auto_repair_the_submission_refuses_is_logged_not_raised(store, settings, caplog):
    job = finished(store, mlp_spec(diagnostics={"auto_repair": 1}),
                   diagnosis(fix={"training.epochs": 10**9}))
    assert AutoRepair(store, settings, cluster=None).repair_now(job) is None
    assert "training.epochs" in caplog.text and job.id in caplog.text


def ranked(*fixes: dict[str, Any], verdict: str = "not_learning") -> dict[str, Any]:
    found = diagnosis(verdict, fixes[0])
    found["findings"][0]["alternatives"] = list(fixes[1:])
    return found


def attempt(store: JobStore, record: JobRecord, *, accuracy: float | None,
            verdict: str = "not_learning", status: Status = Status.SUCCEEDED,
            baseline: dict[str, Any] | None = None) -> JobRecord:
    """The repair of `record` submitted and finished with `accuracy` and `verdict`."""
    planned = repair.plan(record, store)
    result = {"val/accuracy": accuracy} if accuracy is not None else {"val/loss": None}
    found = {**diagnosis(verdict, {"optimizer.lr": 0.05}), "baseline": baseline or {}}
    return finished(store, planned.spec.model_dump(mode="json"), found, result=result,
                    status=status, link=planned)


def test_a_repair_that_did_not_help_is_followed_by_the_next_candidate_of_the_first(store):
    """AutoTrainer's try-and-check: candidates in order, each on the first job's spec, until
    one helps; then the chain stops, or goes on from the one that helped."""
    first = finished(store, mlp_spec(diagnostics={"auto_repair": 4}),
                     ranked({"optimizer.lr": 0.1}, {"optimizer.lr": 0.01},
                            {"optimizer.name": "sgd", "optimizer.lr": 0.1}),
                     result={"val/accuracy": 0.30})
    one = attempt(store, first, accuracy=0.31)  # +0.01: did not help
    assert one.spec["optimizer"]["lr"] == 0.1
    assert (one.repair_of, one.repair_candidate) == (first.id, 0)
    two = attempt(store, one, accuracy=0.29)  # the second candidate, on the first's spec
    assert two.spec["optimizer"]["lr"] == 0.01 and two.spec["optimizer"]["name"] == "adam"
    assert (two.repair_of, two.repair_candidate) == (first.id, 1)
    assert two.parent_run_id == first.mlflow_run_id
    assert two.name == "test-mlp (repair 2)" and two.spec["diagnostics"]["auto_repair"] == 2
    three = attempt(store, two, accuracy=0.7)  # the third helps: 4/7 of the way to 1.0
    assert three.spec["optimizer"] == {**three.spec["optimizer"], "name": "sgd", "lr": 0.1}
    # It helped but is not healthy: its own diagnosis's fix comes next, on its own spec.
    four = repair.plan(three, store)
    assert four.repair_of == three.id and four.spec.optimizer.lr == 0.05
    assert four.candidate == 0


def test_when_every_candidate_was_tried_the_repair_is_refused_saying_so(store):
    first = finished(store, mlp_spec(diagnostics={"auto_repair": 3}),
                     ranked({"optimizer.lr": 0.1}, {"optimizer.lr": 0.01}),
                     result={"val/accuracy": 0.30})
    one = attempt(store, first, accuracy=0.30)
    two = attempt(store, one, accuracy=0.30)
    with pytest.raises(RepairRefused, match="2 fixes suggested .* none helped"):
        repair.repaired_spec(two, store)
    assert not repair.wants_repair(two, store)


def test_a_run_that_diverged_is_repaired_and_a_repair_with_a_metric_helped(store):
    diverged = finished(store, mlp_spec(diagnostics={"auto_repair": 2}),
                        ranked({"optimizer.lr": 0.0003}, {"optimizer.lr": 0.0001},
                               verdict="diverged"),
                        result={"error": "the loss is nan"}, status=Status.FAILED)
    assert repair.wants_repair(diverged, store)
    # A metric now, far from the class prior (0.1): that helped (the definition's own
    # cases are tests/workers/submission/test_repair_semantics.py).
    one = attempt(store, diverged, accuracy=0.8, baseline={"accuracy": 0.1})
    assert repair.repair_helped(diverged, one)
    assert repair.plan(one, store).repair_of == one.id


def test_a_repair_drops_the_expected_problem_and_keeps_the_metric_bounds(store):
    job = finished(store, mlp_spec(expect=[{"diagnosis": "not_learning"},
                                           {"metric": "val/accuracy", ">=": 0.8}]),
                   diagnosis())
    spec = repair.repaired_spec(job, store)
    assert [e.model_dump(mode="json", exclude_none=True) for e in spec.expect] == [
        {"metric": "val/accuracy", ">=": 0.8}]


def test_a_repair_reads_the_job_it_repairs_as_its_caller(store, settings):
    """bob's job linked to alice's (as an old record's tags could link it) reaches nothing of
    hers: the repair, the plan and the dispatcher's hook all read as bob."""
    alices = finished(store, mlp_spec(project="alice-proj", tags={"secret": "s"}),
                      ranked({"optimizer.lr": 0.1}, {"optimizer.lr": 0.01}), owner="alice")
    bobs = finished(store, mlp_spec(tags={"layerwise.repair_of": alices.id}),
                    diagnosis(), result={"val/accuracy": 0.1}, owner="bob")
    for call in (lambda: repair.plan(bobs, store),
                 lambda: repair.submit_repair(bobs, store=store, settings=settings,
                                              owner="bob", cluster=None, idempotency_key=None),
                 lambda: repair.submit_repair(alices, store=store, settings=settings,
                                              owner="bob", cluster=None, idempotency_key=None)):
        with pytest.raises(JobNotFound):
            call()
    assert not repair.wants_repair(bobs.model_copy(update={"spec": {
        **bobs.spec, "diagnostics": {"auto_repair": 1}}}), store)
    # An admin reads every job, as the routes let one.
    made, _ = repair.submit_repair(bobs, store=store, settings=settings, owner="root",
                                   admin=True, cluster=None, idempotency_key=None)
    assert made.repair_of == alices.id and made.owner == "root"


def test_asking_again_returns_the_repair_that_exists_until_it_is_cancelled(store_url, settings):
    store = JobStore(store_url)  # the lookup by link on both backends
    first = finished(store, mlp_spec(), ranked({"optimizer.lr": 0.1}, {"optimizer.lr": 0.01}),
                     result={"val/accuracy": 0.3})

    def ask() -> tuple[JobRecord, bool]:
        return repair.submit_repair(first, store=store, settings=settings, owner="anonymous",
                                    cluster=None, idempotency_key=None)

    made, created = ask()
    assert created and (made.repair_of, made.repair_candidate) == (first.id, 0)
    assert made.parent_run_id == first.mlflow_run_id
    assert ask() == (made, False)
    store.move(made.id, Status.RUNNING)
    store.move(made.id, Status.SUCCEEDED, diagnosis=diagnosis(), result={"val/accuracy": 0.3})
    # Finished without helping: asking again tries the next candidate, once; asking again,
    # for the job or for its repair, gives that job.
    following, created = ask()
    assert created and following.repair_candidate == 1 and following.repair_of == first.id
    assert ask() == (following, False)
    done = store.get(made.id)
    assert repair.submit_repair(done, store=store, settings=settings, owner="anonymous",
                                cluster=None, idempotency_key=None)[0].id == following.id
    store.move(following.id, Status.CANCELLED)
    again, created = repair.submit_repair(done, store=store, settings=settings,
                                          owner="anonymous", cluster=None, idempotency_key=None)
    assert created and again.id != following.id  # a cancelled repair does not count


def test_replicas_asked_for_one_repair_at_once_make_one_job(store_url, settings, monkeypatch):
    """Each API replica has its own lock; across them the repair's own idempotency key, unique
    per owner in the store, keeps it to one job. Replicas are stood for by threads that share
    no lock."""
    import contextlib
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(repair, "_REPAIRING", [contextlib.nullcontext()])
    store = JobStore(store_url)
    first = finished(store, mlp_spec(), ranked({"optimizer.lr": 0.1}, {"optimizer.lr": 0.01}),
                     result={"val/accuracy": 0.3})
    replicas = [JobStore(store_url) for _ in range(4)]

    def ask(replica: JobStore) -> str:
        return repair.submit_repair(first, store=replica, settings=settings, owner="anonymous",
                                    cluster=None, idempotency_key=None)[0].id

    with ThreadPoolExecutor(4) as pool:
        made = set(pool.map(ask, replicas))
    assert len(made) == 1
    assert [r.id for r in store.list(limit=50)[0] if r.repair_of == first.id] == list(made)
