"""The queue's policy (`services.queue_order`): strict priority, then the owner with the smallest
dominant share (Dominant Resource Fairness), ties in the queue's order; `fifo` ignores owners;
a job that does not fit is passed over for one that does. Pure: job records built in memory."""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from services.queue_order import Shares, next_job
from services.records import JobRecord, Progress

_SEQ = itertools.count()
_T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _job(owner: str, *, priority: int = 0, cpus: float = 1.0, gpus: float = 0.0) -> JobRecord:
    """A queued experiment; each call is submitted after the previous one."""
    n = next(_SEQ)
    return JobRecord(
        id=f"{owner}-{n}", job_type="experiment", name=f"job-{n}", project="p",
        status="queued", spec={"resources": {"cpus": cpus, "gpus": gpus}},
        spec_hash=f"{n:016x}", priority=priority, attempts=0, max_attempts=3, owner=owner,
        sweep_id=None, param_count=None, created_at=_T0 + timedelta(seconds=n),
        started_at=None, finished_at=None, progress=Progress(), error=None, result=None,
        diagnosis=None, mlflow_run_id=None, mlflow_experiment_id=None)


def _queue_order(jobs: list[JobRecord]) -> list[JobRecord]:
    """The order queue_heads returns: priority, then submission (a stable sort)."""
    return sorted(jobs, key=lambda record: -record.priority)


def _ask(record: JobRecord) -> tuple[float, float]:
    resources = record.spec["resources"]
    return float(resources["cpus"]), float(resources["gpus"])


def _fits_in(cpus: float, gpus: float) -> Callable[[JobRecord], bool]:
    def fits(record: JobRecord) -> bool:
        asked_cpus, asked_gpus = _ask(record)
        return asked_cpus <= cpus and asked_gpus <= gpus
    return fits


def _anything(_record: JobRecord) -> bool:
    return True


# -- Shares ------------------------------------------------------------------------------------
def test_a_share_is_the_larger_of_the_cpu_and_the_gpu_fraction() -> None:
    shares = Shares(cpus=100, gpus=4)
    shares.add("cpu-heavy", 40, 0)
    shares.add("gpu-heavy", 4, 2)
    shares.add("both", 25, 1)
    assert shares.of("cpu-heavy") == pytest.approx(0.40)
    assert shares.of("gpu-heavy") == pytest.approx(0.50)  # 2 of 4 GPUs, though 4 of 100 CPUs
    assert shares.of("both") == pytest.approx(0.25)  # the max of 0.25 and 0.25, not the sum
    assert shares.of("nobody") == 0.0


def test_shares_add_up_and_give_back() -> None:
    shares = Shares(cpus=10, gpus=2)
    shares.add("alice", 2, 0)
    shares.add("alice", 3, 1)
    assert shares.held["alice"] == (5, 1)
    assert shares.of("alice") == pytest.approx(0.5)
    shares.add("alice", -5, -1)  # what the launching gives back for a job that did not start
    assert shares.of("alice") == 0.0


def test_a_cluster_without_gpus_divides_by_nothing() -> None:
    shares = Shares(cpus=8, gpus=0)
    shares.add("alice", 4, 0)
    shares.add("bob", 2, 1)  # a GPU held on a cluster said to have none: the CPUs count
    assert shares.of("alice") == pytest.approx(0.5)
    assert shares.of("bob") == pytest.approx(0.25)
    empty = Shares(cpus=0, gpus=0)
    empty.add("alice", 3, 1)
    assert empty.of("alice") == 0.0
    first, second = _job("alice"), _job("bob")
    assert next_job([first, second], empty, _anything) is first
    assert next_job([first, second], shares, _anything) is second  # bob holds less


# -- priority --------------------------------------------------------------------------------
def test_a_higher_priority_goes_first_however_large_its_owners_share() -> None:
    shares = Shares(cpus=12, gpus=0)
    shares.add("alice", 11, 0)  # alice holds nearly everything, bob nothing
    bobs = _job("bob", priority=0)
    alices = _job("alice", priority=1)
    candidates = _queue_order([bobs, alices])
    assert next_job(candidates, shares, _anything) is alices
    assert next_job(candidates, None, _anything) is alices


