"""Row 11: a simulated cluster. 32 Ray nodes on this machine, 2,000 short jobs of 4 owners.

The nodes are real raylets of one Ray cluster (`ray.cluster_utils.Cluster`, as Ray's own tests
simulate clusters), of three shapes: 16 of 1 CPU, 8 of 2 CPUs, 8 of 1 CPU and one GPU (a
declared resource: Ray schedules against it as against a real one; none is there): 40 CPUs and
8 GPUs. Each node is a raylet with its two agents and a worker process per CPU, about 250
processes on two cores: Ray's periodic reports (task events, metrics, the agents' process
scans) are turned down (`QUIET_RAY`), or they alone keep both cores busy. The jobs go through
the real store (SQLite) and the real dispatcher; each job's work is a Ray task that sleeps
0.3-0.9 s (`bench/simulated_job.py`), so what is measured is the dispatcher, the store and Ray,
not training. Of the 2,000 jobs, 90% ask for 1 CPU, 5% for 2 CPUs, 5% for 1 CPU and
1 GPU; 100 have priority 5, the rest 0. The owners queued 1,200, 500, 250 and 50 jobs, in that
order (the first owner's all before the second's: FIFO's worst case).

One run per queue policy (`fifo`, then `fair`, the default) and one baseline: the same sleeps
submitted straight to Ray from one process (Ray queues and places them itself: no store, no
dispatcher, no order). In the `fair` run, the 2-CPU node running the most jobs is killed (its
raylet and workers) once 40% of the jobs have finished.

Measured, each from the store's records and the tasks' own reports:
- launches/s: the dispatcher's launches over the time it spent launching them (claiming from the
  store, choosing the order, submitting to Ray), in wall-clock time and in the dispatcher
  thread's CPU time (what one core given to it would launch: the wall-clock figure moves with
  everything else this machine runs, 250 Ray processes among them); and the time to fill the
  empty cluster;
- the makespan against the baseline's (the same run, the same machine);
- resources: on every node, at every moment, the CPUs and GPUs its tasks held against the
  node's own (from where and when each task says it ran); GPU jobs only on GPU nodes;
- priority: how many priority-0 jobs launched before the last priority-5 job did;
- fairness: Jain's index of the dominant shares of the owners that still have queued jobs
  (1.0: equal shares; 1/n: one owner holds everything), averaged over the time two or more do:
  of what the dispatcher granted (launch to the record of the end: what the policy decides),
  and of what ran (each task's own start and end: Ray's queues between them);
- the node killed: its jobs re-queued and run again, every job finished exactly once (one
  `succeeded` record, one line in the log each task writes as its last act).

`python -m bench.cluster_sim [--nodes N] [--jobs N]`; `--tiny`: 4 nodes, 60 jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import ray
from ray._private import ray_constants
from ray.cluster_utils import Cluster

from bench.service import _settings
from bench.simulated_job import simulated_job
from services.lifecycle import Status
from services.records import JobRecord
from services.store import JobStore
from workers.runtime.dispatcher import Dispatcher

NODES, JOBS, TINY_NODES, TINY_JOBS = 32, 2_000, 4, 60
OWNERS = {"ada": 0.60, "bo": 0.25, "cy": 0.125, "di": 0.025}  # shares of the jobs, queued in order
HIGH_PRIORITY = 5
HIGH_SHARE = 0.05
KILL_AT = 0.4  # of the jobs finished
TARGET_LAUNCHES_S = 100.0
TARGET_FAIRNESS = 0.9
# Ray notices a raylet that is gone after this many missed health checks this far apart (its
# defaults, 3 x 3 s after a 5 s start, leave the dead node's CPUs counted for ~15 s).
HEALTH_CHECK = {"health_check_period_ms": 500, "health_check_failure_threshold": 4,
                "health_check_initial_delay_ms": 1000}
# Every Ray process reports task events each second and metrics every few, and each node's agent
# scans every process of the machine every 5 s: with 32 nodes on one machine, a quarter of its
# two cores went to that while idle, and all of both under load. Set while the cluster starts
# (its processes read them), then put back.
QUIET_RAY = {"RAY_task_events_report_interval_ms": "0", "RAY_metrics_report_interval_ms": "600000",
             "REPORTER_UPDATE_INTERVAL_MS": "600000", "RAY_event_stats": "0"}


@dataclass(frozen=True)
class NodeShape:
    cpus: int
    gpus: int


def node_shapes(nodes: int) -> list[NodeShape]:
    """Half of 1 CPU, a quarter of 2 CPUs, a quarter of 1 CPU and a GPU; at least two of 2
    CPUs (one is killed, and the 2-CPU jobs need another) and one of each other shape."""
    quarter = max(1, nodes // 4)
    large = max(2, quarter)
    return ([NodeShape(2, 0)] * large + [NodeShape(1, 1)] * quarter
            + [NodeShape(1, 0)] * max(1, nodes - large - quarter))


@dataclass(frozen=True)
class SimulatedJob:
    owner: str
    priority: int
    cpus: int
    gpus: int
    seconds: float


def workload(jobs: int, seconds: tuple[float, float], seed: int = 0) -> list[SimulatedJob]:
    """The jobs in the order they are queued: owner after owner, the urgent ones spread over
    the third owner's (queued behind every job of the first two)."""
    rng = random.Random(seed)
    made: list[SimulatedJob] = []
    owners = list(OWNERS)
    counts = [max(1, round(jobs * share)) for share in OWNERS.values()]
    counts[0] += jobs - sum(counts)
    high = max(1, round(jobs * HIGH_SHARE))
    for owner, count in zip(owners, counts, strict=True):
        for index in range(count):
            kind = rng.random()
            cpus, gpus = (2, 0) if kind < 0.05 else (1, 1) if kind < 0.10 else (1, 0)
            urgent = owner == owners[2] and index < high
            made.append(SimulatedJob(owner, HIGH_PRIORITY if urgent else 0, cpus, gpus,
                                     rng.uniform(*seconds)))
    return made


