"""Submissions beyond what the dry-run pool takes at once are refused with 503 and
Retry-After, not queued without bound; the dry runs themselves run a bounded number at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.utils.server import ServerThread
from tests.utils.settings import local_settings
from tests.utils.specs import mlp_spec
from workers.submission.dry_run import DRY_RUNS, DryRunPool, DryRunsBusy


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    settings = local_settings(tmp_path_factory.mktemp("pool"))
    with ServerThread(settings, dispatcher=False) as server:  # routing only: no Ray needed
        yield server


def test_a_submission_beyond_the_pool_answers_503_with_retry_after(api, monkeypatch):
    spec = mlp_spec(name="pool", data={"name": "xor"}, model={"hidden": [5]})
    monkeypatch.setattr(DRY_RUNS, "limit", 1)  # one submission admitted at a time
    with api.http() as http:
        with DRY_RUNS.admitted():  # the one admitted submission, still being checked
            refused = http.post("/v1/experiments", json=spec,
                                headers={"Idempotency-Key": "pool-1"})
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert "nothing was stored" in refused.json()["detail"]
        assert http.get("/v1/experiments").json()["count"] == 0
        accepted = http.post("/v1/experiments", json=spec, headers={"Idempotency-Key": "pool-1"})
        assert accepted.status_code == 201, accepted.text
        assert http.get("/v1/experiments").json()["count"] == 1


def _all_inside_at_once(running: int, threads: int) -> bool:
    """Whether `threads` dry runs, started together on a pool of `running` slots, are all
    inside a slot at the same moment: each waits inside its slot on a barrier of `threads`,
    which is met only when they all are; one kept outside breaks it after the timeout."""
    pool = DryRunPool(running=running, waiting=threads)
    barrier = threading.Barrier(threads, timeout=1.0)
    met: list[bool] = []

    def dry_run() -> None:
        with pool.slot():
            try:
                barrier.wait()
                met.append(True)
            except threading.BrokenBarrierError:
                met.append(False)

    started = [threading.Thread(target=dry_run) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    return all(met) and len(met) == threads


def test_the_pool_runs_at_most_its_slots_at_once_and_admits_a_bounded_number():
    assert _all_inside_at_once(running=2, threads=2)  # two slots: both run together
    assert not _all_inside_at_once(running=1, threads=2)  # one slot: the second waits
    assert not _all_inside_at_once(running=2, threads=3)

    pool = DryRunPool(running=1, waiting=1)
    with pool.admitted(), pool.admitted():
        with pytest.raises(DryRunsBusy), pool.admitted():
            pass
    with pool.admitted():  # released: room again
        pass
