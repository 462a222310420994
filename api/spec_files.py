"""Reading a spec file (YAML, or JSON, which is YAML) into the mapping the service is sent,
with one line per failure: `file:line:column: <problem>; <fix>`, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class SpecFileError(ValueError):
    """A spec file that cannot be read, parsed, or does not hold a mapping; the message says
    where and how to fix it."""


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """The spec in `path` as a dict; SpecFileError says what is wrong, where."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecFileError(f"{path}: not UTF-8 text; save the spec as UTF-8 YAML or JSON"
                            ) from None
    except OSError as exc:
        raise SpecFileError(f"{path}: {exc.strerror or type(exc).__name__}; give the path of "
                            "a YAML or JSON spec file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        raise SpecFileError(syntax_error(str(path), exc)) from None
    except yaml.YAMLError as exc:  # no position: rare (a reader error without a mark)
        raise SpecFileError(f"{path}: not YAML ({exc}); check the file's quoting and "
                            "indentation") from None
    if not isinstance(data, dict):
        raise SpecFileError(f"{path}: {_holds(data)}, not a mapping; a spec is a mapping of "
                            "fields, e.g. `data: {name: digits}` and `model: {kind: mlp}` "
                            "on lines of their own (a sweep: `base:` and `space:`)")
    return data


def syntax_error(path: str, exc: yaml.MarkedYAMLError) -> str:
    """`path:line:column: <problem>; <fix>` (line and column from 1, as editors count)."""
    mark = exc.problem_mark or exc.context_mark
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
    problem = exc.problem or exc.context or "not YAML"
    opened = ""
    if exc.context and exc.context_mark and exc.problem_mark and (
            exc.context_mark.line != exc.problem_mark.line):
        opened = f" ({exc.context} opened at line {exc.context_mark.line + 1})"
    return f"{where}: {problem}{opened}; {_fix(problem, exc.context or '')}"


# The usual causes, by the words of PyYAML's problem (the first that matches is told).
_FIXES = (
    ("'\\t'", "YAML indents with spaces, not tabs: replace the tab"),
    ("mapping values are not allowed", "a value holding ': ' needs quotes (\"a: b\"), or "
                                       "this line is indented under a plain value"),
    ("could not find expected ':'", "a key needs ': ' after it (a space after the colon)"),
    ("undefined alias", "'*' starts an alias in YAML: quote the value (\"*...\")"),
    ("end of stream", "a quote or bracket is not closed: close it"),
    ("<stream end>", "a quote or bracket is not closed: close it"),
    ("expected ',' or", "separate the items with ', ' and close the bracket; a value with ':' "
                        "or ',' in it needs quotes"),
    ("expected the node content", "a value is missing (two commas, or a comma before a "
                                  "closing bracket): remove the extra comma"),
    ("expected <block end>", "this line's indentation does not match the lines above: indent "
                             "it as deep as its siblings (spaces), or add the missing key"),
    ("found character", "quote the value: it starts with a character YAML reserves (@, `, "
                        "%)"),
)


def _fix(problem: str, context: str) -> str:
    for words, fix in _FIXES:
        if words in problem or words in context:
            return fix
    return "check the quoting and indentation there"


def _holds(data: Any) -> str:
    if data is None:
        return "the file is empty (or only comments)"
    kind = {list: "a list", str: "a single string", int: "a number", float: "a number",
            bool: "a boolean"}.get(type(data), f"a {type(data).__name__}")
    return f"the file holds {kind}"
