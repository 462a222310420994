"""`report.html`: one run's diagnosis as a page a person reads.

The verdict and each finding in words, its evidence, the layers it concerns and its fix as a
change of the spec; the baseline beside the run's result; the spec's key settings, the final
metrics and the run's plots. A kind that learns without gradients (a Hopfield net, an RBM:
the model declares `uses_gradients = False`; its diagnosis then carries a `no_gradients`
finding) is spoken of by its own checks (recall, energy, capacity, reconstruction), shows the
plots it draws of itself, and lists only the settings it uses: no `optimizer.*` (it has no
optimizer) and none of the fields the contract declares gradient-only
(`services.contract.applicability.gradient_switches`), nor a setting its kind does not honour
(`ModelKind.honours`). The page is self-contained: plots are inlined as PNG data URIs,
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

from models.kinds.honours import Honour
from models.registry import model_kind
from services.contract.applicability import gradient_switches, honoured_switches
from workers.diagnostics.report_words import (
    BASELINES,
    EVIDENCE,
    NEEDS_MORE_EPOCHS,
    NOT_OWN_THRESHOLDS,
    PLOT_CAPTIONS,
    PRETRAINING,
    meaning,
    stage_said,
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
# What a kind without gradients has nothing to act on besides the gradient-only fields: the
# loop builds it no optimizer (workers/training/optim.py).
NO_OPTIMIZER = ("optimizer",)


_PAGES = Environment(loader=PackageLoader("workers.diagnostics", "templates"),
                     autoescape=select_autoescape(default=True, default_for_string=True),
                     trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
Row = list[tuple[str, bool]]  # a table row: (text, right-aligned as a number)


def render_report(spec_summary: Mapping[str, Any], metrics: Mapping[str, Any],
                  diagnosis: Mapping[str, Any] | None, plots: Mapping[str, bytes], *,
                  uses_gradients: bool | None = None,
                  pretraining: Sequence[Mapping[str, Any]] = ()) -> str:
    """The page. `spec_summary` is the spec as JSON-like data (nested or dotted keys),
    `metrics` the run's final metrics, `plots` {name: PNG bytes} in the order to show,
    `uses_gradients` as the model declares it (None: as the diagnosis tells, by its
    `no_gradients` finding; a report rendered again from MLflow has no model), `pretraining`
    the layer-wise pretraining's stages (`PretrainingStages.stages`), each with its own check."""
    settings = _flat(spec_summary)
    own = own_checks(diagnosis or {})
    gradients = own is None if uses_gradients is None else uses_gradients
    if not gradients and own is None:  # the model's word, with no own check recorded
        own = {}
    kind = str(settings.get("model.kind") or "")
    return _PAGES.get_template(TEMPLATE).render(
        csp=CSP, css=CSS, name=str(settings.get("name") or "run"), kind=kind,
        diagnosis=_diagnosis(diagnosis, settings, own) if diagnosis else None,
        baseline=_baseline((diagnosis or {}).get("baseline"), metrics),
        pretraining=_pretraining(pretraining, settings),
        settings=_settings(settings, unused_settings(kind, uses_gradients=gradients)),
        metrics=_metrics(metrics), plots=_plots(plots))


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


