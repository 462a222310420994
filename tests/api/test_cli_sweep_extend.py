"""`layerwise sweep --extend ID --trials N` against a real server: a finished random sweep goes
on with N more trials, drawn after its draws (not the same values again), its trials given as
`search.prior`; what cannot be extended is refused with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.utils.specs import mlp_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, env={**os.environ, "COLUMNS": "200"})


def _sweep(algorithm: str) -> dict:
    base = mlp_spec(name="extend-me", data={"name": "xor", "params": {"n": 100}},
                    model={"hidden": [4]}, training={"epochs": 1, "batch_size": 32},
                    diagnostics={"every_steps": 5, "plots": False})
    space = ({"optimizer.lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1}}
             if algorithm != "grid" else {"optimizer.lr": {"type": "grid",
                                                            "values": [0.01, 0.1]}})
    return {"name": "extend-me", "base": base, "space": space,
            "search": {"algorithm": algorithm, "num_samples": 2 if algorithm != "grid" else 1,
                       "metric": "val/loss", "mode": "min"}}


def _finished_sweep(server, tmp_path, algorithm: str) -> str:
    """A sweep of `algorithm` run to its end through the CLI; its id."""
    path = tmp_path / f"{algorithm}.yaml"
    path.write_text(yaml.safe_dump(_sweep(algorithm)))
    done = _cli("sweep", str(path), "--wait", "--url", server.url)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.split("submitted sweep ")[1].split()[0]


def test_a_finished_random_sweep_is_extended_with_new_draws(server, tmp_path):
    first_id = _finished_sweep(server, tmp_path, "random")

    more = _cli("sweep", "--extend", first_id[:12], "--trials", "2", "--wait",
                "--url", server.url)
    assert more.returncode == 0, more.stdout + more.stderr
    assert f"extending sweep {first_id}: 2 earlier trials" in more.stdout
    second_id = more.stdout.split("submitted sweep ")[1].split()[0]
    client = server.client()
    earlier, later = client.get_sweep(first_id), client.get_sweep(second_id)
    assert later.status == "succeeded" and later.trials_total == 2
    assert later.name == "extend-me (extended)" and later.spec["tags"]["extends"] == first_id
    prior = later.spec["search"]["prior"]
    assert sorted(p["params"]["optimizer.lr"] for p in prior) == sorted(
        t.params["optimizer.lr"] for t in earlier.trials)
    assert not {t.params["optimizer.lr"] for t in later.trials} & {
        t.params["optimizer.lr"] for t in earlier.trials}  # drawn after, not again


def test_what_cannot_be_extended_is_refused_with_the_reason(server, tmp_path):
    grid_id = _finished_sweep(server, tmp_path, "grid")
    refused = _cli("sweep", "--extend", grid_id, "--trials", "2", "--url", server.url)
    assert refused.returncode != 0 and "grid search, which has run every point" in (
        refused.stdout + refused.stderr)
    missing = _cli("sweep", "--extend", grid_id, "--url", server.url)
    assert missing.returncode != 0 and "--extend needs --trials N" in (
        missing.stdout + missing.stderr)
