"""Mutations of the example specs: one field at a time set to an odd value, for the fuzz test.

Every spec in examples/ (experiments, and sweeps: a file with `base:` and `space:`) is walked
to every position in it, containers and leaves alike. A position means the same thing in every
example of the same route (`optimizer.lr`), and inside `model` in every example of the same
route and model kind (`model.hidden.0` of an MLP), so positions are deduplicated on that and
each is mutated in one example, drawn with a fixed seed: the budget goes to distinct positions
rather than to forty copies of `optimizer.lr`.

The cases are, in order, until `limit`:
1. every entry of a list inside `model` (layer widths, channels, conv blocks: positions only some
   kinds have, where an odd number reaches the model builder) set to -1 and to 10**12;
2. rounds over all positions, each round giving every position its next odd value from its own
   seeded permutation of ODD_VALUES (round one covers every position once). A container's
   permutation starts with the values that empty or remove it (None, {}, []), a mapping or a
   list being what a validator that looks inside is likeliest to mishandle.
The same seed gives the same cases, so a failure in CI is reproduced by running the test again.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXAMPLES_DIR = Path(__file__).parents[2] / "examples"
EXPERIMENTS, SWEEPS = "/v1/experiments", "/v1/sweeps"

# What a client can get wrong: absent, negative, zero, huge (float and int), empty, too long,
# the wrong container, a number spelled as a string pydantic would parse, PostgreSQL's poison.
ODD_VALUES: tuple[Any, ...] = (None, -1, 0, 1e308, 10**12, "", "x" * 300, [], {}, "NaN",
                               "nul\x00byte")
NESTED_VALUES: tuple[Any, ...] = (-1, 10**12)
EMPTY_VALUES: tuple[Any, ...] = (None, {}, [])

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Example:
    name: str
    route: str
    kind: str  # the model kind (of the base experiment, for a sweep)
    document: dict[str, Any]


@dataclass(frozen=True)
class Mutation:
    example: str
    route: str
    path: Path_
    value: Any
    body: dict[str, Any]

    def __str__(self) -> str:
        dotted = ".".join(map(str, self.path))
        return f"{self.example}: POST {self.route} with {dotted} = {_short(self.value)}"


def load_examples(directory: Path = EXAMPLES_DIR) -> list[Example]:
    examples = []
    for path in sorted(directory.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        sweep = "base" in document or "space" in document  # as tests/test_examples.py reads it
        experiment = document["base"] if sweep else document
        examples.append(Example(path.name, SWEEPS if sweep else EXPERIMENTS,
                                experiment["model"]["kind"], document))
    return examples


def positions(node: Any, prefix: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    """Every (path, value) below `node` (not `node` itself), parents before children."""
    items = (node.items() if isinstance(node, dict)
             else enumerate(node) if isinstance(node, list) else ())
    for key, child in items:
        yield (*prefix, key), child
        yield from positions(child, (*prefix, key))


def mutated(document: dict[str, Any], path: Path_, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(document)
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = copy.deepcopy(value)
    return body


def in_model_list(path: Path_) -> bool:
    """A list entry inside the model section (`model.hidden.0`, `base.model.conv.1.channels`)."""
    tail = path[path.index("model") + 1:] if "model" in path else ()
    return any(isinstance(key, int) for key in tail)


def mutations(limit: int, seed: int = 0, examples: list[Example] | None = None
              ) -> list[Mutation]:
    """At most `limit` cases, the same ones for the same seed (see the module docstring)."""
    rng = random.Random(seed)
    holders: dict[tuple[str, str, Path_], list[Example]] = {}
    containers: set[tuple[str, str, Path_]] = set()
    for example in examples if examples is not None else load_examples():
        for path, node in positions(example.document):
            key = (example.route, example.kind if "model" in path else "", path)
            holders.setdefault(key, []).append(example)
            if isinstance(node, dict | list):
                containers.add(key)
    chosen = {key: rng.choice(found) for key, found in holders.items()}
    orders = {key: _order(rng, key in containers) for key in holders}

    def case(key: tuple[str, str, Path_], value: Any) -> Mutation:
        example = chosen[key]
        return Mutation(example.name, example.route, key[2], value,
                        mutated(example.document, key[2], value))

    cases = [case(key, value) for key in holders if in_model_list(key[2])
             for value in NESTED_VALUES]
    for round_ in range(len(ODD_VALUES)):
        cases += [case(key, orders[key][round_]) for key in holders]
    return _unique(cases)[:limit]


def _order(rng: random.Random, container: bool) -> list[Any]:
    if not container:
        return rng.sample(ODD_VALUES, len(ODD_VALUES))
    rest = [value for value in ODD_VALUES if value not in EMPTY_VALUES]
    return rng.sample(EMPTY_VALUES, len(EMPTY_VALUES)) + rng.sample(rest, len(rest))


def _unique(cases: list[Mutation]) -> list[Mutation]:
    """Drop repeats (a nested case comes again in the rounds), keeping the first."""
    seen, kept = set(), []
    for mutation in cases:
        key = (mutation.route, json.dumps(mutation.body, sort_keys=True))
        if key not in seen:
            seen.add(key)
            kept.append(mutation)
    return kept


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} chars)"
