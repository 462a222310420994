"""The dispatcher thread is the only writer of its in-flight table, however many cancels come
in at once from request threads; the cancelled jobs' Ray tasks are still stopped."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import ray

from api.routes.experiments import cancel_experiment
from services.lifecycle import Status
from services.store import JobStore
from tests.utils.specs import mlp_spec
from workers.runtime.dispatcher import Dispatcher, InFlight

pytestmark = [pytest.mark.e2e]
CANCELS = 16


class WriterRecording(dict):
    """A dict that notes the thread of every change made to it."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.writers: set[str] = set()

    def _note(self) -> None:
        self.writers.add(threading.current_thread().name)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._note()
        super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        self._note()
        super().__delitem__(key)

    def pop(self, *args: Any) -> Any:
        self._note()
        return super().pop(*args)

    def popitem(self) -> Any:
        self._note()
        return super().popitem()

    def clear(self) -> None:
        self._note()
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._note()
        super().update(*args, **kwargs)

    def setdefault(self, *args: Any) -> Any:
        self._note()
        return super().setdefault(*args)


@ray.remote(num_cpus=0, resources={"layerwise-test-never": 1})
def _never_scheduled() -> None:
    """Pending for ever (no node has the resource): a running job's task without a process."""


def test_concurrent_cancels_leave_the_in_flight_table_to_the_dispatcher_thread(
        ray_cluster, settings):
    store = JobStore(settings.job_store_url)
    flights = {}
    for _ in range(CANCELS):
        store.create(spec=mlp_spec(), spec_hash="h", name="held", project="tests")
        record = store.claim_next()
        flights[record.id] = InFlight(record, _never_scheduled.remote(), cpus=0.0, gpus=0.0)
    dispatcher = Dispatcher(store, settings)
    dispatcher.in_flight = WriterRecording(flights)
    dispatcher.start()
    try:
        barrier = threading.Barrier(CANCELS)

        def cancel(job_id: str) -> Status:
            job = store.get(job_id)
            barrier.wait()  # every request at once
            return cancel_experiment(job=job, store=store, dispatcher=dispatcher).status

        with ThreadPoolExecutor(CANCELS, thread_name_prefix="request") as pool:
            statuses = list(pool.map(cancel, flights))
        assert statuses == [Status.CANCELLED] * CANCELS
        # Each answer came after the dispatcher had stopped that job's task.
        assert dispatcher.in_flight == {}
        assert dispatcher.in_flight.writers == {"dispatcher"}
    finally:
        dispatcher.stop()
    for flight in flights.values():
        with pytest.raises(ray.exceptions.TaskCancelledError):
            ray.get(flight.ref, timeout=30)
