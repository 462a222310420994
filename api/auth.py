"""Bearer tokens: `LAYERWISE_API_TOKENS` and `LAYERWISE_ADMIN_TOKENS`.

Each entry is `token` or `owner:token`. Unset: no authentication, everyone is an admin.
A token sees and cancels its own jobs; an admin token sees every job.

Every token is its own principal. A bare token's owner name is derived from a SHA-256 digest of
the whole token, so two tokens never share an owner by accident and the name, which every job
record shows, reveals nothing of the token. Only an operator's explicit `owner:` gives two
tokens one owner (to rotate a token: `alice:old,alice:new`). An empty token, a token listed
twice, or one owner name with both user and admin tokens is refused when the service starts,
naming the setting.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

OWNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class TokenConfigError(ValueError):
    """The token settings cannot be used; the message names the setting and the fix."""


@dataclass(frozen=True)
class Principal:
    owner: str
    admin: bool


ANONYMOUS = Principal("anonymous", admin=True)


def derived_owner(token: str) -> str:
    """The owner name of a bare token: a digest of all of it, so that tokens sharing a prefix
    stay apart and the name cannot be turned back into the token."""
    return "token-" + hashlib.sha256(token.encode()).hexdigest()[:16]


def parse_tokens(raw: str | None, setting: str) -> list[tuple[str, str]]:
    """[(owner, token)] from a comma-separated setting.

    Raises:
        TokenConfigError: an empty token or an owner name that is not a plain word.
    """
    entries = []
    for position, item in enumerate((raw or "").split(",")):
        item = item.strip()
        if not item:
            continue
        owner, sep, token = item.partition(":")
        if not sep:
            owner, token = derived_owner(item), item
        token = token.strip()
        if not token:
            raise TokenConfigError(
                f"{setting}: entry {position + 1} ({owner!r}) has an empty token; write "
                "owner:token with a token, or remove the entry")
        if not OWNER_NAME.match(owner):
            raise TokenConfigError(
                f"{setting}: entry {position + 1} has the owner name {owner!r}; use 1-64 "
                "letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
        entries.append((owner, token))
    return entries


class TokenTable:
    """The known tokens. Raises TokenConfigError at construction (service start) when two
    entries share a token, or an owner name is both a user and an admin."""

    def __init__(self, api_tokens: str | None, admin_tokens: str | None):
        self.users = parse_tokens(api_tokens, "LAYERWISE_API_TOKENS")
        self.admins = parse_tokens(admin_tokens, "LAYERWISE_ADMIN_TOKENS")
        _refuse_duplicates(self.users, self.admins)

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
        return found if token else None


def _refuse_duplicates(users: list[tuple[str, str]], admins: list[tuple[str, str]]) -> None:
    seen_tokens: dict[str, str] = {}
    for setting, entries in (("LAYERWISE_API_TOKENS", users),
                             ("LAYERWISE_ADMIN_TOKENS", admins)):
        for owner, token in entries:
            if token in seen_tokens:
                raise TokenConfigError(
                    f"{setting}: the token of {owner!r} is also listed in "
                    f"{seen_tokens[token]}; every token must appear once (give each person "
                    "a token of their own)")
            seen_tokens[token] = setting
    both = sorted({owner for owner, _ in users} & {owner for owner, _ in admins})
    if both:
        raise TokenConfigError(
            f"LAYERWISE_ADMIN_TOKENS: the owner names {both} are in LAYERWISE_API_TOKENS too; "
            "an owner is a user or an admin: rename one of them")
