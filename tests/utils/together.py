"""Several processes calling one function at the same moment (behind a barrier), as replicas
started together do: what each returned, or the error it raised, in our words."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any


def _call(function: Callable[..., Any], args: tuple, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        results.put(("ok", function(*args)))
    except Exception as exc:  # the test asserts on what went wrong, not on an exit code
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def at_once(function: Callable[..., Any], args: tuple, processes: int,
            timeout: float = 120) -> list[tuple[str, Any]]:
    """(`"ok"`, value) or (`"error"`, text) for each of `processes` spawned processes that
    called `function(*args)` together; `function` must be importable (module level)."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_call, args=(function, args, barrier, results))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=timeout) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    return outcomes
