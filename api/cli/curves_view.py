"""`layerwise compare`'s loss and accuracy table: per run, each epoch metric's last value and
its best (lowest loss or mse, highest accuracy) with the step it was at; the curves themselves
are overlaid in the figure."""

from __future__ import annotations

from rich.table import Column, Table

from services.run_comparison import Comparison, EpochCurve


def _best(key: str, curve: EpochCurve) -> tuple[float, int] | None:
    points = [(value, step) for step, value in zip(curve.steps, curve.values, strict=True)
              if value is not None]
    if not points:
        return None
    pick = max if key.endswith("/accuracy") else min
    return pick(points, key=lambda point: point[0])


def curves_view(table: Comparison) -> Table | None:
    """None when no run logged a loss or accuracy curve."""
    keys = list(dict.fromkeys(key for run in table.runs for key in run.curves))
    if not keys:
        return None
    view = Table("#", Column("metric", no_wrap=True), Column("last", justify="right"),
                 Column("best", justify="right"), Column("at step", justify="right"),
                 title="loss and accuracy (curves overlaid in the figure)")
    for number, run in enumerate(table.runs, 1):
        for key in keys:
            curve = run.curves.get(key)
            if curve is None:
                continue
            last = next((v for v in reversed(curve.values) if v is not None), None)
            best = _best(key, curve)
            view.add_row(str(number), key, f"{last:.4g}" if last is not None else "",
                         f"{best[0]:.4g}" if best else "", str(best[1]) if best else "")
    return view
