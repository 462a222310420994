"""The FastAPI application: routers, error handlers, and the dispatcher in its lifespan (or
none: one of several API processes, `create_replica_app`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import openapi_limits
from api.allow import AllowMethods
from api.auth import TokenTable
from api.errors import install_error_handlers
from api.middleware import EdgeGuard
from api.openapi_examples import add_spec_examples
from api.routes import catalog, compare, experiments, health, logs, sweeps
from api.service import build_service
from services.observability import configure_logging
from services.settings import Settings


def create_app(settings: Settings | None = None, *, dispatcher: bool | None = None) -> FastAPI:
    """The app; its dispatcher starts with it unless `dispatcher=False` (or the setting)."""
    settings = settings or Settings()
    run_dispatcher = settings.dispatcher_enabled if dispatcher is None else dispatcher

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = build_service(settings, dispatcher=run_dispatcher)
        app.state.store, app.state.dispatcher = service.store, service.dispatcher
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="Layerwise", version="1", lifespan=lifespan,
                  description=openapi_limits.description())
    app.state.settings = settings
    app.state.tokens = TokenTable(settings.api_tokens, settings.admin_tokens)
    app.state.dispatcher = None
    install_error_handlers(app)

    # The last added runs first: the edge (tokens, body limit, errors, latency) wraps the
    # answers AllowMethods gives for OPTIONS, HEAD and methods a path lacks.
    app.add_middleware(AllowMethods)
    app.add_middleware(EdgeGuard, max_request_bytes=settings.max_request_bytes,
                       tokens=app.state.tokens)

    for module in (experiments, sweeps, catalog, health, compare, logs):
        app.include_router(module.router)
    add_spec_examples(app)  # examples/ as OpenAPI examples of the two submission bodies
    configure_logging()
    return app


def create_replica_app() -> FastAPI:
    """The app of each of several API processes on one port (`layerwise serve --workers N`,
    uvicorn's factory): no dispatcher of its own; the one dispatcher runs in a process beside
    them (`api/cli/api_processes.py`), on the same store."""
    return create_app(dispatcher=False)
