"""Row 6: what checking one submission costs the API at its caps.

- 6a: specs over the parameter cap (three that once cost the API seconds and gigabytes, and
  distinct widths so no cache answers) are refused from a build on the meta device; the
  baseline is one plain PyTorch build of a small model of the same kind, so the ratio says how
  close to free a refusal is.
- 6b: the largest sweep the default caps allow (LAYERWISE_MAX_SWEEP_DRY_RUNS dry runs, each a
  distinct model just under LAYERWISE_MAX_DRY_RUN_PARAMETERS, the largest dry-run for real)
  checked in full; the baseline is plain PyTorch building those models and taking one step on
  eight examples each. Target: under 2 s.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from services.caps import SubmissionLimits
from services.contract.spec import ExperimentSpec
from services.contract.spec_errors import SpecInvalid
from services.contract.sweep_spec import SweepSpec
from workers.submission.pipeline import check_experiment, check_sweep

LIMITS = SubmissionLimits()
# digits: 64 inputs, 10 classes; one hidden layer of width w has 75w + 10 parameters.
WIDEST_UNDER_DRY_RUN_CAP = (LIMITS.max_dry_run_parameters - 10) // 75


def _digits_mlp(hidden: list[int]) -> dict[str, Any]:
    return {"data": {"name": "digits"}, "model": {"kind": "mlp", "hidden": hidden}}


def refusals(count: int) -> dict[str, Any]:
    huge = [[20001, 20000], [12000] * 20, [1000000, 1000000]]
    huge += [[30000 + i, 30000 + i] for i in range(count - len(huge))]
    started = time.perf_counter()
    for hidden in huge:
        try:
            check_experiment(ExperimentSpec.model_validate(_digits_mlp(hidden)), [])
        except SpecInvalid:
            continue
        raise AssertionError(f"hidden {hidden[:3]}... was not refused")
    refused = (time.perf_counter() - started) / len(huge)
    started = time.perf_counter()
    for i in range(len(huge)):
        torch.nn.Sequential(torch.nn.Linear(64, 64 + i), torch.nn.Linear(64 + i, 10))
    plain = (time.perf_counter() - started) / len(huge)
    return {"row": "6a refusal over the parameter cap", "baseline": "plain build of a 64-wide "
            "MLP", "refusal_s": refused, "plain_s": plain, "ratio": refused / plain,
            "target": "<= 1 s each", "met": refused <= 1.0}


def largest_sweep() -> dict[str, Any]:
    probes = LIMITS.max_sweep_dry_runs - 2  # the base and the largest configuration
    widths = [WIDEST_UNDER_DRY_RUN_CAP - i for i in range(probes)]
    sweep = SweepSpec.model_validate({
        "base": {**_digits_mlp([widths[-1] - 1]), "training": {"epochs": 1}},
        "space": {"model.hidden": {"type": "choice", "values": [[w] for w in widths]}},
        "search": {"num_samples": 1}})
    check_experiment(sweep.base, [])  # the data loaded once, as on a running service
    started = time.perf_counter()
    check_sweep(sweep, [])
    checked = time.perf_counter() - started
    x, y = torch.randn(8, 64), torch.randint(0, 10, (8,))
    started = time.perf_counter()
    for width in [widths[-1] - 1, *widths, widths[0]]:
        model = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(),
                                    torch.nn.Linear(width, 10))
        torch.nn.functional.cross_entropy(model(x), y).backward()
    plain = time.perf_counter() - started
    return {"row": f"6b largest allowed sweep ({probes + 2} dry runs of real models)",
            "baseline": "plain build + one step of the same models", "check_s": checked,
            "plain_s": plain, "ratio": checked / plain, "target": "<= 2 s",
            "met": checked <= 2.0}


def run(tiny: bool = False) -> list[dict[str, Any]]:
    torch.set_num_threads(1)  # as the API's thread pool runs a dry run
    return [refusals(6 if tiny else 30), largest_sweep()]
