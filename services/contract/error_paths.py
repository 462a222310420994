"""A refused field's path as a spec writer names it, and what they may have meant.

pydantic's error locations name the member of a union a value was checked against:
`model.mlp.activaton`, where `mlp` is the kind's tag and no field of the spec. `spec_path`
drops those labels (`model.activaton`), walking the spec's types beside the location, and
`with_hint` adds the closest allowed name to an unknown field, kind or choice (`did you mean
'activation'?`)."""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Discriminator, Field, Tag
from pydantic.fields import FieldInfo

Loc = tuple[str | int, ...]
# Where the walk lost track of the types (a value's own label, a key of a plain string): the
# rest of the location is kept as pydantic gave it.
_LOST = object()


def spec_path(root: Any, loc: Sequence[str | int]) -> Loc:
    """`loc` (below the spec `root`, a pydantic model) without the unions' member labels."""
    return _walk(root, loc)[0]


def dotted(loc: Sequence[str | int]) -> str:
    return ".".join(map(str, loc))


def with_hint(root: Any, error: dict[str, Any]) -> str:
    """The message of the pydantic `error` (a dict of `ValidationError.errors()`, its loc
    below `root`) with the closest allowed name when it refused an unknown one."""
    msg = str(error.get("msg", ""))
    kind, loc, ctx = error.get("type"), tuple(error.get("loc", ())), error.get("ctx") or {}
    given = error.get("input")
    if kind == "extra_forbidden" and loc:
        parent_path, parent = _walk(root, loc[:-1])
        if isinstance(parent, type) and issubclass(parent, BaseModel):
            fields = _field_names(parent)
            owner = dotted(parent_path) or "the spec"
            return f"{msg}: {owner} has no field {loc[-1]!r}; " + _closest(
                str(loc[-1]), fields, otherwise=f"its fields: {', '.join(fields)}")
    if kind == "union_tag_invalid" and "tag" in ctx:
        tags = _quoted(str(ctx.get("expected_tags", "")))
        return f"{msg}; " + _closest(str(ctx["tag"]), tags, otherwise="")
    if kind in ("literal_error", "enum") and isinstance(given, str):
        choices = _quoted(str(ctx.get("expected", "")))
        hint = _closest(given, choices, otherwise="")
        return f"{msg}; {hint}" if hint else msg
    return msg


def _closest(given: str, allowed: Sequence[str], *, otherwise: str) -> str:
    def folded(name: str) -> str:
        return name.lower().replace("_", "").replace("-", "")

    # The typos difflib ranks low: another case or underscore, swapped letters ('=>' for
    # '>='), the start of a longer name ('grace' for 'grace_period').
    close = ([name for name in allowed if folded(name) == folded(given)]
             or [name for name in allowed if sorted(name) == sorted(given)]
             or ([name for name in allowed if name.startswith(given)] if len(given) >= 3
                 else [])
             or difflib.get_close_matches(given, allowed, n=1, cutoff=0.6))
    return f"did you mean {close[0]!r}?" if close else otherwise


def _quoted(listing: str) -> list[str]:
    """The names of pydantic's "'a', 'b' or 'c'"."""
    return re.findall(r"'([^']*)'", listing)


def _field_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _walk(root: Any, loc: Sequence[str | int]) -> tuple[Loc, Any]:
    """The path `loc` names without union labels, and the type it ends at (_LOST when the
    types no longer tell)."""
    path: list[str | int] = []
    node: Any = root
    for index, part in enumerate(loc):
        node, discriminator = _unwrap(node)
        members = _union_members(node)
        if members is not None:
            # pydantic put the member's label here (a tag, or a class or type name): no field.
            node = _member(members, discriminator, part)
            if node is _LOST:
                return (*path, *loc[index + 1:]), _LOST
            continue
        path.append(part)
        node = _child(node, part)
        if node is _LOST:
            return (*path, *loc[index + 1:]), _LOST
    node, _ = _unwrap(node)
    return tuple(path), node


def _unwrap(node: Any) -> tuple[Any, str | None]:
    """`node` without Annotated and an optional None, and the discriminator field it names."""
    discriminator: str | None = None
    while True:
        if get_origin(node) is Annotated:
            node, *metadata = get_args(node)
            for meta in metadata:
                if isinstance(meta, FieldInfo) and isinstance(meta.discriminator, str):
                    discriminator = meta.discriminator
            continue
        members = _union_members(node, keep_none=True)
        if members is not None:
            rest = [m for m in members if m is not type(None)]
            if len(rest) == 1 and len(rest) < len(members):
                node = rest[0]
                continue
        return node, discriminator


def _union_members(node: Any, *, keep_none: bool = False) -> list[Any] | None:
    if get_origin(node) in (Union, types.UnionType):
        members = [m for m in get_args(node) if keep_none or m is not type(None)]
        return members if keep_none or len(members) > 1 else None
    return None


def _member(members: list[Any], discriminator: str | None, label: str | int) -> Any:
    """The union member pydantic labelled `label`."""
    for member in members:
        if label in _labels(member, discriminator):
            return member
    return _LOST


def _labels(member: Any, discriminator: str | None) -> set[Any]:
    labels: set[Any] = set()
    inner = member
    while get_origin(inner) is Annotated:
        inner, *metadata = get_args(inner)
        labels |= {meta.tag for meta in metadata if isinstance(meta, Tag)}
    if isinstance(inner, type):
        labels.add(inner.__name__)
        if issubclass(inner, BaseModel) and discriminator in inner.model_fields:
            field = inner.model_fields[discriminator].annotation
            if get_origin(field) is Literal:
                labels |= set(get_args(field))
    return labels


def _child(node: Any, part: str | int) -> Any:
    """The type of `part` in a value of type `node`."""
    origin, args = get_origin(node), get_args(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        for name, info in node.model_fields.items():
            if part in (name, info.alias):
                return _annotated(info)
        return _LOST
    if origin in (list, set, frozenset, Sequence) and args and isinstance(part, int):
        return args[0]
    if origin is tuple and args and isinstance(part, int):
        return args[0] if args[-1] is Ellipsis or part >= len(args) else args[part]
    if origin is dict and len(args) == 2:
        return args[1]
    return _LOST


def _annotated(info: FieldInfo) -> Any:
    """A model field's type with the discriminator pydantic moved onto its FieldInfo."""
    if isinstance(info.discriminator, str):
        return Annotated[info.annotation, Field(discriminator=info.discriminator)]
    if isinstance(info.discriminator, Discriminator):
        return Annotated[info.annotation, info.discriminator]
    return info.annotation
