"""The `layerwise` command's options and errors against a real server: --url and --token on
either side of the command, one-line spec-file and unknown-field errors, --set, `list` with
verdicts and headline metrics, and run links that follow `layerwise ui --port`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from services.records import JobRecord
from services.store import JobStore
from tests.utils.server import ServerThread, free_port
from tests.utils.settings import local_settings
from tests.utils.specs import mlp_spec
from tests.utils.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
LAYERWISE = [sys.executable, "-m", "api.cli"]
# Nothing from the caller's shell may pick the service, the token or the UI for these runs.
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k not in ("LAYERWISE_URL", "LAYERWISE_TOKEN", "LAYERWISE_MLFLOW_UI_URL",
                          "LAYERWISE_HOME")}


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240
         ) -> subprocess.CompletedProcess:
    return subprocess.run([*LAYERWISE, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**CLEAN_ENV, "COLUMNS": "250", **(env or {})})


def _said(answer: subprocess.CompletedProcess) -> str:
    return answer.stdout + answer.stderr


def _tiny(**overrides: object) -> dict:
    return mlp_spec(**{"name": "cli-options", "data": {"name": "xor", "params": {"n": 200}},
                       "model": {"hidden": [8]}, "training": {"epochs": 1, "batch_size": 32},
                       **overrides})


def _write(path: Path, spec: dict) -> str:
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.fixture(scope="module")
def guarded(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[ServerThread]:
    """A server with two users' tokens and no dispatcher: its jobs stay queued, so
    submissions cost only their checks. (A second dispatcher on the session's Ray would drain
    the progress board `server`'s jobs report to.)"""
    settings = local_settings(tmp_path_factory.mktemp("guarded"),
                              api_tokens="alice:tok-alice,bob:tok-bob")
    with ServerThread(settings, dispatcher=False) as running:
        yield running


@pytest.fixture(scope="module")
def finished(server: ServerThread) -> JobRecord:
    """One tiny job run to its end on the real server: a result, a diagnosis, an MLflow run."""
    client = server.client()
    job_id = client.submit(_tiny(training={"epochs": 2, "batch_size": 32})).id
    record = client.wait(job_id, timeout=300)
    assert record.status == "succeeded" and record.diagnosis, record
    assert record.mlflow_run_id and record.mlflow_experiment_id, record  # for the run links
    return record


def test_url_and_token_go_before_or_after_the_command(guarded):
    alices = guarded.client("tok-alice").submit(_tiny(name="alices")).id
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for args in (("--url", guarded.url, "--token", "tok-alice", "list"),
                 ("list", "--url", guarded.url, "--token", "tok-alice"),
                 ("--token", "tok-alice", "list", "--url", guarded.url)):
        listed = _cli(*args)
        assert listed.returncode == 0, _said(listed)
        assert alices in listed.stdout, args
    # Both given: the one after the command wins.
    after_wins = _cli("--url", dead, "--token", "tok-bob", "list", "--url", guarded.url,
                      "--token", "tok-alice")
    assert after_wins.returncode == 0 and alices in after_wins.stdout, _said(after_wins)
    bobs_view = _cli("--token", "tok-alice", "list", "--url", guarded.url, "--token", "tok-bob")
    assert bobs_view.returncode == 0 and alices not in bobs_view.stdout, _said(bobs_view)
    unreachable = _cli("--url", guarded.url, "list", "--url", dead)
    assert unreachable.returncode == 2 and dead in _said(unreachable)
    # The environment still works, under either option.
    from_env = _cli("list", env={"LAYERWISE_URL": guarded.url, "LAYERWISE_TOKEN": "tok-alice"})
    assert from_env.returncode == 0 and alices in from_env.stdout, _said(from_env)
    refused = _cli("--url", guarded.url, "list")  # no token: the service's 401, one line
    assert refused.returncode == 1 and "401" in refused.stdout


def test_a_spec_file_that_is_not_yaml_or_no_mapping_is_one_line(guarded, tmp_path):
    before = guarded.client("tok-alice").list(limit=500).count
    tabbed = tmp_path / "tabbed.yaml"
    tabbed.write_text("name: tabbed\nmodel:\n\tkind: mlp\n")
    unclosed = tmp_path / "unclosed.json"
    unclosed.write_text('{"name": "x",\n "model": {"kind": "mlp"}\n')
    listed = tmp_path / "listed.yaml"
    listed.write_text("- data: {name: digits}\n")
    for file, where, words in ((tabbed, f"{tabbed}:3:1: ", "not tabs"),
                               (unclosed, f"{unclosed}:3:1: ", "close it"),
                               (listed, f"{listed}: ", "holds a list, not a mapping")):
        for command in ("submit", "sweep"):
            answer = _cli(command, str(file), "--url", guarded.url, "--token", "tok-alice")
            said = _said(answer).strip()
            assert answer.returncode == 1, said
            assert "Traceback" not in said and len(said.splitlines()) == 1, said
            assert said.startswith(where) and words in said, said
    missing = _cli("submit", str(tmp_path / "nope.yaml"), "--url", guarded.url)
    assert missing.returncode == 1 and "nope.yaml: No such file" in missing.stdout
    assert guarded.client("tok-alice").list(limit=500).count == before


def test_an_unknown_field_is_named_by_its_spec_path_with_the_closest_field(server, tmp_path):
    misspelt = _tiny(model={"kind": "mlp", "hidden": [8], "activaton": "tanh"})
    refused = _cli("submit", _write(tmp_path / "misspelt.yaml", misspelt), "--url", server.url)
    assert refused.returncode == 1, _said(refused)
    assert len(refused.stdout.strip().splitlines()) == 1, refused.stdout  # one field, one line
    assert "model.activaton:" in refused.stdout and "model.mlp" not in refused.stdout
    assert "did you mean 'activation'?" in refused.stdout
    http = server.http()
    answer = http.post("/v1/experiments", json=misspelt).json()
    (error,) = answer["errors"]
    # `loc` stays pydantic's (with the kind's tag); `path` is the spec's own.
    assert error["loc"] == ["model", "mlp", "activaton"] and error["path"] == "model.activaton"
    assert "model.activaton" in answer["detail"]
    swept = http.post("/v1/sweeps", json={"base": misspelt, "repeat": 2}).json()
    assert [e["path"] for e in swept["errors"]] == ["base.model.activaton"], swept
    kind = http.post("/v1/experiments", json=_tiny(model={"kind": "mpl"})).json()
    assert "did you mean 'mlp'?" in kind["errors"][0]["msg"], kind


def test_a_data_path_that_starts_with_the_root_says_the_relative_form(server, server_home,
                                                                      tmp_path):
    rng = np.random.default_rng(0)
    np.savez(server_home / "data" / "bars.npz", x=rng.normal(size=(64, 4)),
             y=rng.integers(0, 2, 64))
    spec = _tiny(data={"source": "file", "name": None, "path": "data/bars.npz"})
    refused = _cli("submit", _write(tmp_path / "bars.yaml", spec), "--url", server.url)
    assert refused.returncode == 1, _said(refused)
    assert "data.path" in refused.stdout
    assert "relative to a data root, so write 'bars.npz', not 'data/bars.npz'" in refused.stdout
    assert str(server_home) not in refused.stdout  # the server's root is never shown


def test_set_changes_a_spec_before_it_is_checked_and_submitted(guarded, tmp_path):
    client = guarded.client("tok-alice")
    file = _write(tmp_path / "tiny.yaml", _tiny())
    auth = ("--url", guarded.url, "--token", "tok-alice")
    changed = _cli("submit", file, "--set", "optimizer.lr=1e-3", "--set", "model.hidden=[16, 8]",
                   "--set", "training.epochs=2", "--set", "tags.note=from the shell", *auth)
    assert changed.returncode == 0, _said(changed)
    spec = client.get(changed.stdout.split("submitted ")[1].split()[0]).spec
    assert spec["optimizer"]["lr"] == 0.001 and spec["model"]["hidden"] == [16, 8]
    assert spec["training"]["epochs"] == 2 and spec["tags"]["note"] == "from the shell"
    before = client.list(limit=500).count
    for sets, words in ((["model.hidden.width=3"], "model.hidden is a list ([8]), not a mapping"),
                        (["optimizer.lr"], "--set optimizer.lr: no '='"),
                        (["optimizer.lr=-1"], "optimizer.lr"),  # checked like the file
                        (["model.activaton=tanh"], "did you mean 'activation'?")):
        refused = _cli("submit", file, *[f"--set={given}" for given in sets], *auth)
        said = _said(refused)
        assert refused.returncode == 1 and words in said and "Traceback" not in said, said
    assert client.list(limit=500).count == before


def test_set_on_a_sweep_starts_with_a_sweep_field(guarded, tmp_path):
    client = guarded.client("tok-alice")
    file = _write(tmp_path / "sweep.yaml", {"name": "set-sweep", "base": _tiny(), "space": {
        "optimizer.lr": {"type": "choice", "values": [0.01, 0.1]}}})
    auth = ("--url", guarded.url, "--token", "tok-alice")
    ambiguous = _cli("sweep", file, "--set", "optimizer.lr=0.1", *auth)
    assert ambiguous.returncode == 1, _said(ambiguous)
    assert "--set base.optimizer.lr=0.1" in ambiguous.stdout
    assert "--set space.optimizer.lr=" in ambiguous.stdout
    changed = _cli("sweep", file, "--set", "base.model.hidden=[4]",
                   "--set", "space.optimizer.lr.values=[0.02, 0.03]",
                   "--set", "search.num_samples=2", *auth)
    assert changed.returncode == 0, _said(changed)
    sweep_id = changed.stdout.split("submitted sweep ")[1].split()[0]
    spec = client.get_sweep(sweep_id).spec
    assert spec["base"]["model"]["hidden"] == [4]
    assert spec["space"]["optimizer.lr"]["values"] == [0.02, 0.03]
    assert client.cancel_sweep(sweep_id).status == "cancelled"


def test_list_shows_the_verdict_and_headline_metric_and_filters_by_them(server, finished):
    verdict = finished.diagnosis["verdict"]
    other = "exploding" if verdict != "exploding" else "vanishing"
    listed = _cli("list", "--url", server.url)
    assert listed.returncode == 0, _said(listed)
    (row,) = [line for line in listed.stdout.splitlines() if finished.id in line]
    accuracy = finished.result["val/accuracy"]
    assert verdict in row and f"acc {accuracy:.4g}" in row, row
    for args, shown in ((("--verdict", verdict), True), (("--verdict", other), False),
                        (("--status", "succeeded"), True), (("--status", "failed"), False),
                        (("--status", "succeeded", "--verdict", other), False)):
        answer = _cli("list", *args, "--url", server.url)
        assert answer.returncode == 0, _said(answer)
        assert (finished.id in answer.stdout) is shown, (args, answer.stdout)
    by_rest = server.http().get("/v1/experiments", params={"verdict": verdict}).json()
    assert finished.id in [r["id"] for r in by_rest["data"]]
    typo = _cli("list", "--verdict", "helthy", "--url", server.url)
    assert typo.returncode == 1 and "did you mean 'healthy'?" in typo.stdout, _said(typo)


def test_the_store_filters_by_the_final_verdict_on_either_backend(store_url):
    store = JobStore(store_url)
    ids = {}
    for name, diagnosis in (("vanishing", {"verdict": "vanishing"}),
                            ("healthy", {"verdict": "healthy"}), ("none", None)):
        record, _ = store.create(spec=_tiny(name=name), spec_hash=name, name=name,
                                 project="tests")
        store.update(record.id, diagnosis=diagnosis)
        ids[name] = record.id
    found, _ = store.list(verdict="vanishing")
    assert [r.id for r in found] == [ids["vanishing"]]
    assert {r.id for r in store.list()[0]} == set(ids.values())


def test_run_links_follow_the_port_layerwise_ui_serves(server, finished, tmp_path):
    home = tmp_path / "home"
    env = {"LAYERWISE_HOME": str(home)}
    port = free_port()
    ui = subprocess.Popen([*LAYERWISE, "ui", "--port", str(port)], cwd=ROOT,
                          env={**CLEAN_ENV, **env}, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: (home / "ui.json").exists(), 60, "layerwise ui to record its URL")
        assert json.loads((home / "ui.json").read_text())["url"] == f"http://127.0.0.1:{port}"
        shown = _cli("status", finished.id, "--url", server.url, env=env)
        assert shown.returncode == 0, _said(shown)
        assert (f"MLflow run: http://127.0.0.1:{port}/#/experiments/"
                f"{finished.mlflow_experiment_id}/runs/{finished.mlflow_run_id}") in shown.stdout
        elsewhere = _cli("status", finished.id, "--url", server.url,
                         env={**env, "LAYERWISE_MLFLOW_UI_URL": "http://mlflow.example:7000"})
        assert "MLflow run: http://mlflow.example:7000/#/" in elsewhere.stdout  # set: it wins
    finally:
        os.killpg(ui.pid, signal.SIGTERM)  # the ui and the MLflow server it started
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait(timeout=30)
    after = _cli("status", finished.id, "--url", server.url, env=env)
    assert "MLflow run: http://127.0.0.1:5000/#/" in after.stdout, _said(after)
