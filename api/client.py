"""Typed Python client for the Layerwise REST API (httpx): each call returns the response
model its route declares (`JobRecord`, `ExperimentRecord`, `SweepRecord`, `Comparison`, ...),
validated from the same JSON the REST API sends."""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from api.job_logs import JobLog
from api.schemas import Catalog, ExperimentRecord, ExperimentsPublic, MetricPoint
from api.spec_files import SpecFileError as SpecFileError  # re-exported: read spec files
from api.spec_files import load_spec_file as load_spec_file  # through the client module
from services.records import JobRecord
from services.run_comparison import Comparison
from services.sweep_table import SweepRecord, SweepsPublic

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = {"succeeded", "failed", "cancelled"}
Model = TypeVar("Model", bound=BaseModel)
Polled = TypeVar("Polled", ExperimentRecord, SweepRecord)


class LayerwiseError(Exception):
    """An error response; `problem` is the problem+json body (with `errors` for a 422)."""

    def __init__(self, status: int, problem: dict[str, Any]):
        self.status, self.problem = status, problem
        head = f"{status} {problem.get('title', '')}"
        # A 422's detail joins its errors: each is said once, one line per field.
        fields = [f"{_where(error)}: {error.get('msg', '')}"
                  for error in problem.get("errors") or []]
        if len(fields) == 1:
            text = f"{head}: {fields[0]}"
        elif fields:
            text = "\n".join([f"{head}:", *[f"  {field}" for field in fields]])
        else:
            text = f"{head}: {problem.get('detail', '')}"
        super().__init__(text)


def _where(error: dict[str, Any]) -> str:
    """A refused field: its `path` as a spec names it (no union labels), else its `loc`."""
    return error.get("path") or ".".join(map(str, error.get("loc", []))) or "body"


class ServiceUnreachable(Exception):
    """No answer from the service: nothing listens at `url`, the host is unknown, or it did not
    answer in time. `reason` says which, in a few words; `timed_out` tells a timeout apart."""

    def __init__(self, url: str, reason: str, *, timed_out: bool = False):
        self.url, self.reason, self.timed_out = url, reason, timed_out
        super().__init__(f"cannot reach the Layerwise service at {url}: {reason}")


def _transport_reason(exc: httpx.TransportError, timeout: float) -> tuple[str, bool]:
    """A few words on why a request got no answer, and whether it timed out."""
    if isinstance(exc, httpx.TimeoutException):
        what = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "answering"
        return f"timed out {what} (after {timeout:g} s)", True
    text = str(exc)
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused", False
    if any(words in lowered for words in ("name or service not known", "nodename nor servname",
                                          "name resolution", "getaddrinfo")):
        return f"unknown host ({text})", False
    return text or type(exc).__name__, False


