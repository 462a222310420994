"""2,000 submissions from concurrent clients: every one stored once, none lost."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.utils.server import ServerThread
from tests.utils.settings import local_settings
from tests.utils.specs import mlp_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SUBMISSIONS, CLIENTS = 2000, 8


@pytest.fixture(scope="module")
def paused(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    home: Path = tmp_path_factory.mktemp("load")
    settings = local_settings(home)
    with ServerThread(settings, dispatcher=False) as server:
        yield server


def test_concurrent_submissions_are_each_stored_exactly_once(paused):
    spec = mlp_spec(data={"name": "xor"}, model={"hidden": [4]})
    ids: list[str] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client(worker: int) -> None:
        with httpx.Client(base_url=paused.url, timeout=120) as http:
            for i in range(SUBMISSIONS // CLIENTS):
                # Every tenth request is sent twice with its key: a client retrying.
                key = f"{worker}-{i}"
                response = http.post("/v1/experiments", json=spec,
                                      headers={"Idempotency-Key": key})
                if i % 10 == 0:
                    again = http.post("/v1/experiments", json=spec,
                                      headers={"Idempotency-Key": key})
                    if again.json().get("id") != response.json().get("id"):
                        failures.append(f"retry of {key} made a second job")
                with lock:
                    if response.status_code == 201:
                        ids.append(response.json()["id"])
                    else:
                        failures.append(response.text)

    threads = [threading.Thread(target=client, args=(w,)) for w in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(ids) == len(set(ids)) == SUBMISSIONS
    stored = paused.app.state.store.count_by_status()
    assert stored == {"queued": SUBMISSIONS}
