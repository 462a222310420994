"""The hash a job is stored under: of what determines its run, so that equal requests are
told apart from changed ones (an experiment's spec without its name, tags and priority; a
sweep's whole spec)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def payload_hash(payload: Mapping[str, Any]) -> str:
    """16 hex digits of the SHA-256 of `payload` as JSON with sorted keys."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
