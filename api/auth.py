"""Bearer tokens: `LAYERWISE_API_TOKENS` and `LAYERWISE_ADMIN_TOKENS`.

Each entry is `token` or `owner:token`. Unset: no authentication, everyone is an admin.
A token sees and cancels its own jobs; an admin token sees every job.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    owner: str
    admin: bool


ANONYMOUS = Principal("anonymous", admin=True)


def parse_tokens(raw: str | None) -> list[tuple[str, str]]:
    """[(owner, token)]; a bare token is its own owner name's source (its first 8 chars)."""
    entries = []
    for item in (raw or "").split(","):
        item = item.strip()
        if not item:
            continue
        owner, _, token = item.partition(":") if ":" in item else (f"token-{item[:8]}", "", item)
        entries.append((owner, token))
    return entries


class TokenTable:
    def __init__(self, api_tokens: str | None, admin_tokens: str | None):
        self.users = parse_tokens(api_tokens)
        self.admins = parse_tokens(admin_tokens)

    @property
    def enabled(self) -> bool:
        return bool(self.users or self.admins)

    def authenticate(self, token: str) -> Principal | None:
        """Compare against every entry in constant time, so timing tells nothing."""
        found: Principal | None = None
        for entries, admin in ((self.admins, True), (self.users, False)):
            for owner, known in entries:
                if hmac.compare_digest(token.encode(), known.encode()) and found is None:
                    found = Principal(owner, admin)
        return found
