"""The app as Schemathesis should see it: the examples in its schema, OPTIONS and `Allow`
answered (api/openapi_examples.py, api/allow.py).

create_app is meant to install both; until it does, tests install them here, in the place
create_app would: AllowMethods inside the edge middleware. Installing twice is avoided, so
this keeps working once create_app has them.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware import Middleware

from api.allow import AllowMethods
from api.openapi_examples import add_spec_examples


def with_allow_and_examples(app: FastAPI) -> FastAPI:
    """Call before the app serves its first request (Starlette then freezes its middleware)."""
    if not any(middleware.cls is AllowMethods for middleware in app.user_middleware):
        # Appended, it is the innermost: the edge (tokens, body limit, latency) wraps it, as
        # `app.add_middleware(AllowMethods)` placed before the edge's line in create_app does.
        app.user_middleware.append(Middleware(AllowMethods))
    body = app.openapi()["paths"]["/v1/experiments"]["post"]["requestBody"]
    if "examples" not in body["content"]["application/json"]:
        add_spec_examples(app)
    return app
