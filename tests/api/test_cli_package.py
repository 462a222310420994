"""The `layerwise` command as installed: every command listed under its name and answering its
help, and the client commands free of what only the service's own processes need."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from typer.testing import CliRunner

# What `layerwise --help` must offer, in this order: the commands the docs name (docs/ and
# README.md), written here independently of where api/cli registers them.
COMMANDS = ["serve", "dispatcher", "submit", "status", "list", "cancel", "sweep",
            "sweep-status", "sweeps", "sweep-cancel", "catalog", "ui", "compare", "repair", "check",
            "logs"]


def _listed(help_text: str) -> list[str]:
    """The command names in the Commands panel of a `--help`, in order."""
    panel = help_text.split("Commands")[1]
    return re.findall(r"^[│|] (\S+)\s{2,}", panel, flags=re.MULTILINE)


def test_the_installed_command_lists_every_command_in_order():
    """The console script pyproject.toml installs, run as a user runs it."""
    (entry,) = entry_points(group="console_scripts", name="layerwise")
    script = Path(sys.executable).with_name(entry.name)
    shown = subprocess.run([str(script), "--help"], capture_output=True, text=True,
                           timeout=120, env={"COLUMNS": "200", "PATH": str(script.parent)})
    assert shown.returncode == 0, shown.stderr
    assert _listed(shown.stdout) == COMMANDS


def test_every_command_answers_its_own_help():
    """A name registered to the wrong function or to none fails here, not in a user's shell."""
    (entry,) = entry_points(group="console_scripts", name="layerwise")
    app = entry.load()
    for name in COMMANDS:
        shown = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"})
        assert shown.exit_code == 0, (name, shown.output)
        assert f" {name} [OPTIONS]" in shown.output, (name, shown.output)  # its own usage


def test_the_client_commands_load_neither_torch_nor_ray_nor_mlflow():
    """`layerwise status` imports the whole package: serve, dispatcher and ui import the app,
    the dispatcher and the settings inside their bodies."""
    # sqlalchemy: the response models the client returns are plain pydantic, not the store's.
    heavy = ["torch", "ray", "mlflow", "fastapi", "pydantic_settings", "sqlalchemy", "alembic"]
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
