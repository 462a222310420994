"""`layerwise logs ID` and `GET /v1/experiments/{id}/logs`: a job's worker log, written by the
worker that ran it, read back bounded; another owner's job is a 404."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.lifecycle import Status
from tests.utils.server import ServerThread, two_owners
from tests.utils.specs import mlp_spec
from workers.runtime.job_log import capturing

ROOT = Path(__file__).resolve().parents[2]
ALICE, BOB = "tok-alice-logs", "tok-bob-logs"


def _logs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "api.cli", "logs", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, env={**os.environ, "COLUMNS": "200"})


@pytest.mark.e2e
@pytest.mark.slow
def test_logs_prints_the_end_of_what_the_worker_wrote(server):
    client = server.client()
    job = client.submit(mlp_spec(training={"epochs": 2}, model={"hidden": [16]}))
    assert client.wait(job.id, timeout=300).status == "succeeded"

    whole = _logs(job.id[:10], "--url", server.url)

    assert whole.returncode == 0, whole.stdout + whole.stderr
    lines = whole.stdout.splitlines()
    assert "attempt started (pid" in lines[0]
    assert any("layerwise.worker: epoch 1/2 " in line and "train/loss" in line
               for line in lines), whole.stdout
    assert [sum(f"epoch {n}/2 " in line for line in lines) for n in (1, 2)] == [1, 1]
    assert lines[-1].endswith("attempt finished")
    assert whole.stderr == ""  # all of it: nothing said about earlier lines

    last = _logs(job.id, "--tail", "1", "--url", server.url)
    assert last.stdout.splitlines() == [lines[-1]]
    assert "(the last 1 lines of" in last.stderr and "--tail" in last.stderr


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with two_owners(tmp_path_factory.mktemp("logs"), ALICE, BOB) as running:
        yield running


@pytest.mark.e2e
def test_the_route_is_the_owners_bounded_and_says_when_there_is_no_log(guarded):
    with guarded.http(ALICE) as alice, guarded.http(BOB) as bob:
        job_id = alice.post("/v1/experiments", json=mlp_spec()).json()["id"]
        none_yet = alice.get(f"/v1/experiments/{job_id}/logs")
        assert none_yet.status_code == 409
        assert "has no worker log: it has not started yet" in none_yet.json()["detail"]

        guarded.app.state.store.move(job_id, Status.RUNNING)
        with capturing(guarded.settings.home_dir, job_id):  # as its worker does
            for n in range(30):
                print(f"worker line {n}")

        answer = alice.get(f"/v1/experiments/{job_id}/logs", params={"tail": 5})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["lines"][:4] == [f"worker line {n}" for n in range(26, 30)]
        assert body["lines"][4].endswith("attempt finished")
        assert len(body["lines"]) == 5 and body["truncated"] and body["status"] == "running"
        assert bob.get(f"/v1/experiments/{job_id}/logs").status_code == 404
        for tail in (0, 5001):
            refused = alice.get(f"/v1/experiments/{job_id}/logs", params={"tail": tail})
            assert refused.status_code == 422, refused.text
