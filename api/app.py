"""The FastAPI application: routers, error handlers, and the dispatcher in its lifespan."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response

from api.auth import TokenTable
from api.errors import install_error_handlers, problem
from api.routes import catalog, compare, experiments, health, sweeps
from services.dispatcher import Dispatcher
from services.observability import API_LATENCY, configure_logging
from services.settings import Settings
from services.store import JobStore
from services.tracking_store import prepare_tracking_store


def create_app(settings: Settings | None = None, *, dispatcher: bool | None = None) -> FastAPI:
    """The app; its dispatcher starts with it unless `dispatcher=False` (or the setting)."""
    settings = settings or Settings()
    run_dispatcher = settings.dispatcher_enabled if dispatcher is None else dispatcher

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = JobStore(settings.job_store_url)
        prepare_tracking_store(settings.tracking_uri)
        app.state.dispatcher = Dispatcher(app.state.store, settings) if run_dispatcher else None
        if app.state.dispatcher is not None:
            app.state.dispatcher.start()
        try:
            yield
        finally:
            if app.state.dispatcher is not None:
                app.state.dispatcher.stop()
            app.state.store.engine.dispose()

    app = FastAPI(title="Layerwise", version="1", lifespan=lifespan,
                  description="Train and dissect deep neural networks: REST, Ray, MLflow.")
    app.state.settings = settings
    app.state.tokens = TokenTable(settings.api_tokens, settings.admin_tokens)
    app.state.dispatcher = None
    install_error_handlers(app)

    @app.middleware("http")
    async def limit_body_size(request: Request, call_next) -> Response:  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_request_bytes:
            return problem(413, "Payload too large", f"the body has {length} bytes; the "
                           f"limit is {settings.max_request_bytes} (LAYERWISE_MAX_REQUEST_BYTES)")
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        API_LATENCY.labels(request.method, getattr(route, "path", "unmatched"),
                           str(response.status_code)).observe(time.perf_counter() - started)
        return response

    for module in (experiments, sweeps, catalog, health, compare):
        app.include_router(module.router)
    configure_logging()
    return app