def own_checks(diagnosis: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a kind without gradients' own checks measured: the evidence of its `no_gradients`
    finding (verdicts/energy.py); None for a kind that learns by gradients."""
    for finding in findings(diagnosis):
        if finding.get("verdict") == "no_gradients":
            evidence = finding.get("evidence")
            return dict(evidence) if isinstance(evidence, Mapping) else {}
    return None


def _diagnosis(diagnosis: Mapping[str, Any], settings: Mapping[str, Any],
               own: Mapping[str, Any] | None) -> dict[str, Any]:
    verdict = str(diagnosis.get("verdict") or "unknown")
    step = diagnosis.get("detected_at_step")
    thresholds = diagnosis.get("thresholds") or {}
    found = findings(diagnosis)
    primary = next((f for f in found if f.get("verdict") == verdict), {})
    more = diagnosis.get("needs_more_epochs")
    calls = [c for c in diagnosis.get("live_verdicts") or [] if isinstance(c, Mapping)]
    return {
        "verdict": verdict,
        "meaning": meaning(verdict, primary.get("evidence"), own_checks=own)
        or "No explanation is known for this verdict.",
        "step": step if isinstance(step, int) else None,
        "needs_more_epochs": NEEDS_MORE_EPOCHS.format(n=more) if isinstance(more, int) else None,
        "live": ", ".join(f"{c.get('verdict')} at step {c.get('step')}" for c in calls),
        "findings": [_finding(f, settings, said=verdict, own=own) for f in found
                     if f.get("verdict") != "healthy"],
        "notes": [str(n) for n in diagnosis.get("notes") or []],
        "thresholds": _rows([(_words(k), _value(v)) for k, v in thresholds.items()
                             if own is None or not str(k).startswith(NOT_OWN_THRESHOLDS)])
        if isinstance(thresholds, Mapping) else []}


def _finding(finding: Mapping[str, Any], settings: Mapping[str, Any], said: str,
             own: Mapping[str, Any] | None = None) -> dict[str, Any]:
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
        "meaning": meaning(verdict, evidence, own_checks=own) if verdict != said else None,
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


def _pretraining(stages: Sequence[Mapping[str, Any]], settings: Mapping[str, Any]
                 ) -> dict[str, Any] | None:
    """The stages in words: how they learned (the spec's `model.pretraining`, `pretrain_with`)
    and whether each one's loss fell."""
    if not stages:
        return None
    method = str(settings.get("model.pretraining") or "unsupervised")
    if method == "unsupervised":
        method = str(settings.get("model.pretrain_with") or "autoencoder")
    return {"said": PRETRAINING.get(method, PRETRAINING["autoencoder"]),
            "stages": [stage_said(stage, method) for stage in stages]}


# -- the run ---------------------------------------------------------------------------------
def unused_settings(kind: str, *, uses_gradients: bool) -> tuple[str, ...]:
    """The dotted spec paths (and their sub-keys) `kind` does not act on, from what it
    declares: the settings it does not honour and, without gradients, the optimizer and the
    gradient-only fields. A kind the registry does not know (an old run's) loses none of the
    honoured ones."""
    try:
        honours: frozenset[Honour] | None = model_kind(kind).honours
    except ValueError:
        honours = None
    unused = [".".join(loc) for setting, loc in honoured_switches()
              if honours is not None and setting not in honours]
    if not uses_gradients:
        unused += [*NO_OPTIMIZER, *(".".join(loc) for loc in gradient_switches())]
    return tuple(unused)


def _settings(settings: Mapping[str, Any], unused: Sequence[str] = ()) -> list[Row]:
    return _rows([(k, _value(v)) for k, v in settings.items()
                  if k.split(".", 1)[0] in KEY_SECTIONS and not k.startswith(tuple(SKIPPED))
                  and not any(k == path or k.startswith(f"{path}.") for path in unused)])


def _metrics(metrics: Mapping[str, Any]) -> list[Row]:
    return _rows([(str(k), _value(v))
                  for k, v in sorted(metrics.items(), key=lambda kv: str(kv[0]))
                  if isinstance(v, int | float | str) and not isinstance(v, bool)])


def _plots(plots: Mapping[str, bytes]) -> list[dict[str, str]]:
    return [{"name": name, "data": base64.b64encode(png).decode("ascii"),
             "caption": PLOT_CAPTIONS.get(name, _words(name))} for name, png in plots.items()]


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
        if all(_number(v) is not None for v in value):  # a curve: each number as above
            return "[" + ", ".join(_value(v) for v in value) + "]"
        return json.dumps(list(value), default=str)
    return str(value)
