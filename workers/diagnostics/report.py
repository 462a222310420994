"""`report.html`: one run's diagnosis as a page a person reads.

The verdict and each finding in words, its evidence, the layers it concerns and its fix as a
change of the spec; the baseline beside the run's result; the spec's key settings, the final
metrics and the run's plots. The page is self-contained: plots are inlined as PNG data URIs,
the CSS is inline, and its Content-Security-Policy forbids every request, so it reads the same
from MLflow's artifact view, a downloaded copy or an air-gapped machine. Every string that
comes from the spec or the run is escaped: the page is the Jinja2 template
`templates/report.html.j2`, rendered with autoescape from plain text this module prepares.

Written against the diagnosis of docs/mlflow.md (`findings` as objects with `verdict`,
`evidence`, `layers` and `fix`); older diagnoses, whose findings are verdict names with one
`evidence` and `layers` for the run, and missing keys are read too.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from workers.diagnostics.report_words import (
    BASELINES,
    EVIDENCE,
    NEEDS_MORE_EPOCHS,
    meaning,
)

REPORT_FILE = "report.html"
TEMPLATE = "report.html.j2"

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1em 2em;
color:#1d1d1f}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;border-bottom:1px solid #ddd}
.verdict{display:inline-block;padding:.15em .6em;border-radius:.3em;font-weight:600;
background:#fde2e1;color:#8a1c17}.verdict.healthy{background:#dcf5e3;color:#17602d}
.finding{border-left:4px solid #e0a3a0;padding:.2em 1em;margin:1em 0}
code{background:#f3f3f5;padding:0 .25em;border-radius:.2em}
table{border-collapse:collapse;font-size:.92em}td,th{padding:.15em .8em;text-align:left;
border-bottom:1px solid #eee}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#555}
.muted{color:#666}
"""
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
# The spec's settings shown at the top; the rest is in spec.yaml.
KEY_SECTIONS = ("data", "model", "optimizer", "training")
SKIPPED = {"data.params", "data.path"}


