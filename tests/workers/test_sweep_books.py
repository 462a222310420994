"""What a sweep's parent run makes of its trial rows, without Ray: the per-configuration counts
and intervals (cut to the metric's range), which swept values mattered (Optuna's fANOVA), and
the plots (stopped trials grey, each cell's mix of verdicts, titles inside the figure)."""

from __future__ import annotations

import math
import random

import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgb

from services.contract.sweep_spec import SweepSpec
from tests.utils.specs import mlp_spec
from workers.sweeps import sweep_plots
from workers.sweeps.importance import MIN_TRIALS, param_importance
from workers.sweeps.metric_bounds import clip_interval, metric_bounds
from workers.sweeps.parallel_coordinates import parallel_coordinates
from workers.sweeps.summary import configuration_stats
from workers.sweeps.verdict_grid import verdict_grid

ACCURACY = metric_bounds("val/accuracy")


def _sweep(space: dict | None = None, **search) -> SweepSpec:
    return SweepSpec.model_validate({
        "name": "a sweep whose name is long enough to need the whole width of its figures",
        "base": mlp_spec(), "repeat": 3,
        "space": space if space is not None else {
            "model.activation": {"type": "grid", "values": ["sigmoid", "relu"]},
            "model.hidden": {"type": "grid", "values": [[8], [8] * 6]},
            "optimizer.lr": {"type": "loguniform", "low": 1e-3, "high": 1.0}},
        "search": {"metric": "val/accuracy", "mode": "max", **search}})


def _rows(seed: int = 0) -> list[dict]:
    """Deep sigmoid nets vanish (stopped at chance); the rest learn, near 1.0."""
    rng = random.Random(seed)
    rows = []
    for activation in ("sigmoid", "relu"):
        for hidden in ([8], [8] * 6):
            for repeat in range(3):
                broken = activation == "sigmoid" and len(hidden) == 6
                row = {"trial_id": f"t{len(rows):02d}", "repeat": repeat,
                       "params": {"model.activation": activation, "model.hidden": hidden,
                                  "optimizer.lr": 0.1},
                       "status": "stopped" if broken else "succeeded",
                       "verdict": "vanishing" if broken else ("healthy", "slow")[repeat % 2],
                       "metric": 0.1 + rng.uniform(0, 0.02) if broken
                       else min(1.0, 0.97 + rng.uniform(-0.06, 0.03))}
                if broken:
                    row["stop_reason"] = "diagnosis: vanishing"
                rows.append(row)
    rows[0]["status"] = "early_stopped"  # sigmoid [8] seed 0: the scheduler stopped it
    rows[1]["verdict"] = "not_learning"
    return rows


def _draws_inside(figure) -> bool:
    """Everything the figure draws (titles, labels, ticks, legends) lies inside it."""
    figure.canvas.draw()
    drawn = figure.get_tightbbox(figure.canvas.get_renderer())  # inches
    width, height = figure.get_size_inches()
    slack = 0.02
    return (drawn.x0 >= -slack and drawn.y0 >= -slack and drawn.x1 <= width + slack
            and drawn.y1 <= height + slack)


# -- the numbers -------------------------------------------------------------------------------
def test_metric_ranges():
    assert ACCURACY == (0.0, 1.0)
    assert metric_bounds("activation/dead_fraction") == (0.0, 1.0)
    assert metric_bounds("val/perplexity") == (1.0, None)
    assert metric_bounds("val/mse") == metric_bounds("val/loss") == (0.0, None)
    assert metric_bounds("train/loss", model_kind="hopfield") == (None, None)  # an energy
    assert metric_bounds("throughput/samples_per_s") == (None, None)
    assert clip_interval((0.9, 1.07), ACCURACY) == [0.9, 1.0]
    assert clip_interval((-0.2, 0.3), metric_bounds("val/loss")) == [0.0, 0.3]


