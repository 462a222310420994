"""The API's edge, as one plain ASGI middleware: who may send a body, how large it may be, what
a client sees of an unexpected error, and the latency histogram.

- With tokens configured, a `/v1` request without a known bearer token is refused (401) before
  one byte of its body is read: an anonymous client cannot make the API buffer anything.
- A request with more than one Authorization header is refused (400), token or none.
- The body limit holds for every transfer encoding: a declared Content-Length over the limit
  is refused at once, and the bytes actually received are counted as they arrive (chunked
  bodies declare no length), so at most the limit is ever held.
- An unexpected error answers 500 problem+json with an error id and nothing of the exception;
  the traceback goes to the log under that id. Answering here, rather than in Starlette's
  outermost error middleware (which re-raises to the server), keeps the connection open.

Starlette's `@app.middleware("http")` runs each request through extra tasks and stream
wrappers, a large share of a submission's time (BENCHMARKS.md); this class only watches
messages go by.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.types import Message

from api.auth import Principal, TokenTable
from api.errors import problem, unexpected_error
from services.observability import API_LATENCY

Scope = dict[str, Any]


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes the limit. An HTTPException, so that FastAPI's
    body reader lets it through (it turns other errors into a 400) and the app's handler
    answers it as problem+json."""

    def __init__(self, limit: int):
        super().__init__(413, (
            f"the body is larger than the limit of {limit} bytes (LAYERWISE_MAX_REQUEST_BYTES); "
            "send a smaller spec"))


class EdgeGuard:
    def __init__(self, app: Any, *, max_request_bytes: int, tokens: TokenTable):
        self.app, self.max_request_bytes, self.tokens = app, max_request_bytes, tokens

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send_and_note)
                return
            await self.app(scope, self._counting(receive), send_and_note)
        except Exception as exc:
            if status[0]:  # the response has begun: the server can only drop the connection
                raise
            await unexpected_error(exc, scope["method"], scope["path"])(
                scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            API_LATENCY.labels(scope["method"], getattr(route, "path", "unmatched"),
                               str(status[0] or 500)).observe(time.perf_counter() - started)

    def _refusal(self, scope: Scope) -> Any:
        """A response that answers the request before its body is read, or None."""
        url_problem = _url_problem(scope)
        if url_problem is not None:
            return url_problem
        # A dict keeps the last of repeated headers; one proxy or client that reads the first
        # Authorization and another that reads the last would each see a different caller.
        if sum(name == b"authorization" for name, _ in scope["headers"]) > 1:
            return problem(400, "Bad Request", (
                "the request has more than one Authorization header; send one Authorization "
                "header"))
        headers = dict(scope["headers"])
        if self.tokens.enabled and scope["path"].startswith("/v1"):
            principal = self._principal(headers.get(b"authorization", b""))
            if principal is None:
                return problem(401, "Unauthorized", (
                    "missing or unknown bearer token; send 'Authorization: Bearer <token>'"),
                    headers={"WWW-Authenticate": "Bearer"})
            scope.setdefault("state", {})["principal"] = principal
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_request_bytes:
            return problem(413, "Content Too Large", (
                f"the body has {int(length)} bytes; the limit is {self.max_request_bytes} "
                "(LAYERWISE_MAX_REQUEST_BYTES)"))
        return None

    def _principal(self, header: bytes) -> Principal | None:
        scheme, _, token = header.decode("latin-1").partition(" ")
        return self.tokens.authenticate(token.strip()) if scheme.lower() == "bearer" else None

    def _counting(self, receive: Any) -> Any:
        received = [0]
        limit = self.max_request_bytes

        async def counted() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                received[0] += len(message.get("body", b""))
                if received[0] > limit:
                    raise BodyTooLarge(limit)
            return message

        return counted




def _url_problem(scope: Scope) -> Any:
    """422 for a NUL character in the path or a query parameter: no job id, name or filter
    holds one, and PostgreSQL refuses them in text."""
    loc: list[str] = []
    if "\x00" in scope["path"]:
        loc = ["path"]
    elif b"%00" in scope["query_string"] or b"\x00" in scope["query_string"]:
        names = [name for name, value in parse_qsl(scope["query_string"].decode("latin-1"),
                                                   keep_blank_values=True)
                 if "\x00" in name or "\x00" in value]
        loc = ["query", names[0] if names else ""]
    if not loc:
        return None
    message = "contains a NUL character (%00); remove it"
    return problem(422, "Invalid request", f"{'.'.join(loc)}: {message}",
                   type_="/problems/validation", errors=[{"loc": loc, "msg": message}])