class SimulatedDispatcher(Dispatcher):
    """The service's dispatcher with the simulated job as its experiment task, timing the part
    of its ticks that launches."""

    experiment_remote = simulated_job

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.launching_s = 0.0  # wall-clock time in the launching step of its ticks
        self.launching_cpu_s = 0.0  # the dispatcher thread's CPU time in it
        self.launched = 0

    def _launch_what_fits(self, tick_started: float) -> None:
        before = len(self.in_flight)
        started, started_cpu = time.perf_counter(), time.thread_time()
        try:
            super()._launch_what_fits(tick_started)
        finally:
            self.launching_s += time.perf_counter() - started
            self.launching_cpu_s += time.thread_time() - started_cpu
            self.launched += max(0, len(self.in_flight) - before)


@contextmanager
def simulated_cluster(shapes: list[NodeShape]) -> Iterator[tuple[Cluster, list[Any]]]:
    """A head without CPUs (the driver's node: the progress board goes there) and a node of
    each shape, joined; yields the cluster and its worker nodes in the order of `shapes`."""
    before = {name: os.environ.get(name) for name in QUIET_RAY}
    os.environ.update(QUIET_RAY)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "_system_config": HEALTH_CHECK})
    try:
        nodes = [cluster.add_node(num_cpus=shape.cpus, num_gpus=shape.gpus) for shape in shapes]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace="layerwise", log_to_driver=False)
        yield cluster, nodes
    finally:
        ray.shutdown()
        cluster.shutdown()
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _warm(total_cpus: int) -> None:
    """Start a worker process on every CPU (a cluster that has run jobs has them)."""
    @ray.remote(num_cpus=1)
    def nap() -> None:
        time.sleep(0.5)

    ray.get([nap.remote() for _ in range(total_cpus)])


def baseline(jobs: list[SimulatedJob], root: Path) -> float:
    """The sleeps straight on Ray: seconds from the first submission to the last result."""
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    refs = [simulated_job.options(num_cpus=job.cpus, num_gpus=job.gpus).remote(
        f"baseline-{index}", _spec(job, root), {}, None)
        for index, job in enumerate(jobs)]
    ray.get(refs)
    return time.perf_counter() - started


def _spec(job: SimulatedJob, root: Path) -> dict[str, Any]:
    return {"name": "simulated", "project": "bench",
            "resources": {"cpus": job.cpus, "gpus": job.gpus},
            "tags": {"simulated_seconds": f"{job.seconds:.3f}",
                     "started_log": str(root / "started.log"),
                     "done_log": str(root / "done.log")}}


