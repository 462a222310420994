"""`layerwise compare`'s tables at 80 columns: nothing cut, every number whole."""

from __future__ import annotations

import io

from rich.console import Console

from api.cli.output import comparison_view
from services.run_comparison import Comparison


def test_the_compare_tables_keep_every_number_whole_at_80_columns():
    layers = [f"encoder.blocks.{i}.proj" for i in range(6)]
    runs = [{"id": f"{r:x}" * 32, "name": f"deep-sigmoid-net-{r}", "model_kind": "mlp",
             "status": "succeeded", "result": {}, "verdict": "vanishing",
             "first_last_ratio": 1.234e-5 * (r + 1),
             "layers": [{"layer": layer, "median": (r + 1) * 10.0 ** -i, "last": None}
                        for i, layer in enumerate(layers)]}
            for r in range(6)]
    console = Console(width=80, file=io.StringIO(), force_terminal=False)
    table = Comparison.model_validate({"metric": "grad_norm", "runs": runs})
    console.print(comparison_view(table, console.width))
    shown = console.file.getvalue()
    assert max(len(line) for line in shown.splitlines()) <= 80
    for run in runs:
        assert run["name"] in shown and run["id"][:8] in shown
        for layer in run["layers"]:
            assert f"{layer['median']:.2e}" in shown
    for layer in layers:
        assert layer in shown
    assert shown.count("vanishing") == 6
