"""Over REST (the real HTTP server, Ray, MLflow): repairing a job again returns its pending or
finished repair, or tries the next candidate. While the repair is queued or running, and once
it finished and helped, `POST .../repair` answers 200 with it; once it finished without
helping, 201 with the next ranked alternative. Whether a finished repair helped is set
through the store (the record the route reads), so that the semantics, not the engine's
judgement of a small run, decide."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.api.test_diverged_record_e2e import RATE, X

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_repairing_again_returns_the_repair_or_tries_the_next_fix(server):
    client, http = server.client(), server.http()
    store = server.app.state.store
    np.savez(Path(server.settings.data_root_list[0]) / "unit.npz", x=X,
             y=X.sum(axis=1, keepdims=True))
    failed = client.wait(client.submit(RATE).id, timeout=180)
    assert failed.status == "failed" and failed.diagnosis["verdict"] == "diverged"
    ranked = [failed.diagnosis["findings"][0]["fix"],
              *failed.diagnosis["findings"][0]["alternatives"]]
    assert len(ranked) >= 2

    first = http.post(f"/v1/experiments/{failed.id}/repair")
    assert first.status_code == 201, first.text
    one = first.json()
    pending = http.post(f"/v1/experiments/{failed.id}/repair")  # queued or running: it
    assert pending.status_code == 200 and pending.json()["id"] == one["id"], pending.text
    done = client.wait(one["id"], timeout=180)
    assert done.status in ("succeeded", "failed"), done.error

    # Finished and helped (healthy): asking again answers it.
    store.update(one["id"], result={"val/loss": 0.5}, diagnosis={
        "verdict": "healthy", "findings": [], "baseline": {"loss": 2.0}})
    helped = http.post(f"/v1/experiments/{failed.id}/repair")
    assert helped.status_code == 200 and helped.json()["id"] == one["id"], helped.text
    assert helped.json()["repair"]["helped"] is True

    # Finished without helping (a quarter of the way from the baseline loss to 0): the
    # next ranked alternative, once.
    store.update(one["id"], result={"val/loss": 1.5}, diagnosis={
        "verdict": "not_learning", "findings": [], "baseline": {"loss": 2.0}})
    assert client.get(one["id"]).repair.helped is False
    second = http.post(f"/v1/experiments/{failed.id}/repair")
    assert second.status_code == 201, second.text
    two = second.json()
    assert two["id"] != one["id"] and two["repair_candidate"] == 1
    for path, value in ranked[1].items():
        section, name = path.split(".")
        assert two["spec"][section][name] == value, path
    again = http.post(f"/v1/experiments/{failed.id}/repair")
    assert again.status_code == 200 and again.json()["id"] == two["id"], again.text
