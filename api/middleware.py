"""The body-size limit and the API latency histogram, as a plain ASGI middleware.

Starlette's `@app.middleware("http")` runs each request through extra tasks and stream
wrappers, about a millisecond of a submission's few; this class only watches the messages go by.
"""

from __future__ import annotations

import time
from typing import Any

from api.errors import problem
from services.observability import API_LATENCY

Scope = dict[str, Any]


class LimitAndTime:
    def __init__(self, app: Any, *, max_request_bytes: int):
        self.app, self.max_request_bytes = app, max_request_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_request_bytes:
            response = problem(413, "Payload too large", (
                f"the body has {int(length)} bytes; the limit is {self.max_request_bytes} "
                "(LAYERWISE_MAX_REQUEST_BYTES)"))
            await response(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_and_note(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            API_LATENCY.labels(scope["method"], getattr(route, "path", "unmatched"),
                               str(status[0])).observe(time.perf_counter() - started)
