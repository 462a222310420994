"""The `layerwise` command as a package: every command registered under its name, and the
client commands free of what only the service's own processes need."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from api.cli import app

COMMANDS = ["serve", "dispatcher", "submit", "status", "list", "cancel", "sweep",
            "sweep-status", "sweeps", "sweep-cancel", "catalog", "ui", "compare", "repair", "check"]


def test_every_command_is_registered_under_its_name_in_order():
    assert [command.name for command in app.registered_commands] == COMMANDS
    shown = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert all(f" {name} " in shown.output for name in COMMANDS)


def test_the_client_commands_load_neither_torch_nor_ray_nor_mlflow():
    """`layerwise status` imports the whole package: serve, dispatcher and ui import the app,
    the dispatcher and the settings inside their bodies."""
    heavy = ["torch", "ray", "mlflow", "fastapi", "pydantic_settings"]
    probe = (f"import sys, api.cli; print([m for m in {heavy!r} if m in sys.modules])")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"


def test_python_dash_m_runs_the_same_app():
    shown = subprocess.run([sys.executable, "-m", "api.cli", "status", "--help"],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "Show one job" in shown.stdout
