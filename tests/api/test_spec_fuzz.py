"""Mutation fuzz from the examples: every spec in examples/, one field at a time set to an odd
value (tests/utils/spec_mutations.py), POSTed to the real server on each job store.

Whatever a client sends, the answer is a 4xx that names the field or an accepted job: never a
5xx, never a dropped connection or an answer that does not come, and every 422 carries a
non-empty field path in each of its `errors[*].loc`. Generated data (Schemathesis, in
test_schema_fuzz.py) rarely gets past validation; these start from specs that run, so each
case reaches the dry run with all but one field sound.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.utils.server import ServerThread
from tests.utils.settings import local_settings
from tests.utils.spec_mutations import Mutation, mutations

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CASES = 500  # per backend: every position twice or so, layer-list entries with -1 and 10**12
SEED = 0
ANSWER_WITHIN_S = 30.0  # a dry run takes tens of milliseconds; more is a hang


@pytest.fixture
def paused_server(ray_cluster: None, store_url: str, tmp_path: Path
                  ) -> Iterator[ServerThread]:
    # The queue cap must not answer for them.
    settings = local_settings(tmp_path, database_url=store_url, max_queued_per_owner=100_000)
    with ServerThread(settings) as server:
        server.dispatcher.paused = True  # accepted specs stay queued, nothing trains
        yield server


def test_mutated_examples_get_a_named_refusal_or_a_job(paused_server: ServerThread):
    cases = mutations(CASES, seed=SEED)
    assert len(cases) == CASES  # the examples give more positions than the budget
    failures: list[str] = []
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=paused_server.url, timeout=ANSWER_WITHIN_S) as http:
        for case in cases:
            started = time.perf_counter()
            try:
                response = http.post(case.route, json=case.body)
            except httpx.TransportError as exc:  # dropped, reset, or no answer in time
                failures.append(f"{case}: no answer after {time.perf_counter() - started:.1f}s "
                                f"({type(exc).__name__}: {exc})")
                continue
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            problem = _problem(case, response)
            if problem:
                failures.append(problem)
    print(f"{len(cases)} cases, statuses {dict(sorted(statuses.items()))}")
    assert statuses.get(422, 0) > len(cases) // 4  # most odd values are refused
    assert statuses.get(201, 0) > 0  # and some pass (a 0 where 0 is allowed): they reach runs
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)


def _problem(case: Mutation, response: httpx.Response) -> str | None:
    """What is wrong with this answer, or None."""
    if response.status_code >= 500:
        return f"{case}: {response.status_code} {response.text[:300]}"
    if response.status_code != 422:
        return None
    try:
        errors = response.json().get("errors")
    except ValueError:
        return f"{case}: 422 whose body is not JSON: {response.text[:300]}"
    if not errors or not all(error.get("loc") for error in errors):
        return f"{case}: 422 without a field path in every error: {response.text[:300]}"
    return None
