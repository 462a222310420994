"""Rows 2 and 4: the service around a job.

Row 2 (per-job overhead): submit -> succeeded through REST on a warm service, minus the same
training in a plain warm process; beside it, Ray Jobs' submit -> done for a script running the
same training, minus the same training time. Row 4 (API): submissions per second and p50/p99
latency from concurrent clients, with no dispatcher, on SQLite and PostgreSQL: every
submission a distinct spec (hidden sizes, learning rate, seed), so that each pays its own dry
run; 8 clients to one API process and to two (`serve --workers 2`: the second row's ratio is
its rate over the first's), then 200 clients at once to one.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from services.settings import Settings
from services.store import JobStore
from tests.utils.server import ServerThread, free_port

SHORT_SPEC = {"name": "bench-short", "project": "bench", "data": {"name": "xor"},
              "model": {"kind": "mlp", "hidden": [16]}, "training": {"epochs": 2},
              # Plots off: drawing them is a feature's cost, which BENCHMARKS.md reports on
              # its own, not the service's.
              "diagnostics": {"every_steps": 1, "plots": False}}
PLAIN_SCRIPT = """
import time, torch, torch.nn.functional as F
from sklearn.datasets import make_circles
torch.set_num_threads(1)
torch.manual_seed(0)
x = torch.randn(320, 2); y = (x[:, 0] * x[:, 1] > 0).float().unsqueeze(1)
model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for epoch in range(2):
    for i in torch.randperm(320).split(64):
        loss = F.binary_cross_entropy_with_logits(model(x[i]), y[i])
        opt.zero_grad(); loss.backward(); opt.step()
