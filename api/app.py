"""The FastAPI application: routers, error handlers, and the dispatcher in its lifespan."""

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
from api.routes import catalog, compare, experiments, health, sweeps
from services.mlflow_internals import check_mlflow_version
from services.observability import configure_logging
from services.settings import Settings
from services.store import JobStore
from services.tracking_store import prepare_tracking_store
from workers.runtime.dispatcher import Dispatcher
from workers.submission.repair import AutoRepair


def create_app(settings: Settings | None = None, *, dispatcher: bool | None = None) -> FastAPI:
    """The app; its dispatcher starts with it unless `dispatcher=False` (or the setting)."""
    settings = settings or Settings()
    run_dispatcher = settings.dispatcher_enabled if dispatcher is None else dispatcher

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = JobStore(settings.job_store_url)
        check_mlflow_version()  # an MLflow it was not tested with: says so, writes the slow way
        prepare_tracking_store(settings.tracking_uri)
        app.state.dispatcher = Dispatcher(app.state.store, settings) if run_dispatcher else None
        if app.state.dispatcher is not None:
            app.state.dispatcher.on_finished = AutoRepair(app.state.store, settings,
                                                           app.state.dispatcher)
            app.state.dispatcher.start()
        try:
            yield
        finally:
            if app.state.dispatcher is not None:
                app.state.dispatcher.stop()
            app.state.store.engine.dispose()

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

    for module in (experiments, sweeps, catalog, health, compare):
        app.include_router(module.router)
    add_spec_examples(app)  # examples/ as OpenAPI examples of the two submission bodies
    configure_logging()
    return app
