"""Row 9: queue depth. What the store's operations cost with 1k, 10k and 100k jobs queued.

Each depth is a store of its own, filled directly (bulk inserts, every job a distinct spec,
spread over owners, projects and priorities); then the operations are timed in rounds that
visit every depth in turn, so a slow spell of the shared machine hits every depth alike:

- submit: `JobStore.create` as a submission calls it (the idempotency lookup, the owner's queue
  room up to its cap, the insert), for an owner holding 1/20 of the queue;
- claim: `JobStore.claim_next`, the dispatcher's claim of the best queued job (then put back);
- list: `JobStore.list` as `GET /v1/experiments` calls it, each page full (50 jobs) at every
  depth: the first page (an admin's, as every caller is without tokens), a page filtered by
  status and project, a page behind a deep cursor (90% down the queue), and the first page of
  a caller with a token (its own jobs);
- why pending: `JobStore.jobs_ahead` for the last job of the queue (the `waiting` answer of
  `GET /v1/experiments/{id}`) and the job's read.

Figures: the median and p99 of each at each depth and the growth from the smallest depth to
the largest; the target is at most 1.5x. `python -m bench.queue_depth [--tiny]` runs this row
alone; the plot goes to `bench/results/queue_depth.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from services.contract.spec import ExperimentSpec
from services.lifecycle import Status, now
from services.store import JobStore

DEPTHS = (1_000, 10_000, 100_000)
TINY_DEPTHS = (1_000, 3_000)
OWNERS = 20  # the measured caller ("anonymous") is one of them
PROJECTS = 10
TARGET = 1.5
OPERATIONS = ("submit", "claim", "list: first page", "list: filtered page",
              "list: deep cursor", "list: an owner's first page", "why pending")
RESULTS = Path(__file__).parent / "results"


def _base_spec() -> dict[str, Any]:
    return ExperimentSpec.model_validate({
        "name": "queued", "project": "p0", "data": {"name": "moons"},
        "model": {"kind": "mlp", "hidden": [64, 64]}}).model_dump(mode="json")


def _spec(base: dict[str, Any], i: int) -> dict[str, Any]:
    """A distinct spec: hidden sizes, learning rate and seed vary with i."""
    spec = json.loads(json.dumps(base))
    spec["model"]["hidden"] = [16 + i % 113, 8 + (i // 113) % 61]
    spec["optimizer"]["lr"] = round(1e-4 * (1 + i % 997), 6)
    spec["training"]["seed"] = i
    spec["project"] = f"p{(i // OWNERS) % PROJECTS}"  # every owner has every project
    return spec


def _owner(i: int) -> str:
    return "anonymous" if i % OWNERS == 0 else f"owner-{i % OWNERS}"


def fill(store: JobStore, start: int, stop: int, *, chunk: int = 5_000) -> None:
    """Jobs start..stop-1, queued, straight into the table in bulk."""
    base = _base_spec()
    from services.db import JobRow

    created = now() - timedelta(days=1)
    for first in range(start, stop, chunk):
        rows = []
        for i in range(first, min(stop, first + chunk)):
            spec = _spec(base, i)
            rows.append({
                "id": uuid.uuid4().hex, "job_type": "experiment", "name": f"job-{i}",
                "project": spec["project"], "status": Status.QUEUED.value, "spec": spec,
                "spec_hash": f"{i:016x}", "priority": 1 if i % 10 == 0 else 0, "attempts": 0,
                "max_attempts": 3, "owner": _owner(i), "idempotency_key": None,
                "param_count": 1000 + i, "sweep_id": None,
                "created_at": created + timedelta(milliseconds=i),
                "updated_at": created + timedelta(milliseconds=i), "progress": {}})
        with store.engine.begin() as connection:
            connection.execute(JobRow.__table__.insert(), rows)
    if store.engine.dialect.name == "postgresql":  # planner statistics, as autovacuum keeps
        with store.engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE jobs")
            connection.commit()


class Depth:
    """One store at one depth and the operations timed on it."""

    def __init__(self, store: JobStore, depth: int):
        self.store, self.depth = store, depth
        self.times: dict[str, list[float]] = {name: [] for name in OPERATIONS}
        self._base = _base_spec()
        self._submitted = 0
        with store.session() as session:
            from sqlalchemy import select

            from services.db import JobRow

            seqs = list(session.scalars(select(JobRow.seq).order_by(JobRow.seq.desc())))
            self.deep_cursor = seqs[int(0.9 * (len(seqs) - 1))]
            self.last_queued = session.scalar(
                select(JobRow.id).where(JobRow.status == Status.QUEUED.value)
                .order_by(JobRow.priority.asc(), JobRow.seq.desc()).limit(1))

    def _timed(self, name: str, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        out = call()
        self.times[name].append(time.perf_counter() - started)
        return out

    def round(self) -> None:
        store = self.store
        i = 10_000_000 + self.depth * 10 + self._submitted  # distinct from every filled spec
        self._submitted += 1
        spec = _spec(self._base, i)
        record, _ = self._timed("submit", lambda: store.create(
            spec=spec, spec_hash=f"{i:016x}", name="submitted", project=spec["project"],
            owner="anonymous", idempotency_key=uuid.uuid4().hex, param_count=1000,
            max_queued=10_000))
        store.move(record.id, Status.CANCELLED)  # the depth stays what it is
        claimed = self._timed("claim", lambda: store.claim_next(job_types=("experiment",
                                                                           "sweep")))
        store.move(claimed.id, Status.QUEUED)  # back where it was: running -> queued
        # Every page is full (50 jobs) at every depth: what grows is the queue, not the page.
        self._timed("list: first page", lambda: store.list(  # an admin's (no tokens: all)
            job_type="experiment", limit=50))
        self._timed("list: filtered page", lambda: store.list(
            job_type="experiment", status="queued", project="p3", limit=50))
        self._timed("list: deep cursor", lambda: store.list(
            job_type="experiment", limit=50, cursor=self.deep_cursor))
        self._timed("list: an owner's first page", lambda: store.list(  # a token's caller
            owner="anonymous", job_type="experiment", limit=50))
        self._timed("why pending", lambda: (store.get(self.last_queued),
                                            store.jobs_ahead(self.last_queued)))


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(0.99 * (len(ordered) - 1))]


@contextmanager
def _stores(backend: str, depths: tuple[int, ...]) -> Iterator[list[JobStore]]:
    """A fresh store per depth: SQLite files, or PostgreSQL databases (dropped at the end)."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            stores = [JobStore(f"sqlite:///{tmp}/jobs-{d}.db") for d in depths]
            try:
                yield stores
            finally:
                for store in stores:
                    store.engine.dispose()
        return
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    url = os.environ["LAYERWISE_TEST_POSTGRES_URL"]
    names = [f"layerwise_depth_{os.getpid()}_{d}" for d in depths]
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        for name in names:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    stores = [JobStore(make_url(url).set(database=n).render_as_string(hide_password=False))
              for n in names]
    try:
        yield stores
    finally:
        for store in stores:
            store.engine.dispose()
        with admin.connect() as connection:
            for name in names:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def measure(backend: str, depths: tuple[int, ...], repeats: int) -> dict[str, Any]:
    with _stores(backend, depths) as stores:
        fill_s = []
        for store, depth in zip(stores, depths, strict=True):
            started = time.perf_counter()
            fill(store, 0, depth)
            fill_s.append(time.perf_counter() - started)
        runs = [Depth(store, depth) for store, depth in zip(stores, depths, strict=True)]
        for run in runs:  # warm: connections, compiled statements, the page cache
            for _ in range(3):
                run.round()
            run.times = {name: [] for name in OPERATIONS}
        order = list(runs)
        for _ in range(repeats):
            random.shuffle(order)  # every depth in every round, in a new order each time
            for run in order:
                run.round()
    figures: dict[str, Any] = {"depths": list(depths), "fill_s": fill_s, "operations": {}}
    for name in OPERATIONS:
        medians = [statistics.median(r.times[name]) * 1000 for r in runs]
        p99s = [_p99(r.times[name]) * 1000 for r in runs]
        figures["operations"][name] = {"median_ms": medians, "p99_ms": p99s,
                                       "median_growth": medians[-1] / medians[0],
                                       "p99_growth": p99s[-1] / p99s[0]}
    return figures


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.5), squeeze=False)
    for ax, (backend, figures) in zip(axes[0], results.items(), strict=True):
        depths = figures["depths"]
        for name, op in figures["operations"].items():
            line, = ax.plot(depths, op["p99_ms"], marker="o", label=f"{name} (p99)")
            ax.plot(depths, op["median_ms"], marker=".", linestyle="--",
                    color=line.get_color())
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("jobs queued")
        ax.set_ylabel("ms (solid: p99, dashed: median)")
        ax.set_title(f"{backend}: cost per operation by queue depth")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(tiny: bool = False, results: Path = RESULTS) -> list[dict[str, Any]]:
    depths = TINY_DEPTHS if tiny else DEPTHS
    repeats = 3 if tiny else 40
    backends = ["sqlite"] + (["postgresql"] if os.environ.get("LAYERWISE_TEST_POSTGRES_URL")
                             else [])
    measured = {b: measure(b, depths, repeats) for b in backends}
    plot({("SQLite" if b == "sqlite" else "PostgreSQL"): m for b, m in measured.items()},
         results / "queue_depth.png")
    rows = []
    for backend, figures in measured.items():
        label = "SQLite" if backend == "sqlite" else "PostgreSQL"
        for name, op in figures["operations"].items():
            growth = op["p99_growth"]
            rows.append({
                "row": f"9 queue depth {depths[0]:,} -> {depths[-1]:,}, {label}: {name}",
                "baseline": f"the same at {depths[0]:,} queued",
                **{f"p99_ms_{d}": p for d, p in zip(depths, op["p99_ms"], strict=True)},
                **{f"median_ms_{d}": m for d, m in zip(depths, op["median_ms"], strict=True)},
                "ratio": growth, "median_growth": op["median_growth"],
                "target": f"p99 grows <= {TARGET}x", "met": growth <= TARGET})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = run(args.tiny, args.results)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / ("queue_depth_tiny.json" if args.tiny else "queue_depth.json")).write_text(
        json.dumps(rows, indent=2))
    for row in rows:
        print(f"{row['row']}: p99 growth {row['ratio']:.2f}x, median growth "
              f"{row['median_growth']:.2f}x, "
              + ", ".join(f"{k}={v:.2f}" for k, v in row.items() if k.startswith("p99_ms")))


if __name__ == "__main__":
    main()