def test_priority_is_strict_across_several_levels_and_owners() -> None:
    shares = Shares(cpus=100, gpus=0)
    shares.add("alice", 90, 0)
    shares.add("bob", 5, 0)
    jobs = [_job("carol", priority=0), _job("bob", priority=1), _job("alice", priority=2),
            _job("carol", priority=1)]
    candidates = _queue_order(jobs)
    order = []
    while candidates:
        chosen = next_job(candidates, shares, _anything)
        assert chosen is not None
        order.append(chosen)
        candidates.remove(chosen)
    # priority 2 first however much alice holds; within priority 1, carol (holding nothing)
    # before bob, though bob's job is older
    assert [r.id for r in order] == [jobs[2].id, jobs[3].id, jobs[1].id, jobs[0].id]


def test_a_higher_priority_that_does_not_fit_lets_a_lower_one_that_fits_go() -> None:
    shares = Shares(cpus=8, gpus=1)
    big = _job("alice", priority=5, gpus=2)
    small = _job("bob", priority=0, cpus=1)
    candidates = _queue_order([small, big])
    assert next_job(candidates, shares, _fits_in(8, 1)) is small
    assert next_job(candidates, None, _fits_in(8, 1)) is small
    assert next_job(candidates, shares, _fits_in(8, 2)) is big


# -- the dominant share ------------------------------------------------------------------------
def test_the_owner_with_the_smaller_dominant_share_goes_first() -> None:
    # 100 CPUs, 4 GPUs. cpu-heavy holds 30 CPUs (dominant share 0.30); gpu-heavy holds 2 CPUs
    # and 2 GPUs (dominant share 0.50, by its GPUs). Counted in CPUs alone, gpu-heavy would
    # hold less and go first.
    shares = Shares(cpus=100, gpus=4)
    shares.add("cpu-heavy", 30, 0)
    shares.add("gpu-heavy", 2, 2)
    gpu_job = _job("gpu-heavy", gpus=1)  # submitted first
    cpu_job = _job("cpu-heavy", cpus=4)
    assert next_job([gpu_job, cpu_job], shares, _anything) is cpu_job
    # once cpu-heavy holds more than half the CPUs, gpu-heavy's turn
    shares.add("cpu-heavy", 25, 0)
    assert next_job([gpu_job, cpu_job], shares, _anything) is gpu_job


def test_the_dominant_share_is_the_maximum_not_the_sum() -> None:
    # alice: 0.3 of the CPUs and 0.3 of the GPUs (dominant 0.3, sum 0.6);
    # bob: 0.5 of the CPUs and none of the GPUs (dominant 0.5, sum 0.5)
    shares = Shares(cpus=10, gpus=10)
    shares.add("alice", 3, 3)
    shares.add("bob", 5, 0)
    bobs, alices = _job("bob"), _job("alice")
    assert next_job([bobs, alices], shares, _anything) is alices


def test_an_owner_holding_nothing_goes_before_one_holding_anything() -> None:
    shares = Shares(cpus=1000, gpus=8)
    shares.add("alice", 1, 0)  # a thousandth of the cluster
    alices = [_job("alice") for _ in range(5)]
    newcomer = _job("bob")  # submitted after all of alice's
    assert next_job([*alices, newcomer], shares, _anything) is newcomer


def test_equal_shares_keep_the_queue_order() -> None:
    # equal shares by different resources: 6 of 12 CPUs, 2 of 4 GPUs
    shares = Shares(cpus=12, gpus=4)
    shares.add("zed", 6, 0)
    shares.add("amy", 1, 2)
    zeds, amys = _job("zed"), _job("amy")
    assert next_job([zeds, amys], shares, _anything) is zeds  # older, not first by name
    assert next_job([amys, zeds], shares, _anything) is amys  # the order given decides
    # with nothing held, too
    nothing = Shares(cpus=12, gpus=4)
    jobs = [_job(owner) for owner in ("carol", "alice", "bob", "alice")]
    assert next_job(jobs, nothing, _anything) is jobs[0]