def test_each_configuration_counts_its_trials_per_status_and_its_interval_stays_in_range():
    configurations = configuration_stats(_rows(), "max", ACCURACY)

    by_key = {(c["params"]["model.activation"], len(c["params"]["model.hidden"])): c
              for c in configurations}
    broken = by_key[("sigmoid", 6)]
    assert broken["statuses"] == {"stopped: vanishing": 3} and broken["stopped"] == 3
    assert broken["n"] == 3 and broken["mean"] < 0.15  # their last values count
    scheduled = by_key[("sigmoid", 1)]
    assert scheduled["statuses"] == {"succeeded": 2, "stopped: scheduler": 1}
    assert scheduled["stopped"] == 1 and scheduled["n"] == 2  # judged on fewer epochs: out
    assert by_key[("relu", 1)]["statuses"] == {"succeeded": 3}
    assert configurations[-1] is broken  # the worst mean last
    for config in configurations:
        low, high = config["ci95"]
        assert 0.0 <= low <= config["mean"] <= high <= 1.0
    # Without the range, the same values give an interval past 1.0: the cut is doing it.
    unclipped = configuration_stats(_rows(), "max")
    assert max(c["ci95"][1] for c in unclipped) > 1.0


def test_a_configuration_whose_trials_all_stopped_early_is_listed_last_with_n_zero():
    rows = [{**r, "status": "early_stopped"} if r["params"]["model.activation"] == "relu"
            and len(r["params"]["model.hidden"]) == 1 else r for r in _rows()]
    last = configuration_stats(rows, "max", ACCURACY)[-1]
    assert (last["n"], last["mean"], last["ci95"], last["statuses"]) == (
        0, None, None, {"stopped: scheduler": 3})


# -- what mattered ---------------------------------------------------------------------------
def test_importance_names_the_path_that_decides_and_is_the_same_every_time():
    sweep = _sweep()
    rows = _rows()
    first = param_importance(rows, sweep)
    assert first == param_importance(list(reversed(rows)), sweep)  # seeded, order-free
    assert first["evaluator"] == "fanova" and first["metric"] == "val/accuracy"
    assert first["trials"] == first["finished"] == 11  # the scheduler's stop does not count
    assert list(first["params"])[-1] == "optimizer.lr"  # one value: it cannot matter
    assert first["params"]["optimizer.lr"] == 0.0
    assert sum(first["params"].values()) == pytest.approx(1.0, abs=1e-3)


def test_importance_over_a_sampled_space_follows_the_path_the_metric_depends_on():
    sweep = _sweep({"optimizer.lr": {"type": "loguniform", "low": 1e-4, "high": 1.0},
                    "training.batch_size": {"type": "randint", "low": 8, "high": 128},
                    "model.hidden": {"type": "choice", "values": [[4], [8, 8]]}})
    rng = random.Random(3)
    rows = []
    for i in range(24):
        lr = 10 ** rng.uniform(-4, 0)
        rows.append({"trial_id": f"t{i}", "status": "succeeded",
                     "metric": 0.1 * (4 + math.log10(lr)) + rng.uniform(-0.01, 0.01),
            "params": {"optimizer.lr": lr, "training.batch_size": rng.randrange(8, 128),
                       "model.hidden": rng.choice([[4], [8, 8]])}})
    ranked = param_importance(rows, sweep)["params"]
    assert next(iter(ranked)) == "optimizer.lr" and ranked["optimizer.lr"] > 0.8


def test_importance_says_why_it_is_skipped():
    sweep = _sweep()
    few = param_importance(_rows()[:MIN_TRIALS], sweep)  # one is stopped by the scheduler
    assert few == {"skipped": f"{MIN_TRIALS - 1} finished trials with a finite val/accuracy; "
                              f"importance needs at least {MIN_TRIALS}"}
    one_path = _sweep({"optimizer.lr": {"type": "grid", "values": [0.1, 0.2]}})
    assert "one swept path (optimizer.lr)" in param_importance(_rows(), one_path)["skipped"]
    flat = [{**r, "metric": 0.5} for r in _rows()]
    assert param_importance(flat, sweep) == {
        "skipped": "every finished trial has the same val/accuracy"}