def run_policy(cluster: Cluster, jobs: list[SimulatedJob], policy: str, root: Path, *,
               kill: Any = None) -> dict[str, Any]:
    """Queue the jobs, start a dispatcher with `policy`, wait for every job to end."""
    settings = _settings(root).model_copy(update={
        "queue_policy": policy, "ray_address": cluster.address, "max_queued_per_owner": 100_000})
    store = JobStore(settings.job_store_url)
    ids = [store.create(spec=_spec(job, root), spec_hash=f"sim{index}", name=None,
                        project="bench", priority=job.priority, owner=job.owner)[0].id
           for index, job in enumerate(jobs)]
    dispatcher = SimulatedDispatcher(store, settings)
    killed: dict[str, Any] = {}
    started = time.perf_counter()
    dispatcher.start()  # joins Ray and finds (or creates) the progress board
    try:
        full_at = _wait_full(dispatcher, time.perf_counter())
        filled_with = len(dispatcher.in_flight)  # its launch count grows after each tick
        if kill is not None:
            killed = _kill_at(cluster, kill, root, store, len(jobs), KILL_AT, dispatcher)
        _wait_all_ended(store, len(jobs))
        makespan = time.perf_counter() - started
    finally:
        dispatcher.stop()
    records = [store.get(job_id) for job_id in ids]
    return {"policy": policy, "makespan_s": makespan, "fill_s": full_at,
            "fill_launches_per_s": filled_with / full_at,
            "launches_per_s": dispatcher.launched / max(dispatcher.launching_s, 1e-9),
            "launches_per_cpu_s": dispatcher.launched / max(dispatcher.launching_cpu_s, 1e-9),
            "launched": dispatcher.launched, "records": records, "killed": killed,
            "done_lines": Counter((root / "done.log").read_text().split())}


def _wait_full(dispatcher: SimulatedDispatcher, started: float) -> float:
    """Seconds until the dispatcher holds the cluster's CPUs (less one job's)."""
    cpus = dispatcher.capacity()["cpus"]
    while dispatcher._held[0] < cpus - 2 and time.perf_counter() - started < 120:
        time.sleep(0.005)
    return time.perf_counter() - started


def _ended(store: JobStore) -> int:
    counts = store.count_by_status()
    return sum(counts.get(status.value, 0) for status in
               (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED))


def _wait_all_ended(store: JobStore, jobs: int, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while _ended(store) < jobs:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{jobs - _ended(store)} jobs had not ended after {timeout} s: "
                               f"{store.count_by_status()}")
        time.sleep(0.1)


def _kill_at(cluster: Cluster, candidates: list[Any], root: Path, store: JobStore, jobs: int,
             fraction: float, dispatcher: SimulatedDispatcher) -> dict[str, Any]:
    """Once `fraction` of the jobs ended, kill the one of `candidates` running the most jobs
    with a tenth of a second or more left (by the jobs' own logs), as a machine that is lost:
    its workers and raylet at once."""
    while _ended(store) < jobs * fraction:
        time.sleep(0.02)
    while True:
        busy = _busy_nodes(root, left_s=0.1)
        victim = max(candidates, key=lambda node: busy[node.node_id])
        if busy[victim.node_id]:
            break
        time.sleep(0.01)
    ended, in_flight = _ended(store), len(dispatcher.in_flight)
    # Its workers first, in the same instant: a worker outlives its raylet long enough to end
    # a short task and hand the result to its owner directly, which a lost machine does not.
    raylets = [psutil.Process(info.process.pid) for info in
               victim.all_processes[ray_constants.PROCESS_TYPE_RAYLET]]
    for process in [child for raylet in raylets for child in raylet.children(recursive=True)]:
        process.kill()
    cluster.remove_node(victim, allow_graceful=False)
    return {"node": victim.node_id, "running_on_it": busy[victim.node_id], "at_ended": ended,
            "dispatcher_in_flight": in_flight}


def _busy_nodes(root: Path, left_s: float) -> Counter[str]:
    """Each node's jobs that will run `left_s` or longer still."""
    done = set((root / "done.log").read_text().split()) if (root / "done.log").exists() \
        else set()
    until = time.time() + left_s
    return Counter(node for job_id, node, ends in (
        line.split() for line in (root / "started.log").read_text().splitlines())
        if job_id not in done and float(ends) >= until)


