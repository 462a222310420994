"""`report.html`: one run's diagnosis as a page a person reads.

The verdict and each finding in words, its evidence, the layers it concerns and its fix as a
change of the spec; the baseline beside the run's result; the spec's key settings, the final
metrics and the run's plots. The page is self-contained: plots are inlined as PNG data URIs,
the CSS is inline, and its Content-Security-Policy forbids every request, so it reads the same
from MLflow's artifact view, a downloaded copy or an air-gapped machine. Every string that
comes from the spec or the run is escaped.

Written against the diagnosis of docs/mlflow.md (`findings` as objects with `verdict`,
`evidence`, `layers` and `fix`); older diagnoses, whose findings are verdict names with one
`evidence` and `layers` for the run, and missing keys are read too.
"""

from __future__ import annotations

import base64
import io
import json
import math
import posixpath
import tempfile
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from workers.diagnostics.report_words import BASELINES, EVIDENCE, MEANINGS
from workers.tracking.run_tracker import RunTracker

REPORT_FILE = "report.html"

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


def render_report(spec_summary: Mapping[str, Any], metrics: Mapping[str, Any],
                  diagnosis: Mapping[str, Any] | None, plots: Mapping[str, bytes]) -> str:
    """The page. `spec_summary` is the spec as JSON-like data (nested or dotted keys),
    `metrics` the run's final metrics, `plots` {name: PNG bytes} in the order to show."""
    settings = _flat(spec_summary)
    name = str(settings.get("name") or "run")
    kind = str(settings.get("model.kind") or "")
    parts = [f"<h1>{escape(name)}</h1>",
             f'<p class="muted">{escape(kind)} &middot; layerwise run report</p>']
    parts += _diagnosis(diagnosis or {}, settings)
    parts += _baseline((diagnosis or {}).get("baseline"), metrics)
    parts += _settings(settings)
    parts += _metrics(metrics)
    parts += _plots(plots)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f"<title>{escape(name)}: report</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def log_report(tracker: RunTracker, spec_summary: Mapping[str, Any],
               metrics: Mapping[str, Any], diagnosis: Mapping[str, Any] | None,
               plots: Mapping[str, bytes]) -> None:
    """`report.html` at the run's artifact root."""
    tracker.log_text(render_report(spec_summary, metrics, diagnosis, plots), REPORT_FILE)


