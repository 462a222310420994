"""The answer of `GET /v1/experiments/{id}/logs`, apart from its route so that the client (and
the CLI) read it without loading the service."""

from __future__ import annotations

from pydantic import BaseModel, Field


class JobLog(BaseModel):
    job_id: str
    status: str = Field(description="the job's status when the log was read")
    lines: list[str] = Field(description="the log's last lines, oldest first")
    truncated: bool = Field(description="earlier lines exist that are not in `lines`")
    size_bytes: int = Field(description="what the job's log holds, in bytes (both parts)")
