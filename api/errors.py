"""Domain errors mapped to application/problem+json (RFC 9457), once, for every route."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.contract.error_paths import dotted, spec_path, with_hint
from services.contract.spec_errors import SpecInvalid
from services.lifecycle import IllegalTransition
from services.store import IdempotencyKeyReused, JobNotFound, QueueFull

PROBLEM = "application/problem+json"
log = logging.getLogger("layerwise.api")


class ProblemError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str | None = None
    path: str | None = Field(None, description=(
        "the field as a spec names it, dotted, without the union members' labels `loc` has "
        "(`model.activation` where `loc` is [model, mlp, activation])"))


class Problem(BaseModel):
    """An RFC 9457 problem; `errors` lists each refused field for 422."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemError] | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem responses a route can give."""
    return {status: {"model": Problem, "content": {PROBLEM: {}},
                     "description": _title(status)} for status in statuses}


def problem(status: int, title: str, detail: str, *, type_: str = "about:blank",
            headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _loc(loc: Any) -> list[Any]:
    """Field paths start at the spec, not at the HTTP body."""
    parts = list(loc)
    return parts[1:] if parts and parts[0] == "body" else parts


def _request_error(request: Request, error: dict[str, Any]) -> dict[str, Any]:
    """One refused field of a request: pydantic's `loc`, the `path` (for the body, a spec: its
    field path without union labels) and the message with a did-you-mean for a misspelt
    field, kind or choice."""
    loc = _loc(error["loc"])
    spec = _body_model(request) if error["loc"][:1] == ("body",) else None
    return {"loc": loc, "msg": with_hint(spec, {**error, "loc": tuple(loc)}),
            "type": error.get("type"),
            "path": dotted(spec_path(spec, loc) if spec is not None else loc)}


def _body_model(request: Request) -> Any:
    """The type the route reads its body as (ExperimentSpec, SweepSpec), if it has one."""
    body_field = getattr(request.scope.get("route"), "body_field", None)
    return getattr(getattr(body_field, "field_info", None), "annotation", None)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_request_error(request, e) for e in exc.errors()]
        detail = "; ".join(f"{e['path'] or 'body'}: {e['msg']}" for e in errors[:5])
        return problem(422, "Invalid request", detail, type_="/problems/validation",
                       errors=errors)

    @app.exception_handler(SpecInvalid)
    async def _invalid_spec(_: Request, exc: SpecInvalid) -> JSONResponse:
        errors = [{"loc": list(e.loc), "msg": e.msg, "path": dotted(e.loc)} for e in exc.errors]
        return problem(422, "The spec cannot run", str(exc), type_="/problems/spec",
                       errors=errors)

    @app.exception_handler(IdempotencyKeyReused)
    async def _key_reused(_: Request, exc: IdempotencyKeyReused) -> JSONResponse:
        return problem(422, "Idempotency-Key reused", str(exc),
                       type_="/problems/idempotency-key-reused",
                       errors=[{"loc": ["header", "Idempotency-Key"], "msg": str(exc)}])

    @app.exception_handler(QueueFull)
    async def _queue_full(_: Request, exc: QueueFull) -> JSONResponse:
        return problem(429, "Too many queued jobs", str(exc), type_="/problems/queue-full",
                       headers={"Retry-After": "10"})

    @app.exception_handler(JobNotFound)
    async def _not_found(_: Request, exc: JobNotFound) -> JSONResponse:
        return problem(404, "Not found", str(exc), type_="/problems/not-found")

    @app.exception_handler(IllegalTransition)
    async def _conflict(_: Request, exc: IllegalTransition) -> JSONResponse:
        return problem(409, "Conflict", str(exc), type_="/problems/conflict")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, _title(exc.status_code), str(exc.detail),
                       headers=getattr(exc, "headers", None))

    @app.exception_handler(OperationalError)
    async def _store_unreachable(_: Request, exc: OperationalError) -> JSONResponse:
        # A dropped or restarted database (the pool replaces the connection), or SQLite
        # locked past its timeout: nothing was stored, and the same request can be resent.
        return problem(503, "Service Unavailable", (
            f"the job store did not answer ({type(exc.orig).__name__}); nothing was changed. "
            "Retry; resend a submission with the same Idempotency-Key and it is stored once"),
            headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return unexpected_error(exc, request.method, request.url.path)


def unexpected_error(exc: Exception, method: str, path: str) -> JSONResponse:
    """500 with an error id and nothing of the exception (no SQL, parameters, paths or
    traceback); the details go to the log under that id."""
    error_id = uuid.uuid4().hex[:12]
    log.error("unexpected error %s on %s %s", error_id, method, path, exc_info=exc,
              extra={"error_id": error_id})
    return problem(500, "Internal Server Error", (
        f"an unexpected error; nothing of it is shown here. Quote error id {error_id} to the "
        "operator, whose log holds the details"), type_="/problems/internal",
        error_id=error_id)


def _title(status: int) -> str:
    from http import HTTPStatus
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
