"""The compose file and the Dockerfile name entry points that exist in this image."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _commands() -> list[tuple[str, list[str]]]:
    commands = []
    for name, service in _compose()["services"].items():
        command = service.get("command")
        if command is None:
            continue
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        commands.append((name, [a for a in argv if not a.startswith("${")]))
    return commands


def _help_argv(argv: list[str]) -> list[str]:
    """The command's own `--help`: program and subcommands, without the options."""
    head = [argv[0]] if argv[0] != "python" else ["python", "-m", argv[2]]
    rest = argv[len(head):]
    subcommands = [a for a in rest[:1] if not a.startswith("-")]
    program = [sys.executable, *head[1:]] if head[0] == "python" else [str(BIN / head[0])]
    return [*program, *subcommands, "--help"]


@pytest.mark.parametrize("service, argv", _commands(), ids=[c[0] for c in _commands()])
def test_every_compose_command_is_a_real_entry_point(service, argv):
    done = subprocess.run(_help_argv(argv), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{service}: {argv} -> {done.stderr[-2000:]}"
    options = [a.split("=")[0] for a in argv if a.startswith("--")]
    for option in options:  # every option the compose file passes is one the command knows
        assert option in done.stdout, f"{service}: {option} is not an option of {argv[:3]}"


def test_services_start_in_order_and_share_the_ray_token():
    services = _compose()["services"]
    assert set(services) >= {"postgres", "mlflow", "ray-head", "ray-worker", "api"}
    assert services["api"]["environment"]["RAY_ADDRESS"] == "ray-head:6379"
    assert set(services["api"]["depends_on"]) == {"postgres", "mlflow", "ray-head"}
    for name in ("mlflow", "ray-head", "ray-worker", "api"):
        assert services[name]["environment"]["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN")
    # MLflow 3 keeps a `jobs` table of its own: it must not share the job store's database.
    env = services["api"]["environment"]
    mlflow_db = env["LAYERWISE_MLFLOW_BACKEND_URI"].rsplit("/", 1)[1]
    assert mlflow_db != env["LAYERWISE_DATABASE_URL"].rsplit("/", 1)[1]
    assert services["mlflow"]["command"].split("--backend-store-uri ")[1].split()[0] == \
        env["LAYERWISE_MLFLOW_BACKEND_URI"]
    assert f"CREATE DATABASE {mlflow_db} " in (ROOT / "deploy/postgres-init.sql").read_text()
    gpu = services["ray-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]


def test_dockerfile_pins_torch_and_installs_the_project():
    text = (ROOT / "Dockerfile").read_text()
    assert "torch==2.13.0" in text and re.search(r"pip install \.$", text, re.M)
    pinned = re.search(r'"torch==([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned and pinned.group(1) == "2.13.0"


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="Debian's docker-compose is not installed (.ci/run installs it)")
def test_compose_file_is_valid():
    done = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config",
                           "-q"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _deployments() -> dict[str, dict]:
    docs = yaml.safe_load_all((ROOT / "deploy/raycluster.yaml").read_text())
    return {d["metadata"]["name"]: d for d in docs if d and d["kind"] == "Deployment"}


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_kuberay_probes_match_what_each_api_replica_needs():
    """One replica runs the dispatcher, and only its readiness involves Ray (its /readyz
    checks Ray and the dispatch loop); the others run `serve --no-dispatcher`, whose /readyz
    checks the store and MLflow: they are given no Ray address, as they never use one."""
    dispatching, plain = [], []
    for name, deployment in _deployments().items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        argv = container["command"]
        assert argv[:2] == ["layerwise", "serve"], f"{name}: {argv}"
        port = int(argv[argv.index("--port") + 1])
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
        env = _env(container)
        # Every replica queues into and reads from the same job store and MLflow.
        assert env["LAYERWISE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "database-url"
        assert env["LAYERWISE_MLFLOW_TRACKING_URI"]["value"] == "http://mlflow:5000"
        (plain if "--no-dispatcher" in argv else dispatching).append((deployment, env))
    assert len(dispatching) == 1 and plain, "one dispatcher replica and API replicas without"
    deployment, env = dispatching[0]
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"  # never two dispatchers
    assert env["RAY_ADDRESS"]["value"] == "layerwise-head-svc:6379"
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "ray-auth-token"
    for _, env in plain:
        assert not {"RAY_ADDRESS", "RAY_AUTH_TOKEN"} & set(env)


def test_kuberay_serve_options_are_real():
    done = subprocess.run([str(BIN / "layerwise"), "serve", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for deployment in _deployments().values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        for option in (a for a in container["command"] if a.startswith("--")):
            assert option in done.stdout, f"{option} is not an option of `layerwise serve`"