class LayerwiseClient:
    def __init__(self, url: str | None = None, *, token: str | None = None,
                 timeout: float = 30.0):
        self.url = (url or os.environ.get("LAYERWISE_URL") or DEFAULT_URL).rstrip("/")
        token = token or os.environ.get("LAYERWISE_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LayerwiseClient:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The response, or ServiceUnreachable when there is none (refused, timed out)."""
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            reason, timed_out = _transport_reason(exc, self.timeout)
            raise ServiceUnreachable(self.url, reason, timed_out=timed_out) from exc

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer; an error status raises LayerwiseError with its problem body."""
        response = self._request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.reason_phrase, "detail": response.text}
            raise LayerwiseError(response.status_code, problem)
        return response.json()

    def _answer(self, model: type[Model], method: str, path: str, **kwargs: Any) -> Model:
        """The answer to a call as the response model its route declares."""
        return model.model_validate(self._call(method, path, **kwargs))

    # -- experiments ---------------------------------------------------------------------
    def submit(self, spec: dict[str, Any], *, idempotency_key: str | None = None
               ) -> JobRecord:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._answer(JobRecord, "POST", "/v1/experiments", json=spec, headers=headers)

    def get(self, job_id: str) -> ExperimentRecord:
        return self._answer(ExperimentRecord, "GET", f"/v1/experiments/{job_id}")

    def list(self, **filters: Any) -> ExperimentsPublic:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._answer(ExperimentsPublic, "GET", "/v1/experiments", params=params)

    def cancel(self, job_id: str) -> JobRecord:
        return self._answer(JobRecord, "POST", f"/v1/experiments/{job_id}/cancel")

    def repair(self, job_id: str, *, idempotency_key: str | None = None) -> ExperimentRecord:
        """Submit the fix the job's diagnosis suggests as a new, linked experiment; returns
        the new job's record (`repair_of`, and `repair` with before and after)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._answer(ExperimentRecord, "POST", f"/v1/experiments/{job_id}/repair",
                            headers=headers)

    def metric_keys(self, job_id: str) -> builtins.list[str]:
        return self._call("GET", f"/v1/experiments/{job_id}/metrics")["keys"]

    def metric_history(self, job_id: str, key: str) -> builtins.list[MetricPoint]:
        points = self._call("GET", f"/v1/experiments/{job_id}/metrics",
                            params={"key": key})["points"]
        return [MetricPoint.model_validate(point) for point in points]

    # -- sweeps ----------------------------------------------------------------------------
    def submit_sweep(self, sweep: dict[str, Any], *, idempotency_key: str | None = None
                     ) -> SweepRecord:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._answer(SweepRecord, "POST", "/v1/sweeps", json=sweep, headers=headers)

    def get_sweep(self, sweep_id: str) -> SweepRecord:
        return self._answer(SweepRecord, "GET", f"/v1/sweeps/{sweep_id}")

    def list_sweeps(self, **filters: Any) -> SweepsPublic:
        params = {k: v for k, v in filters.items() if v is not None}
        return self._answer(SweepsPublic, "GET", "/v1/sweeps", params=params)

    def cancel_sweep(self, sweep_id: str) -> SweepRecord:
        return self._answer(SweepRecord, "POST", f"/v1/sweeps/{sweep_id}/cancel")

    def wait_sweep(self, sweep_id: str, *, timeout: float = 24 * 3600.0, poll_s: float = 1.0,
                   on_update: Callable[[SweepRecord], None] | None = None
                   ) -> SweepRecord:
        """Poll until the sweep is final; returns its record (trials, best).

        Raises:
            TimeoutError: not final within `timeout` seconds.
        """
        return self._poll(self.get_sweep, sweep_id, timeout=timeout, poll_s=poll_s,
                          on_update=on_update, command="sweep-status")

    def compare(self, job_ids: builtins.list[str], *, metric: str = "grad_norm") -> Comparison:
        """The per-layer comparison table of several runs."""
        return self._answer(Comparison, "GET", "/v1/compare",
                            params={"ids": ",".join(job_ids), "metric": metric})

    def compare_png(self, job_ids: builtins.list[str], *, metric: str = "grad_norm") -> bytes:
        """The runs' per-layer curves side by side, as a PNG."""
        response = self._request("GET", "/v1/compare", params={
            "ids": ",".join(job_ids), "metric": metric, "format": "png"})
        if response.status_code >= 400:
            raise LayerwiseError(response.status_code, response.json())
        return response.content

    def match_ids(self, prefix: str, *, sweeps: bool = False, scan: int = 5000,
                  most: int = 10) -> builtins.list[str]:
        """The ids of the caller's experiments (or sweeps) that start with `prefix`, newest
        first: the prefix's own id alone when it is one. Reads at most `scan` records (the
        newest) and stops at `most` matches."""
        found: builtins.list[str] = []
        cursor: str | None = None
        read = 0
        while read < scan:
            params: dict[str, Any] = {"limit": min(500, scan - read)}
            if cursor:
                params["cursor"] = cursor
            page = self._call("GET", "/v1/sweeps" if sweeps else "/v1/experiments",
                              params=params)
            read += len(page["data"])
            for record in page["data"]:
                if record["id"] == prefix:
                    return [prefix]
                if record["id"].startswith(prefix) and len(found) < most:
                    found.append(record["id"])
            cursor = page.get("next_cursor")
            if not cursor or not page["data"] or len(found) >= most:
                break
        return found

    def catalog(self) -> Catalog:
        return self._answer(Catalog, "GET", "/v1/catalog")

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def wait(self, job_id: str, *, timeout: float = 3600.0, poll_s: float = 0.5,
             on_update: Callable[[ExperimentRecord], None] | None = None) -> ExperimentRecord:
        """Poll until the job is final; returns its record.

        Raises:
            TimeoutError: not final within `timeout` seconds.
        """
        return self._poll(self.get, job_id, timeout=timeout, poll_s=poll_s,
                          on_update=on_update, command="status")

    def _poll(self, read: Callable[[str], Polled], job_id: str, *, timeout: float,
              poll_s: float, on_update: Callable[[Polled], None] | None,
              command: str) -> Polled:
        deadline = time.monotonic() + timeout
        while True:
            record = read(job_id)
            if on_update is not None:
                on_update(record)
            if record.status in TERMINAL:
                return record
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {record.status} after "
                                   f"{timeout:.0f} s; `layerwise {command} {job_id}` follows it")
            time.sleep(poll_s)

    def logs(self, job_id: str, *, tail: int = 200) -> JobLog:
        """The last `tail` lines of the job's worker log (the service caps it at 5000 lines,
        256 KiB); LayerwiseError 409 when the job has none yet."""
        return self._answer(JobLog, "GET", f"/v1/experiments/{job_id}/logs",
                            params={"tail": tail})
