"""`--set PATH=VALUE`: change a spec read from a file before it is sent, e.g.
`--set optimizer.lr=0.01 --set model.hidden=[64,32]`. The value is read as YAML (numbers,
lists, mappings, booleans, null); the changed spec is checked by the service like the file."""

from __future__ import annotations

import copy
import re
from typing import Annotated, Any

import typer
import yaml

SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", metavar="PATH=VALUE",
    help="set a dotted spec path before submitting, e.g. --set optimizer.lr=0.01 or "
         "--set model.hidden=[64,32] (VALUE is YAML; repeatable; in a sweep: base.optimizer.lr"
         "=0.01, space.optimizer.lr={type: choice, values: [0.01, 0.1]})")]


def apply_overrides(spec: dict[str, Any], sets: list[str] | None) -> dict[str, Any]:
    """A copy of `spec` with each `PATH=VALUE` of `sets` applied in order (a later one wins);
    ValueError names the bad PATH=VALUE and what to write instead."""
    changed = copy.deepcopy(spec)
    for given in sets or []:
        path, value = _parse(given)
        _assign(changed, path, value, given)
    return changed


def _parse(given: str) -> tuple[list[str], Any]:
    path, equals, text = given.partition("=")
    path = path.strip()
    if not equals:
        raise ValueError(f"--set {given}: no '='; write --set PATH=VALUE, e.g. "
                         "--set optimizer.lr=0.01")
    keys = path.split(".")
    if not path or any(not key.strip() for key in keys):
        raise ValueError(f"--set {given}: {path!r} is not a dotted spec path; write e.g. "
                         "--set optimizer.lr=0.01")
    try:
        value = yaml.load(text, Loader=_ValueLoader)  # a SafeLoader: no objects built
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"--set {given}: the value is not YAML ({problem}); quote it for a "
                         f"string: --set '{path}=\"{text}\"'") from None
    return [key.strip() for key in keys], value


class _ValueLoader(yaml.SafeLoader):
    """YAML with YAML 1.2's floats: `1e-3` is a number (PyYAML's 1.1 rules read a string)."""


_ValueLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _assign(spec: dict[str, Any], keys: list[str], value: Any, given: str) -> None:
    """Set `keys` in `spec`, making the mappings on the way that are missing."""
    if _is_sweep(spec):
        _check_sweep_path(keys, given)
        if keys[0] == "space" and len(keys) > 1:
            keys = ["space", *_space_keys(spec.get("space"), keys[1:])]
    node = spec
    for depth, key in enumerate(keys[:-1]):
        inner = node.setdefault(key, {})
        if inner is None:  # `model:` left empty in the file: a mapping to fill
            inner = node[key] = {}
        if not isinstance(inner, dict):
            where = ".".join(keys[:depth + 1])
            raise ValueError(f"--set {given}: {where} is {_kind(inner)} ({inner!r}), not a "
                             f"mapping, so it has no field {keys[depth + 1]!r}; set the "
                             f"whole value instead: --set {where}=VALUE")
        node = inner
    node[keys[-1]] = value


def _is_sweep(spec: dict[str, Any]) -> bool:
    return "base" in spec and "space" in spec


def _check_sweep_path(keys: list[str], given: str) -> None:
    """A sweep's paths start with one of its own fields: `optimizer.lr` alone is ambiguous
    (the base's learning rate, or the space's domain for it)."""
    # Here, not at import: only a sweep with --set pays for reading the contract.
    from services.contract.sweep_spec import SweepSpec

    fields = list(SweepSpec.model_fields)
    if keys[0] in fields:
        return
    path, _, value = given.partition("=")
    raise ValueError(
        f"--set {given}: {keys[0]!r} is not a field of a sweep ({', '.join(fields)}); for the "
        f"base experiment write --set base.{path.strip()}={value}, for its search domain "
        f"--set space.{path.strip()}=DOMAIN")


def _space_keys(space: Any, rest: list[str]) -> list[str]:
    """The keys below `space` for `rest`: a space's keys are dotted spec paths themselves
    (`space.optimizer.lr` is the key 'optimizer.lr'); a path that goes on past an existing
    key (`space.optimizer.lr.high`) goes into that key's domain."""
    joined = ".".join(rest)
    for key in sorted(space or {}, key=len, reverse=True):  # the longest key that fits
        if joined == key:
            return [key]
        if joined.startswith(key + "."):
            return [key, *joined[len(key) + 1:].split(".")]
    return [joined]


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"
