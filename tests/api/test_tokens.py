"""Every token is a principal of its own, its owner name shows nothing of it, and a token
setting that cannot be used stops the service at start, naming the setting."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from api.auth import TokenConfigError, TokenTable
from tests.utils.server import ServerThread
from tests.utils.service_process import LAYERWISE
from tests.utils.settings import local_settings
from tests.utils.specs import mlp_spec

A, B = "sk-team1-aaaaaaaa", "sk-team1-bbbbbbbb"  # the same first 8 characters


def test_tokens_that_share_a_prefix_are_distinct_owners_and_names_hide_them():
    table = TokenTable(f"{A},{B}", None)
    first, second = table.authenticate(A), table.authenticate(B)
    assert first is not None and second is not None
    assert first.owner != second.owner
    for principal, token in ((first, A), (second, B)):
        assert not any(token[i:i + 4] in principal.owner for i in range(len(token) - 3))
    assert table.authenticate("") is None and table.authenticate("sk-team1-") is None


@pytest.mark.parametrize("api, admin, setting, words", [
    ("carol:", None, "LAYERWISE_API_TOKENS", "empty token"),
    ("alice:t1,bob:t1", None, "LAYERWISE_API_TOKENS", "every token must appear once"),
    ("alice:t1", "root:t1", "LAYERWISE_ADMIN_TOKENS", "every token must appear once"),
    ("alice:t1", "alice:t2", "LAYERWISE_ADMIN_TOKENS", "a user or an admin"),
    ("al ice:t1", None, "LAYERWISE_API_TOKENS", "owner name"),
])
def test_an_unusable_token_setting_is_refused_naming_it(api, admin, setting, words):
    with pytest.raises(TokenConfigError) as refused:
        TokenTable(api, admin)
    assert setting in str(refused.value) and words in str(refused.value)


def test_an_owner_may_hold_two_tokens_to_rotate_one():
    table = TokenTable("alice:old,alice:new", None)
    assert table.authenticate("old") == table.authenticate("new")


def test_serve_refuses_to_start_with_an_empty_token(tmp_path: Path):
    import os

    env = {**os.environ, "LAYERWISE_HOME": str(tmp_path), "LAYERWISE_API_TOKENS": "carol:"}
    done = subprocess.run([*LAYERWISE, "serve", "--no-dispatcher", "--port", "1"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    assert "LAYERWISE_API_TOKENS" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.e2e
def test_a_token_cannot_read_or_cancel_the_jobs_of_a_token_sharing_its_prefix(tmp_path: Path):
    settings = local_settings(tmp_path, api_tokens=f"{A},{B}")
    with ServerThread(settings, dispatcher=False) as server:
        with server.http(A) as first, server.http(B) as second:
            job = first.post("/v1/experiments", json=mlp_spec()).json()
            assert A[:8] not in job["owner"]
            assert second.get(f"/v1/experiments/{job['id']}").status_code == 404
            assert second.post(f"/v1/experiments/{job['id']}/cancel").status_code == 404
            assert first.get(f"/v1/experiments/{job['id']}").status_code == 200
        with server.http() as anonymous:
            bare = anonymous.get("/v1/experiments", headers={"Authorization": "Bearer"})
            assert bare.status_code == 401
