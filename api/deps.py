"""Dependencies as named types, so each route reads like prose.

The ones that only read app state are `async def`: FastAPI runs a plain `def` dependency in its
thread pool, a thread hop each per request for what takes microseconds."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from api.auth import ANONYMOUS, Principal, TokenTable
from services.records import JobRecord
from services.settings import Settings
from services.store import JobNotFound, JobStore
from workers.runtime.dispatcher import Dispatcher


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> JobStore:
    return request.app.state.store


async def get_dispatcher(request: Request) -> Dispatcher | None:
    return request.app.state.dispatcher


async def authenticate(request: Request,
                       authorization: Annotated[str | None, Header()] = None) -> Principal:
    """The caller. The edge middleware has checked the token of every `/v1` request before
    its body was read and left the principal in the request's state."""
    tokens: TokenTable = request.app.state.tokens
    if not tokens.enabled:
        return ANONYMOUS
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        scheme, _, token = (authorization or "").partition(" ")
        principal = tokens.authenticate(token.strip()) if scheme.lower() == "bearer" else None
    if principal is None:
        raise HTTPException(401, "missing or unknown bearer token; send "
                                 "'Authorization: Bearer <token>'",
                            headers={"WWW-Authenticate": "Bearer"})
    return principal


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
DispatcherDep = Annotated[Dispatcher | None, Depends(get_dispatcher)]
PrincipalDep = Annotated[Principal, Depends(authenticate)]


def visible_job(job_id: str, store: StoreDep, principal: PrincipalDep) -> JobRecord:
    """The job, if this caller may see it; 404 otherwise (not 403: no existence leak)."""
    record = store.get(job_id)
    if not principal.admin and record.owner != principal.owner:
        raise JobNotFound(job_id)
    return record


JobDep = Annotated[JobRecord, Depends(visible_job)]
