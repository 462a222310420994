"""Which swept values mattered: Optuna's fANOVA importance of each swept path for the sweep's
metric, over the trials whose final metric counts (succeeded, and stopped on their diagnosis:
a configuration its diagnosis called broken says as much about a path as one that trained).

The trials go into an in-memory Optuna study, each with its values and metric, whatever search
ran them (grid, random, TPE); fANOVA's random forest is seeded, so the same trials give the same
importances. Listed values (choice, grid) are categories, numeric domains numbers (log-scaled
for loguniform). Importances are normalised to sum to 1.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

from services.contract.sweep_spec import (
    ChoiceDomain,
    GridDomain,
    LogUniformDomain,
    RandIntDomain,
    SweepSpec,
)
from services.contract.trial_status import counts_final_metric

MIN_TRIALS = 4  # fewer, and a forest over them says nothing
# More, and an even sample of them: fANOVA's time grows with the trials (about 1 s for 300 on
# a busy 2-CPU machine, 4 s for 1,000), its answer hardly.
MAX_TRIALS = 256
SEED = 0
EVALUATOR = "fanova"


def param_importance(rows: list[dict[str, Any]], sweep: SweepSpec) -> dict[str, Any]:
    """{params: {path: importance, most important first}, evaluator, trials (those it was
    computed over), finished (the trials that could count), metric}, or
    {skipped: why} when there is too little to tell (fewer than MIN_TRIALS finished trials, a
    single swept path, one metric value for every trial)."""
    metric = sweep.search.metric
    paths = list(sweep.space)
    if len(paths) < 2:
        what = f"one swept path ({paths[0]})" if paths else "nothing swept"
        return {"skipped": f"{what}: importance compares two swept paths or more"}
    trials = sorted((r for r in rows if counts_final_metric(r) and _usable(r, paths)),
                    key=lambda r: str(r.get("trial_id")))
    if len(trials) < MIN_TRIALS:
        return {"skipped": f"{len(trials)} finished trials with a finite {metric}; importance "
                           f"needs at least {MIN_TRIALS}"}
    if len({float(r["metric"]) for r in trials}) == 1:
        return {"skipped": f"every finished trial has the same {metric}"}
    finished = len(trials)
    if finished > MAX_TRIALS:
        trials = [trials[i * finished // MAX_TRIALS] for i in range(MAX_TRIALS)]
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        distributions = {path: _distribution(sweep, path, trials) for path in paths}
        study = optuna.create_study(direction="maximize" if sweep.search.mode == "max"
                                    else "minimize")
        for row in trials:
            study.add_trial(optuna.trial.create_trial(
                params={path: _value(sweep, path, row["params"][path]) for path in paths},
                distributions=distributions, value=float(row["metric"])))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's experimental-feature notes
            importances = get_param_importances(
                study, evaluator=FanovaImportanceEvaluator(seed=SEED))
    except (TypeError, ValueError, RuntimeError) as exc:
        # The rest of the summary is worth more than this number: say why it is missing.
        return {"skipped": f"Optuna could not compute it: {type(exc).__name__}: {exc}"[:500]}
    ranked = sorted(((path, float(importances.get(path, 0.0))) for path in paths),
                    key=lambda item: (-item[1], item[0]))
    return {"params": {path: round(value, 4) for path, value in ranked},
            "evaluator": EVALUATOR, "trials": len(trials), "finished": finished,
            "metric": metric}


def _usable(row: dict[str, Any], paths: list[str]) -> bool:
    metric = row.get("metric")
    params = row.get("params") or {}
    return (isinstance(metric, int | float) and math.isfinite(metric)
            and all(path in params for path in paths))


def _listed(sweep: SweepSpec, path: str) -> bool:
    return isinstance(sweep.space[path], ChoiceDomain | GridDomain)


def _category(value: Any) -> str:
    """A listed value as an Optuna category (which takes only numbers and strings)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _value(sweep: SweepSpec, path: str, value: Any) -> Any:
    if _listed(sweep, path):
        return _category(value)
    return int(value) if isinstance(sweep.space[path], RandIntDomain) else float(value)


def _distribution(sweep: SweepSpec, path: str, trials: list[dict[str, Any]]) -> Any:
    """The path's domain as an Optuna distribution, widened to every value a trial had (PBT
    perturbs values past the domain's bounds)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    domain = sweep.space[path]
    if isinstance(domain, ChoiceDomain | GridDomain):
        seen = [_category(r["params"][path]) for r in trials]
        return CategoricalDistribution(list(dict.fromkeys(
            [*(_category(v) for v in domain.values), *seen])))
    values = [float(r["params"][path]) for r in trials]
    low = min([float(domain.low), *values])  # type: ignore[union-attr]
    high = max([float(domain.high), *values])  # type: ignore[union-attr]
    if isinstance(domain, RandIntDomain):
        return IntDistribution(int(low), max(int(low), int(high) - 1, *map(int, values)))
    return FloatDistribution(low, high, log=isinstance(domain, LogUniformDomain) and low > 0)
