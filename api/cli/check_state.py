"""What the last `layerwise check` run in a directory found per file, so that `check --failed`
reruns only the files that did not hold: `.layerwise/check-last.json` in the current directory.

A run without `--failed` replaces the file; a run with it updates the entries of the files it
ran and keeps the others, so the file always tells each file's latest outcome."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATE = Path(".layerwise", "check-last.json")
MAX_FILES = 10_000  # entries kept; beyond, files that held are dropped first
HELD, NO_CLAIMS = "held", "no claims"  # the outcomes that need no rerun


class NoLastRun(Exception):
    """There is no readable record of a last `layerwise check` run here; the message says
    what to do."""


def key(file: str) -> str:
    """A file as the state names it: its path relative to here when it is below, so that
    `a.yaml`, `./a.yaml` and its absolute path are one file."""
    path = os.path.normpath(os.path.abspath(file))
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def read(state: Path = STATE) -> dict[str, dict[str, Any]]:
    """file -> {"outcome", "job_id"} of the last run."""
    try:
        document = json.loads(state.read_text())
    except FileNotFoundError:
        raise NoLastRun(f"no last `layerwise check` run here ({state} does not exist); run "
                        "`layerwise check FILE...` first") from None
    except (OSError, ValueError) as exc:
        raise NoLastRun(f"{state} cannot be read ({exc}); remove it and run `layerwise check "
                        "FILE...`") from None
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, dict):
        raise NoLastRun(f"{state} holds no files; remove it and run `layerwise check FILE...`")
    return {str(k): v for k, v in files.items() if isinstance(v, dict)}


def not_held(files: dict[str, dict[str, Any]]) -> list[str]:
    return [file for file, entry in files.items()
            if entry.get("outcome") not in (HELD, NO_CLAIMS)]


def write(outcomes: dict[str, dict[str, Any]], *, merge: bool, state: Path = STATE) -> None:
    """Record this run's outcome per file (keyed by `key`); with `merge`, over the last
    run's. Written to a temporary file and renamed, so an interrupted write leaves the last."""
    files: dict[str, dict[str, Any]] = {}
    if merge:
        try:
            files = read(state)
        except NoLastRun:
            files = {}  # no last run to merge with: this run's outcomes are the record
    files.update(outcomes)
    if len(files) > MAX_FILES:
        ranked = sorted(files, key=lambda f: files[f].get("outcome") in (HELD, NO_CLAIMS))
        files = {f: files[f] for f in ranked[:MAX_FILES]}
    state.parent.mkdir(parents=True, exist_ok=True)
    partial = state.with_suffix(".partial")
    partial.write_text(json.dumps({"written_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                   "files": files}, indent=1) + "\n")
    os.replace(partial, state)