def test_one_owners_jobs_go_in_queue_order() -> None:
    shares = Shares(cpus=8, gpus=0)
    jobs = [_job("alice") for _ in range(4)]
    assert next_job(jobs, shares, _anything) is jobs[0]
    assert next_job(jobs[1:], shares, _anything) is jobs[1]


def test_the_candidates_are_not_reordered_in_place() -> None:
    shares = Shares(cpus=8, gpus=0)
    shares.add("alice", 4, 0)
    candidates = [_job("alice"), _job("bob"), _job("alice")]
    before = list(candidates)
    assert next_job(candidates, shares, _anything) is before[1]
    assert candidates == before
    assert next_job(iter(candidates), shares, _anything) is before[1]  # any iterable


# -- fifo --------------------------------------------------------------------------------------
def test_fifo_ignores_owners() -> None:
    alices = [_job("alice") for _ in range(3)]
    bobs = _job("bob")
    assert next_job([*alices, bobs], None, _anything) is alices[0]
    assert next_job([bobs, *alices], None, _anything) is bobs


# -- backfill ----------------------------------------------------------------------------------
def test_a_job_that_does_not_fit_is_passed_over_for_one_that_fits() -> None:
    big = _job("alice", cpus=4, gpus=2)
    small = _job("alice", cpus=1)
    assert next_job([big, small], None, _fits_in(8, 1)) is small
    assert next_job([big, small], Shares(cpus=8, gpus=2), _fits_in(8, 1)) is small
    assert next_job([big, small], None, _fits_in(0.5, 0)) is None
    assert next_job([], Shares(cpus=8, gpus=2), _anything) is None


def test_backfill_keeps_the_share_order() -> None:
    # alice holds nothing, bob half the cluster: alice's first job does not fit, her next one
    # does, and it goes before bob's older job that fits as well
    shares = Shares(cpus=8, gpus=2)
    shares.add("bob", 4, 0)
    alices_big = _job("alice", gpus=2)
    bobs_small = _job("bob")
    alices_small = _job("alice")
    chosen = next_job([alices_big, bobs_small, alices_small], shares, _fits_in(4, 1))
    assert chosen is alices_small
    # when none of the smallest share's jobs fits, the next owner's
    assert next_job([alices_big, bobs_small], shares, _fits_in(4, 1)) is bobs_small


# -- a simulated dispatcher --------------------------------------------------------------------
SLOTS = 12


def _heads(queued: dict[str, deque[JobRecord]], per_owner: int) -> list[JobRecord]:
    """Each owner's next `per_owner` queued jobs, in the queue's order (as queue_heads)."""
    heads = [record for jobs in queued.values() for record in itertools.islice(jobs, per_owner)]
    return sorted(heads, key=lambda record: int(record.id.rsplit("-", 1)[1]))


def _simulate(queued: dict[str, deque[JobRecord]], shares: Shares | None, capacity: Shares,
              observe: Callable[[Counter[str], dict[str, deque[JobRecord]]], None]
              ) -> list[JobRecord]:
    """Launch what fits, then finish the oldest running job, until every job has run. Returns
    the jobs in launch order; `observe` sees the count each owner runs after every fill."""
    running: deque[JobRecord] = deque()
    launched: list[JobRecord] = []
    held: Counter[str] = Counter()
    free = [capacity.cpus, capacity.gpus]

    def fits(record: JobRecord) -> bool:
        cpus, gpus = _ask(record)
        return cpus <= free[0] and gpus <= free[1]

    while any(queued.values()) or running:
        while True:
            record = next_job(_heads(queued, 16), shares, fits)
            if record is None:
                break
            queued[record.owner].remove(record)
            cpus, gpus = _ask(record)
            free[0], free[1] = free[0] - cpus, free[1] - gpus
            if shares is not None:
                shares.add(record.owner, cpus, gpus)
            held[record.owner] += 1
            running.append(record)
            launched.append(record)
        observe(held, queued)
        done = running.popleft()  # jobs finish in the order they started
        cpus, gpus = _ask(done)
        free[0], free[1] = free[0] + cpus, free[1] + gpus
        if shares is not None:
            shares.add(done.owner, -cpus, -gpus)
        held[done.owner] -= 1
    return launched


