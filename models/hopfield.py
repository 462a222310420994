"""Hopfield networks: Hebbian storage, sign dynamics and the lecture's energy.

Storage: W = (1/D) sum_p xi_p xi_p^T with w_jj = 0, over the distinct stored patterns.
Recall:  v_j = sign(sum_{i != j} w_ji v_i), one unit at a time in random order (async) or all
         at once (sync); a unit whose field is zero keeps its state.
Energy:  E = -sum_{i,j} w_ji v_i v_j; each asynchronous flip lowers it (by 4 |field_j|), so
         async recall ends in a minimum; sync recall can cycle between two states.
"""

from __future__ import annotations

from typing import Any

import torch

from models.base import DataShape, LayerwiseModel
from models.kinds.hopfield import HopfieldConfig
from models.kinds.names import UpdateName
from models.rbm import require_recall
from models.report import Curve, ModelReport, Pictures, picture_shape, probe_split

TRACE_EXAMPLES = 64
RECALL_PANELS = 6
CAPACITY_POINTS = 12


def hebbian(patterns: torch.Tensor) -> torch.Tensor:
    """sum_p xi_p xi_p^T / D with a zero diagonal, for patterns (P, D)."""
    weight = patterns.T @ patterns / patterns.shape[1]  # (D, D)
    return weight.fill_diagonal_(0.0)


