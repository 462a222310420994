"""Live and final agree: the live diagnosis keeps each call with its step (`calls`, the final
diagnosis's `live_verdicts`), the final one says when it differs; the report shows both, the
unfinished run's estimate, and vanishing through time in its own words. Then one real short
run of a vanilla RNN on a long adding problem: the loop measures the through-time ratio, the
diagnosis calls it vanishing with a recurrent-cell fix, and its record keeps the live calls."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from services.contract.diagnostics_spec import DiagnosticsSpec
from tests.utils.settings import local_settings, worker_settings
from workers.diagnostics.live import LiveDiagnosis, live_agrees
from workers.diagnostics.report import render_report
from workers.diagnostics.verdicts import Diagnosis, Finding
from workers.run import run_experiment


def _diagnosis(*verdicts: str) -> Diagnosis:
    return Diagnosis(verdicts[0] if verdicts else "healthy",
                     [Finding(v, {"x": 1}) for v in verdicts], None, None, [], {}, [], {})


def _feed(live: LiveDiagnosis, sequence: list[Diagnosis], epochs: int) -> None:
    trainer = SimpleNamespace(epochs=epochs, epoch=0, step=0, stop_reason=None,
                              request_stop=lambda reason: None)
    queue = iter(sequence)
    live.judge = lambda total: next(queue)
    for epoch in range(len(sequence)):
        trainer.epoch, trainer.step = epoch, (epoch + 1) * 10
        live.on_epoch_end(trainer, {})


def test_the_live_calls_are_kept_with_their_step_and_the_final_diagnosis_says_if_it_differs():
    live = LiveDiagnosis(lambda total: _diagnosis(), DiagnosticsSpec(), lambda v: None,
                         budget=None)
    # healthy, a one-epoch blip (not called), then symmetric held for two epochs
    _feed(live, [_diagnosis(), _diagnosis("symmetric"), _diagnosis(), _diagnosis("symmetric"),
                 _diagnosis("symmetric")], epochs=10)
    assert live.calls == [{"step": 9, "verdict": "healthy"}, {"step": 49, "verdict": "symmetric"}]
    assert live.payload is not None and live.payload["live_verdicts"] == live.calls

    final = _diagnosis("symmetric")
    live_agrees(final, live.calls)
    assert final.live_verdicts == live.calls and final.notes == []  # they agree: no note
    differs = _diagnosis("unstable")
    live_agrees(differs, live.calls)
    assert differs.as_dict()["live_verdicts"][-1] == {"step": 49, "verdict": "symmetric"}
    assert "the live diagnosis called symmetric from step 49" in differs.notes[0]


def test_the_report_shows_the_live_calls_the_estimate_and_the_through_time_meaning():
    healthy = {"verdict": "healthy", "findings": [], "needs_more_epochs": 12,
               "live_verdicts": [{"step": 9, "verdict": "healthy"}]}
    page = render_report({"name": "run"}, {}, healthy, {})
    assert "about 12 more epochs" in page
    assert "the live diagnosis called: healthy at step 9" in page
    through = {"verdict": "vanishing", "findings": [
        {"verdict": "vanishing", "evidence": {"through_time_ratio": 3e-6,
                                              "phase": "through_time"},
         "layers": ["rnn.0.recurrent"], "fix": {"model.cell": "lstm"}}]}
    page = render_report({"name": "rnn", "model": {"cell": "vanilla"}}, {}, through, {})
    assert "Gradients vanish through time" in page
    assert "model.cell: vanilla -&gt; lstm" in page
    assert "needs-more-epochs" not in page  # a problem: no estimate shown


@pytest.mark.slow
def test_a_vanilla_rnn_on_a_long_adding_problem_is_vanishing_through_time(tmp_path):
    settings = local_settings(tmp_path)
    spec = {"name": "rnn-long-adding", "project": "tests",
            "data": {"name": "adding", "params": {"n": 240, "length": 50}},
            "model": {"kind": "rnn", "cell": "vanilla", "hidden": 8},
            "optimizer": {"name": "adam", "lr": 1e-3},
            "training": {"epochs": 4, "batch_size": 32}, "diagnostics": {"plots": False}}
    result = run_experiment("job-rnn", spec, worker_settings(settings), lambda update: None)
    diagnosis = result["diagnosis"]
    assert diagnosis["evidence"]["through_time_ratio"] < 1e-3
    assert diagnosis["verdict"] == "vanishing", diagnosis["findings"]
    finding = diagnosis["findings"][0]
    assert finding["evidence"]["phase"] == "through_time"
    assert finding["fix"] == {"model.cell": "lstm"}
    assert {"model.cell": "gru"} in finding["alternatives"]
    calls = diagnosis["live_verdicts"]
    assert calls and all(set(c) == {"step", "verdict"} for c in calls)
    assert calls[-1]["verdict"] == diagnosis["verdict"]
