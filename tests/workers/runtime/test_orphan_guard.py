"""The guard that stops a worker whose raylet died (the end-to-end case is in
tests/reliability/test_recovery.py)."""

from __future__ import annotations

import os

import pytest

from workers.runtime.orphan_guard import Orphaned, StopWhenOrphaned, raylet_gone


def test_a_worker_whose_parent_is_its_raylet_trains_on(monkeypatch):
    monkeypatch.setenv("RAY_RAYLET_PID", str(os.getppid()))
    guard = StopWhenOrphaned()
    guard.on_step_end(None)  # type: ignore[arg-type]
    guard.on_train_end(None)  # type: ignore[arg-type]
    assert not raylet_gone()


def test_a_worker_adopted_by_another_process_stops(monkeypatch):
    monkeypatch.setenv("RAY_RAYLET_PID", str(os.getppid() + 1))
    guard = StopWhenOrphaned()
    with pytest.raises(Orphaned, match="re-queued"):
        guard.on_epoch_end(None, {})  # type: ignore[arg-type]


def test_outside_ray_the_guard_never_fires(monkeypatch):
    monkeypatch.delenv("RAY_RAYLET_PID", raising=False)
    StopWhenOrphaned().on_step_end(None)  # type: ignore[arg-type]
    assert not raylet_gone()
