"""Liveness and readiness."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from mlflow.tracking import MlflowClient
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import DispatcherDep, SettingsDep, StoreDep
from services.observability import render
from workers.runtime.dispatcher import Dispatcher

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False)
def metrics(store: StoreDep) -> Response:
    """Prometheus text format: jobs by status, launches, finishes, retries, latencies."""
    return Response(render(store.count_by_status()), media_type=CONTENT_TYPE_LATEST)


@router.get("/readyz", responses={503: {"description": "a dependency is not ready"}})
def readyz(store: StoreDep, settings: SettingsDep, dispatcher: DispatcherDep) -> JSONResponse:
    """Ready when what this process serves with answers: the job store and MLflow, and where
    it runs the dispatcher, Ray and the dispatcher itself (its ticks succeed). A replica
    started with `--no-dispatcher` never talks to Ray, so Ray is not its dependency."""
    probes: list[tuple[str, Callable[[], None]]] = [
        ("store", store.ping), ("mlflow", lambda: _mlflow_ping(settings.tracking_uri))]
    if dispatcher is not None:
        probes += [("ray", _ray_ping), ("dispatcher", lambda: _dispatcher_ping(dispatcher))]
    checks: dict[str, str] = {}
    for name, probe in probes:
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # any failure makes the service not ready
            checks[name] = f"{type(exc).__name__}: {exc}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)


def _dispatcher_ping(dispatcher: Dispatcher) -> None:
    problem = dispatcher.health()
    if problem is not None:
        raise DispatcherStuck(problem)


class DispatcherStuck(RuntimeError):
    """The dispatcher runs but does not move the queue (its ticks fail, or one hangs)."""


def _ray_ping() -> None:
    import ray
    if not ray.is_initialized():
        raise RuntimeError("Ray is not connected")
    if not ray.cluster_resources().get("CPU"):
        raise RuntimeError("the Ray cluster has no CPUs")


def _mlflow_ping(uri: str) -> None:
    MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