# -- what the records say ---------------------------------------------------------------------
def resources_honoured(records: list[JobRecord], nodes: dict[str, NodeShape]) -> dict[str, Any]:
    """The most CPUs and GPUs any node's tasks held at once, against the node's own."""
    over: list[str] = []
    gpu_jobs_off_gpu_nodes = 0
    by_node: dict[str, list[tuple[float, float, int, int]]] = {}
    for record in records:
        result = record.result or {}
        if "node" not in result:
            continue
        asked = record.spec["resources"]
        by_node.setdefault(result["node"], []).append(
            (result["task_started"], result["task_ended"], asked["cpus"], asked["gpus"]))
        if asked["gpus"] and not nodes.get(result["node"], NodeShape(0, 0)).gpus:
            gpu_jobs_off_gpu_nodes += 1
    for node_id, spans in by_node.items():
        shape = nodes.get(node_id, NodeShape(0, 0))
        events = sorted([(s, c, g) for s, _, c, g in spans] + [(e, -c, -g) for _, e, c, g in spans])
        cpus = gpus = 0
        for _, d_cpus, d_gpus in events:
            cpus, gpus = cpus + d_cpus, gpus + d_gpus
            if cpus > shape.cpus or gpus > shape.gpus:
                over.append(node_id)
                break
    return {"nodes_over_their_resources": len(over), "gpu_jobs_off_gpu_nodes":
            gpu_jobs_off_gpu_nodes, "nodes_used": len(by_node)}


def priority_inversions(records: list[JobRecord]) -> int:
    """Priority-0 jobs first launched before the last priority-5 job asking for the same
    resources was: wherever the low one fitted, the high one would have. (A low job launched
    while a high one that asks for more waits is backfill, not counted.)"""
    def shape(record: JobRecord) -> tuple[float, float]:
        return record.spec["resources"]["cpus"], record.spec["resources"]["gpus"]

    last_high: dict[tuple[float, float], Any] = {}
    for record in records:
        if record.priority == HIGH_PRIORITY and record.started_at:
            last_high[shape(record)] = max(last_high.get(shape(record), record.started_at),
                                           record.started_at)
    return sum(1 for r in records if r.priority == 0 and r.started_at
               and shape(r) in last_high and r.started_at < last_high[shape(r)])


Span = tuple[str, float, float, float, float]  # owner, from, to, CPUs, GPUs


def held_spans(records: list[JobRecord]) -> list[Span]:
    """What the dispatcher granted: each job's resources from its launch to the record of
    its end (the store's started_at and finished_at)."""
    return [(r.owner, r.started_at.timestamp(), r.finished_at.timestamp(),
             r.spec["resources"]["cpus"], r.spec["resources"]["gpus"])
            for r in records if r.started_at and r.finished_at]


def running_spans(records: list[JobRecord]) -> list[Span]:
    """What ran: each task's own start and end on its node."""
    return [(r.owner, r.result["task_started"], r.result["task_ended"],
             r.spec["resources"]["cpus"], r.spec["resources"]["gpus"])
            for r in records if r.result and "task_started" in r.result]


def fairness(spans: list[Span], capacity: NodeShape, every_s: float = 0.05
             ) -> dict[str, float]:
    """Jain's index of the dominant shares of the owners that still have queued jobs (whose
    last job has not started yet), at every moment two or more do, averaged over that time;
    and each owner's mean share while it waited. Owners with nothing left to run do not
    compete."""
    if not spans:
        return {"jain": float("nan")}
    last_start = {owner: max(s for o, s, *_ in spans if o == owner)
                  for owner in {o for o, *_ in spans}}
    moment, end = min(s for _, s, *_ in spans) + every_s, max(last_start.values())
    jains: list[float] = []
    share_sums: Counter[str] = Counter()
    waited: Counter[str] = Counter()
    while moment < end:
        waiting = [owner for owner, last in last_start.items() if last > moment]
        if len(waiting) >= 2:
            shares = {owner: _dominant_share(spans, owner, moment, capacity)
                      for owner in waiting}
            if sum(shares.values()) > 0:
                jains.append(sum(shares.values()) ** 2
                             / (len(shares) * sum(x * x for x in shares.values())))
                share_sums.update(shares)
                waited.update(shares.keys())
        moment += every_s
    return {"jain": sum(jains) / len(jains) if jains else float("nan"),
            "contended_s": len(jains) * every_s,
            **{f"share_{owner}": share_sums[owner] / max(1, waited[owner]) for owner in OWNERS}}


