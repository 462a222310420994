"""The service's processes assembled once: the job store, the tracking store made ready, and
(unless told not to) the dispatcher with its auto-repair. `layerwise serve` builds it in the
app's lifespan, `layerwise dispatcher` alone; both start and stop it the same way."""

from __future__ import annotations

from dataclasses import dataclass

from services.mlflow_internals import check_mlflow_version
from services.settings import Settings
from services.store import JobStore
from services.tracking_store import prepare_tracking_store
from workers.runtime.dispatcher import Dispatcher
from workers.submission.repair import AutoRepair


@dataclass
class Service:
    """What one process of the service runs: its store, and its dispatcher when it has one."""

    settings: Settings
    store: JobStore
    dispatcher: Dispatcher | None

    def start(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.start()

    def stop(self) -> None:
        """The dispatcher first (it writes to the store while it stops), then the store."""
        if self.dispatcher is not None:
            self.dispatcher.stop()
        self.store.engine.dispose()


def build_service(settings: Settings, *, dispatcher: bool = True) -> Service:
    """The store, the tracking store prepared, and (with `dispatcher`) the dispatcher, whose
    finished jobs go to the auto-repair; nothing runs until `start()`."""
    store = JobStore(settings.job_store_url)
    check_mlflow_version()  # an MLflow it was not tested with: says so, writes the slow way
    prepare_tracking_store(settings.tracking_uri)
    if not dispatcher:
        return Service(settings, store, None)
    queue = Dispatcher(store, settings)
    queue.on_finished = AutoRepair(store, settings, queue)  # settings.auto_repair decides
    return Service(settings, store, queue)
