"""The MLflow versions the private surfaces are used with, and the one line that says what to
do about any other."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import mlflow
import pytest

from services import mlflow_internals
from services.mlflow_internals import SUPPORTED_RANGE, TESTED_WITH, check_mlflow_version

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_and_the_pinned_mlflow_are_supported():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"mlflow=={TESTED_WITH}" in dependencies, "move the pin and SUPPORTED together"
    assert mlflow_internals.is_supported(TESTED_WITH)
    assert mlflow_internals.is_supported(mlflow.__version__)


@pytest.mark.parametrize("version, supported", [
    ("3.17.0", True), ("3.17.9", True), ("3.17.3rc0", True), ("3.16.2", False),
    ("3.18.0", False), ("3.18.0rc1", False), ("4.0.0", False), ("2.22.1", False),
    ("nightly", False)])
def test_only_the_supported_minor_release_is_supported(version, supported):
    assert mlflow_internals.is_supported(version) is supported


@pytest.fixture
def warnings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the check logs as warnings (the service's log handlers may not propagate)."""
    said: list[str] = []
    monkeypatch.setattr(mlflow_internals.log, "warning", said.append)
    monkeypatch.setattr(mlflow_internals, "_warned", set())
    return said


def test_an_unsupported_mlflow_is_one_warning_saying_what_to_do(monkeypatch, warnings):
    monkeypatch.setattr(mlflow_internals, "installed_mlflow_version", lambda: "3.18.0")
    assert check_mlflow_version() is False
    assert check_mlflow_version() is False  # every run asks; the log says it once
    [said] = warnings
    assert "\n" not in said
    assert "MLflow 3.18.0 is installed" in said
    assert re.search(rf"tested with {re.escape(SUPPORTED_RANGE)} \({TESTED_WITH}\)", said)
    assert f"pip install '{SUPPORTED_RANGE}'" in said and f"mlflow=={TESTED_WITH}" in said


def test_the_supported_mlflow_says_nothing(warnings):
    assert check_mlflow_version() is True
    assert warnings == []
