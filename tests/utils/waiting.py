"""Waiting in tests for something to happen, never for a while: poll the condition itself until
a deadline, and when it passes, fail naming what never happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str | Callable[[], str], *,
               every: float = 0.1, ignoring: tuple[type[BaseException], ...] = ()) -> T:
    """The first truthy value of `predicate()`, called every `every` seconds; AssertionError
    naming `what` (a text, or a callable for one that shows the state at the end) after
    `timeout` seconds. Exceptions of the `ignoring` types count as "not yet" (a server not up);
    any other ends the wait at once, and so does an AssertionError whatever `ignoring` says (a
    predicate asserts what must hold while it waits: the job has not failed, the process
    runs)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except AssertionError:
            raise
        except ignoring:
            value = None  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() >= deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"waited {timeout:g} s for {said}")
        time.sleep(every)  # the interval between two polls, not a wait for the condition