def log_png(tracker: RunTracker, figure: Figure, artifact_file: str) -> bytes:
    """Log `figure` as the PNG `artifact_file` and return its bytes, drawn once for both the
    artifact and the report."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    png = buffer.getvalue()
    folder, name = posixpath.split(artifact_file)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, name).write_bytes(png)
        tracker.artifacts.log_artifact(str(Path(tmp, name)), folder or None)
    return png


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


def _diagnosis(diagnosis: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
    if not diagnosis:
        return ["<h2>Diagnosis</h2>", "<p>This run measured nothing to judge by (diagnostics "
                "were off or the model has no layers to watch).</p>"]
    verdict = str(diagnosis.get("verdict") or "unknown")
    out = ["<h2>Diagnosis</h2>",
           f'<p>Verdict: <span class="verdict {escape(verdict)}" id="verdict">'
           f"{escape(verdict)}</span></p>",
           f"<p>{escape(MEANINGS.get(verdict, 'No explanation is known for this verdict.'))}"
           "</p>"]
    step = diagnosis.get("detected_at_step")
    if isinstance(step, int):
        out.append(f"<p>First detected at step {step}.</p>")
    for finding in findings(diagnosis):
        if finding.get("verdict") != "healthy":
            out.append(_finding(finding, settings, said=verdict))
    notes = [str(n) for n in diagnosis.get("notes") or []]
    if notes:
        out.append(_items("<h3>Notes</h3>", notes))
    thresholds = diagnosis.get("thresholds") or {}
    if isinstance(thresholds, Mapping) and thresholds:
        out.append("<details><summary>Thresholds used</summary>"
                   + _table(("threshold", "value"),
                            [(_words(k), _value(v)) for k, v in thresholds.items()])
                   + "</details>")
    return out


def _finding(finding: Mapping[str, Any], settings: Mapping[str, Any], said: str) -> str:
    """One finding; its meaning unless the verdict above just said it."""
    verdict = str(finding.get("verdict") or "unknown")
    parts = [f'<div class="finding"><h3>{escape(verdict)}</h3>']
    if verdict != said:
        parts.append(f"<p>{escape(MEANINGS.get(verdict, ''))}</p>")
    evidence = finding.get("evidence") or {}
    if isinstance(evidence, Mapping) and evidence:
        parts.append(_items("<p>Evidence:</p>", [_evidence(k, v) for k, v in evidence.items()]))
    layers = [str(layer) for layer in finding.get("layers") or []]
    if layers:
        parts.append("<p>Layers: " + ", ".join(f"<code>{escape(x)}</code>" for x in layers)
                     + "</p>")
    fix = finding.get("fix") or {}
    if isinstance(fix, Mapping) and fix:
        parts.append(_items("<p>Fix: change the spec</p>",
                            [change(path, settings, value) for path, value in fix.items()],
                            code=True))
        alternatives = [alt for alt in finding.get("alternatives") or []
                        if isinstance(alt, Mapping) and alt]
        if alternatives:  # what `layerwise repair` tries next when the fix does not help
            parts.append(_items("<p>If that does not help, in turn:</p>",
                                ["; ".join(change(path, settings, value)
                                           for path, value in alt.items())
                                 for alt in alternatives], code=True))
    return "".join(parts) + "</div>"


def _items(head: str, items: list[str], *, code: bool = False) -> str:
    """`head` (markup) over a bulleted list of `items` (text, escaped here)."""
    wrap = ("<code>", "</code>") if code else ("", "")
    return head + "<ul>" + "".join(f"<li>{wrap[0]}{escape(item)}{wrap[1]}</li>"
                                   for item in items) + "</ul>"


def change(path: str, settings: Mapping[str, Any], value: Any) -> str:
    """`model.activation: sigmoid -> relu`; the old value left out when the spec lacks it."""
    if path in settings:
        return f"{path}: {_value(settings[path])} -> {_value(value)}"
    return f"{path}: -> {_value(value)}"


def _baseline(baseline: Any, metrics: Mapping[str, Any]) -> list[str]:
    if not isinstance(baseline, Mapping) or not baseline:
        return []
    kind = str(baseline.get("kind") or "")
    rows = []
    for name in ("loss", "accuracy"):
        ours = next((metrics[f"{split}/{name}"] for split in ("val", "test", "train")
                     if _number(metrics.get(f"{split}/{name}")) is not None), None)
        theirs = _number(baseline.get(name))
        if theirs is not None or ours is not None:
            rows.append((name, _value(theirs) if theirs is not None else "",
                         _value(ours) if ours is not None else ""))
    said = BASELINES.get(kind, kind)
    return ["<h2>Against the baseline</h2>",
            f"<p>The baseline predicts without looking at the inputs ({escape(said)}). A run "
            "that does not beat it has learned nothing from the inputs.</p>",
            _table(("metric", "baseline", "this run"), rows)]


# -- the run ---------------------------------------------------------------------------------
def _settings(settings: Mapping[str, Any]) -> list[str]:
    rows = [(k, _value(v)) for k, v in settings.items()
            if k.split(".", 1)[0] in KEY_SECTIONS and not k.startswith(tuple(SKIPPED))]
    return ["<h2>Spec</h2>", _table(("setting", "value"), rows)] if rows else []


def _metrics(metrics: Mapping[str, Any]) -> list[str]:
    rows = [(str(k), _value(v)) for k, v in sorted(metrics.items(), key=lambda kv: str(kv[0]))
            if isinstance(v, int | float | str) and not isinstance(v, bool)]
    return ["<h2>Final metrics</h2>", _table(("metric", "value"), rows)] if rows else []


def _plots(plots: Mapping[str, bytes]) -> list[str]:
    out = ["<h2>Plots</h2>"] if plots else []
    for name, png in plots.items():
        data = base64.b64encode(png).decode("ascii")
        out.append(f'<figure><img alt="{escape(name)}" src="data:image/png;base64,{data}">'
                   f"<figcaption>{escape(_words(name))}</figcaption></figure>")
    return out


# -- formatting --------------------------------------------------------------------------------
def _table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(
        f'<td class="num">{escape(c)}</td>' if i and _is_number(c) else f"<td>{escape(c)}</td>"
        for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


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