# -- the plots -------------------------------------------------------------------------------
def _grey(color) -> bool:
    r, g, b = to_rgb(color)
    return r == g == b and 0.3 < r < 0.9


def test_the_stopped_trials_are_grey_on_the_metric_plot_and_the_legend_is_off_the_data():
    rows = _rows()
    figure = sweep_plots.metric_vs_params(rows, _sweep(), "val/accuracy")
    dots = [c for c in figure.axes[0].collections if isinstance(c, PathCollection)]
    by_label = {c.get_label(): c for c in dots}
    stopped = by_label["stopped (diagnosis or scheduler)"]
    assert len(stopped.get_offsets()) == 4  # three on their diagnosis, one by the scheduler
    assert all(_grey(color) for color in stopped.get_facecolors())
    trained = by_label["trained to the end"]
    assert len(trained.get_offsets()) == 8
    assert not any(_grey(color) for color in trained.get_facecolors())
    assert not any(ax.get_legend() for ax in figure.axes) and figure.legends  # below the panels
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in figure.axes)
    assert _draws_inside(figure)
    sweep_plots.close(figure)


def test_the_intervals_of_the_configurations_plot_end_inside_the_metric_range():
    configurations = configuration_stats(_rows(), "max", ACCURACY)
    figure = sweep_plots.configuration_intervals(configurations, "val/accuracy", ACCURACY)
    ax = figure.axes[0]
    low, high = ax.get_xlim()
    assert 0.0 <= low and high <= 1.0
    ends = [x for line in ax.lines for x in line.get_xdata()]  # the error bars' caps
    assert ends and max(ends) <= 1.0 and min(ends) >= 0.0
    assert ax.get_xlabel() and ax.get_ylabel() and _draws_inside(figure)
    sweep_plots.close(figure)


def test_each_cell_of_the_verdict_grid_shows_its_mix_and_the_title_fits():
    figure = verdict_grid(_rows(), _sweep())
    cells = {t.get_text() for t in figure.axes[0].texts}
    # relu [8]: seeds 0 and 2 healthy, 1 slow; sigmoid [8]: 1 not_learning: no cell hides
    # its minority verdicts.
    assert "healthy 2\nslow 1" in cells
    assert "healthy 2\nnot_learning 1" in cells
    assert "vanishing 3\n(3 stopped)" in cells
    assert figure.get_suptitle() and _draws_inside(figure)
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in figure.axes if ax.get_visible())
    sweep_plots.close(figure)


def test_the_parallel_coordinates_draw_a_line_per_trial_coloured_by_its_metric():
    rows = _rows()
    rows.append({"trial_id": "x", "status": "failed", "params": rows[0]["params"]})
    figure = parallel_coordinates(rows, _sweep())
    assert figure is not None
    ax = figure.axes[0]
    lines = [line for line in ax.lines if len(line.get_xdata()) == 4]  # 3 paths + the metric
    assert len(lines) == 12  # the failed trial has no metric: no line
    grey = [line for line in lines if _grey(line.get_color())]
    assert len(grey) == 4  # stopped on the diagnosis or by the scheduler
    coloured = {to_rgb(line.get_color()) for line in lines if line not in grey}
    assert len(coloured) > 3  # coloured by the metric, not one colour
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "model.activation", "model.hidden", "optimizer.lr", "val/accuracy"]
    assert "val/accuracy" in figure.axes[1].get_ylabel()  # the colour bar
    assert ax.get_xlabel() and ax.get_ylabel() and _draws_inside(figure)
    sweep_plots.close(figure)
    assert parallel_coordinates(rows, _sweep({})) is None