"""


def _settings(home: Path, database_url: str | None = None) -> Settings:
    (home / "data").mkdir(parents=True, exist_ok=True)
    return Settings(home=home / "home", data_roots=str(home / "data"), database_url=database_url,
                    mlflow_tracking_uri=None, ray_address=None, api_tokens=None,
                    admin_tokens=None)


def _plain_seconds() -> float:
    started = time.perf_counter()
    exec(compile(PLAIN_SCRIPT, "plain", "exec"), {})  # noqa: S102 - our own constant script
    return time.perf_counter() - started


def _submit_when_agent_ready(jobs_client: Any, entrypoint: str) -> str:
    """Ray's job agent comes up some seconds after the dashboard; until then it says so."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return jobs_client.submit_job(entrypoint=entrypoint)
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def per_job_overhead(jobs: int) -> list[dict[str, Any]]:
    import ray
    from ray.job_submission import JobStatus, JobSubmissionClient

    if not ray.is_initialized():
        from workers.runtime.dispatcher import local_ray_config

        ray.init(num_cpus=2, include_dashboard=True, namespace="layerwise",
                 log_to_driver=False, _system_config=local_ray_config(2))
    plain = statistics.median(_plain_seconds() for _ in range(5))
    with tempfile.TemporaryDirectory() as tmp, ServerThread(_settings(Path(tmp))) as server:
        client = server.client()
        client.wait(client.submit(SHORT_SPEC).id)  # warm the worker (imports torch)
        ours = []
        for _ in range(jobs):
            started = time.perf_counter()
            done = client.wait(client.submit(SHORT_SPEC).id, poll_s=0.01)
            assert done.status == "succeeded", done.error
            ours.append(time.perf_counter() - started)
    jobs_client = JobSubmissionClient(f"http://{ray.worker.get_dashboard_url()}")
    theirs = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp, "train.py")
        script.write_text(PLAIN_SCRIPT)
        try:
            for _ in range(max(1, jobs // 3)):
                started = time.perf_counter()
                job = _submit_when_agent_ready(jobs_client, f"{sys.executable} {script}")
                while jobs_client.get_job_status(job) not in (JobStatus.SUCCEEDED,
                                                               JobStatus.FAILED):
                    time.sleep(0.01)
                theirs.append(time.perf_counter() - started)
        except RuntimeError as exc:  # Ray's job agent never came up: report, do not abort
            note = f"Ray Jobs baseline unavailable: {exc}"
        else:
            note = ""
    our_ms = (statistics.median(ours) - plain) * 1000
    row: dict[str, Any] = {
        "row": "2 per-job service overhead (submit -> succeeded, minus training)",
        "baseline": "Ray Jobs submit -> done, same training", "layerwise_ms": our_ms,
        "target": "<= 150 ms", "met": our_ms <= 150,
        "note": f"plain training {plain * 1000:.0f} ms. {note}".strip()}
    if theirs:  # without the baseline the row reports our figure alone, never a NaN ratio
        ray_ms = (statistics.median(theirs) - plain) * 1000
        row.update(baseline_ms=ray_ms, ratio=our_ms / ray_ms)
    return [row]


def _serve_without_dispatcher(settings: Settings, port: int, processes: int = 1
                              ) -> subprocess.Popen:
    """The service in its own process(es), as deployed (`layerwise serve --no-dispatcher
    --workers N`): load generated in this process does not share their interpreter locks.
    Returns once every process has started (each logs its startup)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAYERWISE_")}
    env.update(LAYERWISE_HOME=str(settings.home), LAYERWISE_DATA_ROOTS=settings.data_roots)
    if settings.database_url:
        env["LAYERWISE_DATABASE_URL"] = settings.database_url
    log = Path(settings.home).parent / f"serve-{port}.log"
    with log.open("w") as output:
        service = subprocess.Popen([sys.executable, "-m", "api.cli", "serve",
                                    "--no-dispatcher", "--port", str(port),
                                    "--workers", str(processes)],
                                   env=env, stdout=subprocess.DEVNULL, stderr=output)
    deadline = time.monotonic() + 300  # imports take minutes on a busy 2-core machine
    # No Ray here, so /healthz, not /readyz; the first process to start answers it, so the
    # others' startups are counted in the log.
    while (log.read_text().count("Application startup complete") < processes
           or not _answers(f"http://127.0.0.1:{port}/healthz")):
        if service.poll() is not None or time.monotonic() > deadline:
            service.kill()
            raise RuntimeError(f"the service did not start for the API row: "
                               f"{log.read_text()[-2000:]}")
        time.sleep(0.2)
    return service


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def distinct_spec(i: int) -> dict[str, Any]:
    """The row's spec, made distinct by i (< 40,000): hidden sizes, learning rate and seed, so
    that neither the dry run's cache of passed specs nor its cache of stepped models answers."""
    spec = json.loads(json.dumps(SHORT_SPEC))
    spec["model"]["hidden"] = [16 + i % 200, 8 + i // 200]
    spec["optimizer"] = {"lr": round(0.001 * (1 + i % 97), 6)}
    spec["training"]["seed"] = i
    return spec


@contextmanager
def _fresh_postgres(url: str | None) -> Iterator[str | None]:
    """A database of its own on the server of `url` for one run, dropped after it (the test
    database is shared)."""
    if url is None:
        yield None
        return
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"layerwise_bench_api_{os.getpid()}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def api_throughput(postgres_url: str | None, label: str, submissions: int,
                   clients: int, processes: int = 1) -> dict[str, Any]:
    """`submissions` distinct specs from `clients` concurrent clients (every submission a
    different spec: a fresh dry run each) to `processes` API processes on one port."""
    with tempfile.TemporaryDirectory() as tmp, _fresh_postgres(postgres_url) as database_url:
        settings = _settings(Path(tmp), database_url)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        service = _serve_without_dispatcher(settings, port, processes)
        try:
            latencies: list[float] = []
            errors: list[str] = []
            lock = threading.Lock()
            per_client = max(1, submissions // clients)
            bodies = [[json.dumps(distinct_spec(w * per_client + i)).encode()
                       for i in range(per_client)] for w in range(clients)]
            ready = threading.Barrier(clients + 1)

            def submit_many(worker: int) -> None:
                # The standard library's client on a kept-alive connection: a lean load
                # generator (far less CPU per request than httpx, BENCHMARKS.md) leaves the
                # service the cores.
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                try:
                    connection.connect()
                    ready.wait()
                    for i, body in enumerate(bodies[worker]):
                        started = time.perf_counter()
                        try:
                            connection.request("POST", "/v1/experiments", body=body, headers={
                                "Content-Type": "application/json",
                                "Idempotency-Key": f"{worker}-{i}"})
                            response = connection.getresponse()
                            text = response.read()
                        except OSError as exc:  # refused, reset, timed out: an error
                            with lock:
                                errors.append(f"{type(exc).__name__}: {exc}")
                            connection.close()
                            continue
                        elapsed = time.perf_counter() - started
                        with lock:
                            if response.status == 201:
                                latencies.append(elapsed)
                            else:
                                errors.append(f"{response.status}: {text[:200]!r}")
                finally:
                    connection.close()

            # warm: the data, torch's kernels, the store's connections (of each process:
            # fresh connections, which the kernel hands to one process or another)
            for warm in range(2 * processes):
                httpx.post(f"{url}/v1/experiments", json=distinct_spec(39_999 - warm),
                           timeout=60)
            threads = [threading.Thread(target=submit_many, args=(w,)) for w in range(clients)]
            for thread in threads:
                thread.start()
            ready.wait()
            started = time.perf_counter()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - started
        finally:
            service.terminate()
            service.wait(timeout=60)
        stored = (JobStore(settings.job_store_url).count_by_status().get("queued", 0)
                  - 2 * processes)
    latencies.sort()
    rate = len(latencies) / seconds
    p99 = latencies[int(0.99 * (len(latencies) - 1))] * 1000 if latencies else float("nan")
    if clients > 8:
        target, met = "no error, p99 <= 2 s", not errors and p99 <= 2000
    else:
        target, met = ">= 300/s, p99 <= 100 ms", rate >= 300 and p99 <= 100
    plural = "es" if processes > 1 else ""
    return {"row": (f"4 API submissions, distinct specs, {clients} clients, {label}, "
                    f"{processes} API process{plural}"), "processes": processes,
            "baseline": "targets", "submissions_per_s": rate,
            "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
            "p99_ms": p99, "stored": stored, "sent": len(latencies) + len(errors),
            "errors": len(errors), "first_errors": sorted(set(errors))[:3],
            "target": f"{target}, each stored once",
            "met": met and stored == len(latencies) and not errors}


def run(jobs: int, submissions: int, clients: int, crowd: int = 200
        ) -> list[dict[str, Any]]:
    # The API rows first: they use no Ray, and a Ray with its dashboard idling beside them
    # (row 2 starts one for Ray Jobs) takes CPU from a 2-core machine.
    postgres = os.environ.get("LAYERWISE_TEST_POSTGRES_URL")
    rows = []
    for url, label in [(None, "SQLite"), *([(postgres, "PostgreSQL")] if postgres else [])]:
        one = api_throughput(url, label, submissions, clients)
        rows += [one, scaled(api_throughput(url, label, submissions, clients, processes=2),
                             one)]
        # `crowd` clients at once, two submissions each
        rows.append(api_throughput(url, label, 2 * crowd, crowd))
    return per_job_overhead(jobs) + rows


def scaled(row: dict[str, Any], one: dict[str, Any]) -> dict[str, Any]:
    """Row 4 with several API processes, against the same with one: its rate over one's."""
    ratio = row["submissions_per_s"] / one["submissions_per_s"]
    clean = row["errors"] == 0 and row["stored"] == row["sent"]
    return {**row, "baseline": f"the same with 1 API process ({one['submissions_per_s']:.0f}/s)",
            "ratio": ratio, "target": ">= 1.7x the rate with 1 process, no error, each stored once",
            "met": ratio >= 1.7 and clean}
