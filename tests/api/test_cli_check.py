"""`layerwise check` against a real server: experiments and a sweep submitted together, their
claims judged at the end (exit 1 when one fails), and a refused file (exit 2)."""

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


def _check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "api.cli", "check", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=400, env={**os.environ, "COLUMNS": "250"})


def _write(path: Path, document: dict) -> str:
    path.write_text(yaml.safe_dump(document))
    return str(path)


def test_check_submits_waits_and_fails_on_a_claim_that_did_not_hold(server, tmp_path):
    small = {"training": {"epochs": 2}, "model": {"hidden": [16]}}
    holds = _write(tmp_path / "holds.yaml", mlp_spec(**small, expect=[
        {"metric": "val/accuracy", ">": 0.3}, {"metric": "train/loss", "<": 10}]))
    fails = _write(tmp_path / "fails.yaml", mlp_spec(**small, expect={
        "metric": "val/accuracy", ">=": 0.999}))
    sweep = _write(tmp_path / "sweep.yaml", {
        "base": mlp_spec(**small), "repeat": 2, "search": {"metric": "val/accuracy",
                                                          "mode": "max"},
        "space": {"optimizer.lr": {"type": "grid", "values": [1e-2, 1e-6]}},
        "expect": [{"compare": {"metric": "val/accuracy", "better": {"optimizer.lr": 1e-2},
                                "worse": {"optimizer.lr": 1e-6}, "confidence": 0.9}}]})

    # One --set for all: an experiment's path, in a sweep its base's.
    answer = _check(holds, fails, sweep, "--set", "model.hidden=[12]", "--url", server.url)

    assert answer.returncode == 1, answer.stdout + answer.stderr
    lines = answer.stdout.splitlines()
    # The final table's rows (the lines before it tell each file's progress).
    row = {name: [line for line in lines if f"{name}.yaml" in line and "│" in line]
           for name in ("holds", "fails", "sweep")}
    assert len(row["holds"]) == 2 and all("yes" in line for line in row["holds"])
    assert "val/accuracy >= 0.999" in row["fails"][0] and "NO" in row["fails"][0]
    assert "better than" in row["sweep"][0] and "yes" in row["sweep"][0], answer.stdout
    assert "3 of 4 held" in answer.stdout
    # The record keeps what was judged: `status` shows it again.
    job_id = next(line.split()[-1] for line in lines if line.startswith(f"{fails}: submitted"))
    record = server.client().get(job_id)
    assert record.result["expectations"][0]["held"] is False
    assert record.result["expectations"][0]["observed"] == record.result["val/accuracy"]
    assert record.spec["model"]["hidden"] == [12]
    sweep_id = next(line.split()[-1] for line in lines if line.startswith(f"{sweep}: submitted"))
    assert server.client().get_sweep(sweep_id).spec["base"]["model"]["hidden"] == [12]
    status = subprocess.run([sys.executable, "-m", "api.cli", "status", job_id, "--url",
                             server.url], capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={**os.environ, "COLUMNS": "200"})
    assert any("val/accuracy >= 0.999" in line and "NO" in line
               for line in status.stdout.splitlines()), status.stdout


def test_check_exits_2_on_a_refused_file_naming_the_field(server, tmp_path):
    refused = _write(tmp_path / "refused.yaml", mlp_spec(expect={"metric": "val/mse", "<": 1}))
    answer = _check(refused, "--url", server.url)
    assert answer.returncode == 2, answer.stdout + answer.stderr
    assert "expect.0.metric" in answer.stderr and "'val/mse' is not a metric" in answer.stderr