def energy(weight: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """E = -v^T W v per state: (B,)."""
    return -((v @ weight) * v).sum(1)


def recall(weight: torch.Tensor, v: torch.Tensor, *, update: UpdateName, max_sweeps: int,
           trace: list[float] | None = None, generator: torch.Generator | None = None
           ) -> torch.Tensor:
    """Run the sign dynamics from states v (B, D) until nothing changes or `max_sweeps`
    passes over the units. Appends the mean energy after each update to `trace` (one unit in
    async mode, all units in sync mode), starting with the initial energy."""
    v = v.clone()
    current = energy(weight, v) if trace is not None else None
    if current is not None and trace is not None:
        trace.append(float(current.mean()))
    for _ in range(max_sweeps):
        if update == "sync":
            field = v @ weight  # (B, D)
            new = torch.where(field == 0, v, torch.sign(field))
            if torch.equal(new, v):
                break
            v = new
            if trace is not None:
                trace.append(float(energy(weight, v).mean()))
            continue
        changed = torch.zeros((), dtype=torch.bool, device=v.device)
        order = torch.randperm(v.shape[1], generator=generator)
        for j in order.tolist():
            field = v @ weight[:, j]  # (B,)
            new = torch.where(field == 0, v[:, j], torch.sign(field))
            flipped = new != v[:, j]
            changed |= flipped.any()
            if current is not None and trace is not None:
                current = current + 4 * torch.where(flipped, v[:, j] * field, 0.0)
                trace.append(float(current.mean()))
            v[:, j] = new
        if not changed:
            break
    return v


class HopfieldNet(LayerwiseModel):
    """Stores the clean patterns y of each batch (once each), recalls from the corrupted x."""

    uses_gradients = False
    memory: torch.Tensor

    def __init__(self, config: HopfieldConfig, shape: DataShape):
        super().__init__()
        units = shape.input_dim
        self.config = config
        self.image_shape = shape.extra.get("image_shape")
        self.weight = torch.nn.Parameter(torch.zeros(units, units), requires_grad=False)
        self.register_buffer("memory", torch.zeros(0, units))  # the stored patterns (P, D)
        self._sums: dict[str, torch.Tensor] = {}

    def layer_groups(self) -> dict[str, list[torch.nn.Parameter]]:
        return {"weight": [self.weight]}

    @torch.no_grad()
    def store(self, patterns: torch.Tensor) -> int:
        """Hebbian storage of the rows of `patterns` (B, D) not stored yet. Returns how many
        were new (a pattern seen again adds nothing: W sums over distinct patterns)."""
        unique = torch.unique(torch.sign(patterns), dim=0)  # (U, D)
        if len(self.memory):
            seen = (unique[:, None, :] == self.memory[None]).all(-1).any(-1)  # (U,)
            unique = unique[~seen]
        if len(unique):
            self.weight.add_(hebbian(unique))
            self.memory = torch.cat([self.memory, unique])
        return len(unique)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return recall(self.weight, torch.sign(x.flatten(1)), update=self.config.update,
                      max_sweeps=self.config.max_sweeps)  # (B, D)

    def training_step(self, x: torch.Tensor, y: torch.Tensor, objective: Any
                      ) -> dict[str, torch.Tensor]:
        self.store(y.flatten(1))
        recalled = self(x)
        e = energy(self.weight, recalled).mean()
        zero = torch.zeros((), device=e.device)
        self._sums["energy"] = self._sums.get("energy", zero) + e
        self._sums["count"] = self._sums.get("count", zero) + 1.0
        return {"loss": e, "output": recalled}

    def epoch_metrics(self) -> dict[str, float]:
        sums, self._sums = self._sums, {}
        stored = len(self.memory)
        out = {"train/stored_patterns": float(stored),
               "train/load": stored / self.weight.shape[0]}
        if sums:
            out["train/energy"] = float(sums["energy"]) / float(sums["count"])
        return out

    @torch.no_grad()
    def after_training(self, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
                       ) -> ModelReport:
        x, y = probe_split(splits)
        x, y = torch.sign(x.flatten(1)), torch.sign(y.flatten(1))
        report = ModelReport()
        trace: list[float] = []
        recalled = recall(self.weight, x[:TRACE_EXAMPLES], update=self.config.update,
                          max_sweeps=self.config.max_sweeps, trace=trace)
        unit = "unit update" if self.config.update == "async" else "synchronous update"
        report.curves["hopfield/energy"] = Curve(list(range(len(trace))), trace,
                                                 xlabel=unit, ylabel="mean energy E")
        shown = min(RECALL_PANELS, len(recalled))
        height, width = picture_shape(x.shape[1], self.image_shape)
        panels = torch.stack([y[:shown], x[:shown], recalled[:shown]], 1)  # (n, 3, D)
        report.pictures["hopfield_recall"] = Pictures(
            panels.reshape(-1, height, width).cpu(),
            [t for i in range(shown) for t in (self._pattern_title(y[i]),
                                               f"example {i}, corrupted", "recalled")],
            columns=6)
        if self.config.capacity_curve:
            corruption = float((x != y).float().mean())
            report.curves["hopfield/capacity"] = self.capacity(corruption)
        return report

    def _pattern_title(self, target: torch.Tensor) -> str:
        """The stored pattern's own index (its row in `memory`, in storing order), not the
        example's: many examples are copies of one pattern."""
        rows = (self.memory == target).all(-1).nonzero()
        return f"stored pattern {int(rows[0])}" if len(rows) else "target (not stored)"

    @torch.no_grad()
    def capacity(self, corruption: float) -> Curve:
        """Fraction of random patterns recalled exactly from `corruption` flipped units, as the
        number of stored patterns P grows (the load P / D)."""
        units = self.weight.shape[0]
        device = self.weight.device
        generator = torch.Generator().manual_seed(self.config.seed)
        top = self.config.capacity_max_patterns or max(2, units // 4)
        loads = sorted({max(1, round(1 + i * (top - 1) / (CAPACITY_POINTS - 1)))
                        for i in range(CAPACITY_POINTS)})
        flips = round(corruption * units)
        accuracy = []
        for count in loads:
            patterns = torch.randint(0, 2, (count, units), generator=generator).float() * 2 - 1
            probes = patterns.repeat(self.config.capacity_trials, 1)  # (P * trials, D)
            noise = torch.rand(probes.shape, generator=generator).argsort(1)[:, :flips]
            corrupted = probes.clone()
            corrupted.scatter_(1, noise, -probes.gather(1, noise))
            out = recall(hebbian(patterns).to(device), corrupted.to(device),
                         update=self.config.update, max_sweeps=self.config.max_sweeps,
                         generator=generator)
            accuracy.append(float((out == probes.to(device)).all(1).float().mean()))
        return Curve(loads, accuracy, xlabel="stored patterns P", ylabel="recall accuracy")


def build_hopfield(config: HopfieldConfig, shape: DataShape, dropout: float = 0.0
                   ) -> HopfieldNet:
    require_recall("hopfield", shape)
    return HopfieldNet(config, shape)
