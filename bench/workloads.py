"""The shared workload: an MLP 64-256-256-10 on digits, Adam, batch 64, and the plain-PyTorch
loop every row compares against (what a careful hand-written script does: the fused Adam,
gradients set to None)."""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from services.contract.sections import DataSpec
from workers.data import load_data


def mlp_digits_spec(epochs: int, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "bench-mlp", "project": "bench", "data": {"name": "digits"},
        "model": {"kind": "mlp", "hidden": [256, 256], "activation": "relu"},
        "optimizer": {"name": "adam", "lr": 0.001},
        "training": {"epochs": epochs, "batch_size": 64, "seed": 0},
        "diagnostics": {"every_steps": 1}, "resources": {"cpus": 1},
    }
    spec.update(overrides)
    return spec


def bench_device() -> torch.device:
    """CUDA when the machine has it (the rows then compare on the GPU, both sides), else the
    CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def digits_tensors(device: torch.device | None = None) -> tuple[torch.Tensor, ...]:
    bundle = load_data(DataSpec(name="digits"), "auto", [])
    return tuple(torch.as_tensor(a, device=device) for a in (
        bundle.x_train, bundle.y_train, bundle.x_val, bundle.y_val))


def plain_training(epochs: int, *, seed: int = 0) -> dict[str, float]:
    """The baseline: the same model, optimizer and batches, per-epoch validation, no
    instrumentation. Returns seconds and steps."""
    torch.manual_seed(seed)
    device = bench_device()
    x, y, x_val, y_val = digits_tensors(device)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10)).to(device)
    # Fused, as Layerwise's loop is (workers/training/optim.py): on this machine it is 1.25x
    # faster than the default Adam, and a baseline without it would flatter every ratio.
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001, fused=True)
    generator = torch.Generator().manual_seed(seed)
    steps = 0
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        total = torch.zeros(())
        for index in torch.randperm(len(x), generator=generator).to(device).split(64):
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            steps += 1
        model.eval()
        with torch.no_grad():
            float(F.cross_entropy(model(x_val), y_val))
        float(total)
    return {"seconds": time.perf_counter() - started, "steps": steps}