def _dominant_share(spans: list[Span], owner: str, moment: float, capacity: NodeShape) -> float:
    held = [(c, g) for o, s, e, c, g in spans if o == owner and s <= moment < e]
    cpus, gpus = sum(c for c, _ in held), sum(g for _, g in held)
    return max(cpus / capacity.cpus, gpus / capacity.gpus if capacity.gpus else 0.0)


def exactly_once(outcome: dict[str, Any]) -> dict[str, Any]:
    records: list[JobRecord] = outcome["records"]
    lines: Counter[str] = outcome["done_lines"]
    succeeded = sum(1 for r in records if r.status == Status.SUCCEEDED.value)
    return {"succeeded": succeeded, "jobs": len(records),
            "finished_twice": sum(1 for r in records if lines[r.id] > 1),
            "never_finished": sum(1 for r in records if lines[r.id] == 0),
            "rerun_after_the_kill": sum(1 for r in records if r.attempts > 1),
            "errors": sorted({(r.error or "")[:300] for r in records
                              if r.status != Status.SUCCEEDED.value})}


def run(tiny: bool = False, nodes: int | None = None, jobs: int | None = None
        ) -> list[dict[str, Any]]:
    count = jobs or (TINY_JOBS if tiny else JOBS)
    seconds = (0.1, 0.3) if tiny else (0.3, 0.9)
    shapes = node_shapes(nodes or (TINY_NODES if tiny else NODES))
    work = workload(count, seconds)
    ray.shutdown()
    with tempfile.TemporaryDirectory() as tmp, simulated_cluster(shapes) as (cluster, made):
        capacity = NodeShape(sum(s.cpus for s in shapes), sum(s.gpus for s in shapes))
        node_of = {node.node_id: shape for node, shape in zip(made, shapes, strict=True)}
        victims = [node for node, shape in zip(made, shapes, strict=True)
                   if shape == NodeShape(2, 0)]
        _warm(capacity.cpus)
        plain_s = baseline(work, Path(tmp) / "baseline")
        outcomes = {policy: run_policy(cluster, work, policy, Path(tmp) / policy,
                                       kill=victims if policy == "fair" else None)
                    for policy in ("fifo", "fair")}
    rows = []
    for policy, outcome in outcomes.items():
        honoured = resources_honoured(outcome["records"], node_of)
        fair = fairness(held_spans(outcome["records"]), capacity)
        ran = fairness(running_spans(outcome["records"]), capacity)
        once = exactly_once(outcome)
        measured = {k: v for k, v in outcome.items() if k not in ("records", "done_lines")}
        rows.append({
            "row": f"11{'a' if policy == 'fifo' else 'b'} simulated cluster, {len(shapes)} nodes, "
                   f"{count} jobs, queue policy {policy}"
                   + (", a node killed" if outcome["killed"] else ""),
            "baseline": "the same sleeps straight on Ray (no store, no dispatcher)",
            **measured, "baseline_makespan_s": plain_s,
            "ratio": outcome["makespan_s"] / plain_s, **honoured, **fair,
            "jain_running": ran["jain"], **once,
            "priority_inversions": priority_inversions(outcome["records"]),
            "target": f">= {TARGET_LAUNCHES_S:.0f} launches/s, no node over its resources, "
                      "no priority inversion, every job finished exactly once"
                      + (f", fairness (Jain) >= {TARGET_FAIRNESS}" if policy == "fair" else ""),
            "met": bool(outcome["launches_per_s"] >= TARGET_LAUNCHES_S
                        and honoured["nodes_over_their_resources"] == 0
                        and honoured["gpu_jobs_off_gpu_nodes"] == 0
                        and priority_inversions(outcome["records"]) == 0
                        and once["succeeded"] == once["jobs"] and once["finished_twice"] == 0
                        and once["never_finished"] == 0
                        and (policy == "fifo" or fair["jain"] >= TARGET_FAIRNESS))})
    return rows


if __name__ == "__main__":  # `python -m bench.cluster_sim [--tiny] [--nodes N] [--jobs N]`
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--out", type=Path, help="also write the rows here as JSON (the "
                                                 "nodes' own output shares stdout)")
    args = parser.parse_args()
    report = json.dumps(run(args.tiny, args.nodes, args.jobs), indent=2, default=str)
    print(report)
    if args.out:
        args.out.write_text(report)