_PAGES = Environment(loader=PackageLoader("workers.diagnostics", "templates"),
                     autoescape=select_autoescape(default=True, default_for_string=True),
                     trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
Row = list[tuple[str, bool]]  # a table row: (text, right-aligned as a number)


def render_report(spec_summary: Mapping[str, Any], metrics: Mapping[str, Any],
                  diagnosis: Mapping[str, Any] | None, plots: Mapping[str, bytes]) -> str:
    """The page. `spec_summary` is the spec as JSON-like data (nested or dotted keys),
    `metrics` the run's final metrics, `plots` {name: PNG bytes} in the order to show."""
    settings = _flat(spec_summary)
    return _PAGES.get_template(TEMPLATE).render(
        csp=CSP, css=CSS, name=str(settings.get("name") or "run"),
        kind=str(settings.get("model.kind") or ""),
        diagnosis=_diagnosis(diagnosis, settings) if diagnosis else None,
        baseline=_baseline((diagnosis or {}).get("baseline"), metrics),
        settings=_settings(settings), metrics=_metrics(metrics), plots=_plots(plots))


# -- the diagnosis -------------------------------------------------------------------------
def findings(diagnosis: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The findings as objects; an old diagnosis's verdict names get the run's evidence and
    layers (they were not kept per finding)."""
    found = []
    for item in diagnosis.get("findings") or []:
        if isinstance(item, Mapping):
            found.append(dict(item))
        else:
            found.append({"verdict": str(item), "evidence": diagnosis.get("evidence") or {},
                          "layers": diagnosis.get("layers") or []})
    return found


def _diagnosis(diagnosis: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    verdict = str(diagnosis.get("verdict") or "unknown")
    step = diagnosis.get("detected_at_step")
    thresholds = diagnosis.get("thresholds") or {}
    found = findings(diagnosis)
    primary = next((f for f in found if f.get("verdict") == verdict), {})
    more = diagnosis.get("needs_more_epochs")
    calls = [c for c in diagnosis.get("live_verdicts") or [] if isinstance(c, Mapping)]
    return {
        "verdict": verdict,
        "meaning": meaning(verdict, primary.get("evidence"))
        or "No explanation is known for this verdict.",
        "step": step if isinstance(step, int) else None,
        "needs_more_epochs": NEEDS_MORE_EPOCHS.format(n=more) if isinstance(more, int) else None,
        "live": ", ".join(f"{c.get('verdict')} at step {c.get('step')}" for c in calls),
        "findings": [_finding(f, settings, said=verdict) for f in found
                     if f.get("verdict") != "healthy"],
        "notes": [str(n) for n in diagnosis.get("notes") or []],
        "thresholds": _rows([(_words(k), _value(v)) for k, v in thresholds.items()])
        if isinstance(thresholds, Mapping) else []}


def _finding(finding: Mapping[str, Any], settings: Mapping[str, Any], said: str
             ) -> dict[str, Any]:
    """One finding; its meaning unless the verdict above just said it."""
    verdict = str(finding.get("verdict") or "unknown")
    evidence = finding.get("evidence") or {}
    fix = finding.get("fix") or {}
    fix = fix if isinstance(fix, Mapping) else {}
    # What `layerwise repair` tries next when the fix does not help.
    alternatives = [alt for alt in finding.get("alternatives") or []
                    if isinstance(alt, Mapping) and alt] if fix else []
    return {
        "verdict": verdict,
        "meaning": meaning(verdict, evidence) if verdict != said else None,
        "evidence": [_evidence(k, v) for k, v in evidence.items()]
        if isinstance(evidence, Mapping) else [],
        "layers": [str(layer) for layer in finding.get("layers") or []],
        "fix": [change(path, settings, value) for path, value in fix.items()],
        "alternatives": ["; ".join(change(path, settings, value) for path, value in alt.items())
                         for alt in alternatives]}


def change(path: str, settings: Mapping[str, Any], value: Any) -> str:
    """`model.activation: sigmoid -> relu`; the old value left out when the spec lacks it."""
    if path in settings:
        return f"{path}: {_value(settings[path])} -> {_value(value)}"
    return f"{path}: -> {_value(value)}"


def _baseline(baseline: Any, metrics: Mapping[str, Any]) -> dict[str, Any] | None:
    if not isinstance(baseline, Mapping) or not baseline:
        return None
    kind = str(baseline.get("kind") or "")
    rows = []
    for name in ("loss", "accuracy"):
        ours = next((metrics[f"{split}/{name}"] for split in ("val", "test", "train")
                     if _number(metrics.get(f"{split}/{name}")) is not None), None)
        theirs = _number(baseline.get(name))
        if theirs is not None or ours is not None:
            rows.append((name, _value(theirs) if theirs is not None else "",
                         _value(ours) if ours is not None else ""))
    return {"said": BASELINES.get(kind, kind), "rows": _rows(rows)}


# -- the run ---------------------------------------------------------------------------------
def _settings(settings: Mapping[str, Any]) -> list[Row]:
    return _rows([(k, _value(v)) for k, v in settings.items()
                  if k.split(".", 1)[0] in KEY_SECTIONS and not k.startswith(tuple(SKIPPED))])


def _metrics(metrics: Mapping[str, Any]) -> list[Row]:
    return _rows([(str(k), _value(v))
                  for k, v in sorted(metrics.items(), key=lambda kv: str(kv[0]))
                  if isinstance(v, int | float | str) and not isinstance(v, bool)])


def _plots(plots: Mapping[str, bytes]) -> list[dict[str, str]]:
    return [{"name": name, "data": base64.b64encode(png).decode("ascii"),
             "caption": _words(name)} for name, png in plots.items()]


# -- formatting --------------------------------------------------------------------------------
def _rows(rows: Sequence[tuple[str, ...]]) -> list[Row]:
    """Each cell with whether it is shown as a number (right-aligned; never the first)."""
    return [[(cell, bool(i) and _is_number(cell)) for i, cell in enumerate(row)] for row in rows]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections as dotted keys (`model.activation`); dotted keys kept as they are."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flat(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def _evidence(key: str, value: Any) -> str:
    if isinstance(value, Mapping) and value:
        return f"{EVIDENCE.get(key, _words(key))}: " + "; ".join(
            _evidence(str(k), v) for k, v in value.items())
    return f"{EVIDENCE.get(key, _words(key))}: {_value(value)}"


def _words(key: Any) -> str:
    return str(key).replace("_", " ").replace("/", " / ")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _value(value: Any) -> str:
    """Numbers to 4 significant digits, lists and objects as JSON, the rest as text."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return json.dumps(list(value), default=str)
    return str(value)