def _three_owners() -> dict[str, deque[JobRecord]]:
    """300 of alice's jobs submitted first, then bob's 100 and carol's 20 interleaved."""
    queued: dict[str, deque[JobRecord]] = {"alice": deque(), "bob": deque(), "carol": deque()}
    for _ in range(300):
        queued["alice"].append(_job("alice"))
    for i in range(100):
        queued["bob"].append(_job("bob"))
        if i % 5 == 0:
            queued["carol"].append(_job("carol"))
    return queued


def test_fair_keeps_every_owner_within_one_slot_of_the_others() -> None:
    queued = _three_owners()
    submitted = {owner: [r.id for r in jobs] for owner, jobs in queued.items()}
    checks = 0

    def observe(held: Counter[str], queued: dict[str, deque[JobRecord]]) -> None:
        nonlocal checks
        assert sum(held.values()) <= SLOTS
        with_queued = [owner for owner, jobs in queued.items() if jobs]
        if len(with_queued) == len(queued):
            counts = [held[owner] for owner in queued]
            assert sum(counts) == SLOTS, counts  # nobody's job waits on a free slot
            assert max(counts) - min(counts) <= 1, counts
            checks += 1
        elif with_queued:  # those still queued share what the others leave, as evenly
            assert sum(held.values()) == SLOTS
            counts = [held[owner] for owner in with_queued]
            assert max(counts) - min(counts) <= 1, held

    launched = _simulate(queued, Shares(cpus=SLOTS, gpus=0), Shares(cpus=SLOTS, gpus=0),
                         observe)
    assert checks >= 20  # carol's 20 jobs ran beside the others' for at least 20 rounds
    assert Counter(r.owner for r in launched) == {"alice": 300, "bob": 100, "carol": 20}
    for owner, ids in submitted.items():  # one owner's jobs in submission order
        assert [r.id for r in launched if r.owner == owner] == ids
    # carol, last to submit and with the fewest jobs, was not left behind alice's 300
    first_carol = next(i for i, r in enumerate(launched) if r.owner == "carol")
    assert first_carol < 3


def test_fifo_lets_the_first_owner_take_every_slot() -> None:
    queued = _three_owners()
    rounds = 0

    def observe(held: Counter[str], queued: dict[str, deque[JobRecord]]) -> None:
        nonlocal rounds
        if len(queued["alice"]) > 0:
            assert held == {"alice": SLOTS}
            rounds += 1

    launched = _simulate(queued, None, Shares(cpus=SLOTS, gpus=0), observe)
    assert rounds >= 280
    assert [r.owner for r in launched[:300]] == ["alice"] * 300


def test_fair_equalises_dominant_shares_between_cpu_and_gpu_owners() -> None:
    # 12 CPUs and 4 GPUs: a GPU job (1 CPU, 1 GPU) takes a quarter of the GPUs, a CPU job a
    # twelfth of the CPUs. Equal dominant shares: 3 GPU jobs (0.75) beside 9 CPU jobs (0.75).
    def owners() -> dict[str, deque[JobRecord]]:
        queued: dict[str, deque[JobRecord]] = {"gpu": deque(), "cpu": deque()}
        for _ in range(40):
            queued["gpu"].append(_job("gpu", cpus=1, gpus=1))
        for _ in range(40):
            queued["cpu"].append(_job("cpu", cpus=1))
        return queued

    seen: list[Counter[str]] = []

    def observe(held: Counter[str], queued: dict[str, deque[JobRecord]]) -> None:
        if queued["gpu"] and queued["cpu"]:
            seen.append(Counter(held))

    _simulate(owners(), Shares(cpus=12, gpus=4), Shares(cpus=12, gpus=4), observe)
    assert seen[0] == {"gpu": 3, "cpu": 9}
    for held in seen:  # a GPU job's share is three CPU jobs': within one GPU job's worth
        assert abs(held["gpu"] / 4 - held["cpu"] / 12) <= 0.25 + 1e-9, held

    seen.clear()
    _simulate(owners(), None, Shares(cpus=12, gpus=4), observe)
    assert seen[0] == {"gpu": 4, "cpu": 8}  # fifo: the GPU owner, first, takes every GPU
