"""The error a spec gets at submission when it parses but cannot run: 422 with each field."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SpecError:
    loc: tuple[str | int, ...]
    msg: str


class SpecInvalid(ValueError):
    """A spec that parses but cannot run; `errors` name each field and the fix."""

    def __init__(self, errors: list[SpecError]):
        super().__init__("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors))
        self.errors = errors
