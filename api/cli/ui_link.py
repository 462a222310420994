"""Where the CLI's run links point: the MLflow UI that `layerwise ui` serves.

`layerwise ui --port 5201` records its URL and process id in `<home>/ui.json` (home:
LAYERWISE_HOME, default ./.layerwise, where the service keeps its stores) while it runs; the
links of later commands point there. LAYERWISE_MLFLOW_UI_URL, when set, wins (a UI elsewhere);
with neither, the links point at http://127.0.0.1:5000, what `layerwise ui` serves by default."""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULT_UI_URL = "http://127.0.0.1:5000"
RECORD = "ui.json"


def record_path(home: Path | None = None) -> Path:
    """The record in `home`, else in the home the service's settings default to."""
    base = home if home is not None else Path(os.environ.get("LAYERWISE_HOME", ".layerwise"))
    return base.expanduser() / RECORD


def link_host(host: str) -> str:
    """A host a browser can open: a UI listening on every interface is reached locally."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def record(url: str, home: Path) -> Path:
    """Note that this process serves the UI at `url` (until `forget`)."""
    path = record_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    return path


def forget(path: Path) -> None:
    """Remove the record this process wrote, not one a newer `layerwise ui` wrote since."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        return  # gone or unreadable: no record of ours is left to remove


def ui_url() -> str:
    """The base URL of the MLflow UI for run links."""
    configured = os.environ.get("LAYERWISE_MLFLOW_UI_URL")
    if configured:
        return configured.rstrip("/")
    try:
        served = json.loads(record_path().read_text())
        url, pid = str(served["url"]), int(served["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_UI_URL
    return url.rstrip("/") if _alive(pid) else DEFAULT_UI_URL


def _alive(pid: int) -> bool:
    """Whether the `layerwise ui` that wrote the record still runs (a killed one leaves it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return False
    return True
