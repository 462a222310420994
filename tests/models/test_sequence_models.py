"""The sequence models: rnn (vanilla, LSTM variants, GRU), transformer,
autoregressive and captioner; their data, their checks, and small seeded learning bars."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
import torch
import yaml
from sklearn.linear_model import LogisticRegression
from torch import nn

from models.base import DataShape, ModelConfigError
from models.builders import build_model
from models.kinds.names import LSTMVariant
from models.recurrent_cells import GRUCell, LSTMCell, VanillaCell
from models.registry import MODEL_KINDS
from services.contract.spec import ExperimentSpec
from workers.data import DataError, load_data
from workers.run import prepare, to_splits
from workers.submission.pipeline import check_experiment
from workers.training.build import build_trainer

SEQUENCE_KINDS = {"rnn", "transformer", "autoregressive", "captioner"}
CPU = torch.device("cpu")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# One small dataset per kind, and the configs each kind is exercised with.
SMALL_DATA = {
    "adding": {"name": "adding", "params": {"n": 32, "length": 12}},
    "text": {"name": "text", "params": {"length": 16, "max_chars": 2000}},
    "sentiment": {"name": "sentiment", "params": {"n": 32}},
    "sine": {"name": "sine", "params": {"n": 32, "length": 20}},
    "sine_levels": {"name": "sine", "params": {"n": 32, "length": 20, "levels": 16}},
    "copy": {"name": "copy", "params": {"n": 32, "delay": 4, "span": 3}},
    "captions": {"name": "digit_captions"},
    "digits": {"name": "digits"},
    "adding_long": {"name": "adding", "params": {"n": 8, "length": 5000}},
}
CASES: list[tuple[str, dict[str, Any]]] = [
    *[("adding", {"kind": "rnn", "cell": "lstm", "hidden": 8, "variant": v})
      for v in get_args(LSTMVariant)],
    ("adding", {"kind": "rnn", "cell": "vanilla", "hidden": 8, "activation": "relu"}),
    ("sentiment", {"kind": "rnn", "cell": "gru", "hidden": 8, "layers": 2,
                   "bidirectional": True, "bptt": 4}),
    ("copy", {"kind": "rnn", "cell": "vanilla", "hidden": 8, "layers": 2}),
    ("text", {"kind": "rnn", "cell": "lstm", "hidden": 8, "variant": "full_gate_recurrence"}),
    ("text", {"kind": "transformer", "width": 8, "heads": 2, "layers": 2, "context": 4}),
    ("sine", {"kind": "transformer", "width": 8, "heads": 2, "positional": "sinusoidal"}),
    ("sentiment", {"kind": "transformer", "width": 8, "heads": 2, "causal": False}),
    ("sine", {"kind": "autoregressive", "channels": 8, "layers": 3}),
    ("sine_levels", {"kind": "autoregressive", "channels": 8, "layers": 2, "kernel_size": 3}),
    ("adding", {"kind": "autoregressive", "channels": 8, "layers": 2}),
    ("captions", {"kind": "captioner", "hidden": 8, "cell": "lstm"}),
    ("captions", {"kind": "captioner", "hidden": 8, "cell": "vanilla", "channels": [4]}),
]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small nets on a shared machine: a second thread costs more in syncs than it gains
    (measured 10-20x slower here under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spec_for(data: str | dict[str, Any], model: dict[str, Any], **overrides: Any
             ) -> ExperimentSpec:
    payload = {"data": SMALL_DATA[data] if isinstance(data, str) else data, "model": model,
               "optimizer": {"name": "adam", "lr": 0.01},
               "training": {"epochs": 1, "batch_size": 32}, **overrides}
    return ExperimentSpec.model_validate(payload)


def train(spec: ExperimentSpec) -> tuple[dict[str, Any], Any, Any]:
    """The real loop on the CPU, without MLflow. Returns (result, model, bundle)."""
    torch.manual_seed(spec.training.seed)
    bundle, objective, model = prepare(spec, [], CPU)
    trainer = build_trainer(spec, model, objective, to_splits(bundle, CPU), device=CPU)
    return trainer.fit(), model, bundle


def test_every_sequence_kind_is_registered_and_exercised():
    kinds = {f.kind for f in MODEL_KINDS}
    assert SEQUENCE_KINDS <= kinds
    assert {model["kind"] for _, model in CASES} == SEQUENCE_KINDS
    for kind in SEQUENCE_KINDS:
        supports = next(f.honours for f in MODEL_KINDS if f.kind == kind)
        assert supports == {"dropout", "activity_regularization", "input_noise"}


@pytest.mark.parametrize(("data", "model"), CASES,
                         ids=[f"{m['kind']}-{d}-{m.get('variant', m.get('cell', ''))}"
                              for d, m in CASES])
def test_forward_backward_without_nan_and_every_parameter_learns(data, model):
    spec = spec_for(data, model, regularization={"dropout": 0.1})
    torch.manual_seed(0)
    bundle, objective, net = prepare(spec, [], CPU)
    x, y = torch.as_tensor(bundle.x_train[:6]), torch.as_tensor(bundle.y_train[:6])
    out = net.training_step(x, y, objective)
    assert torch.isfinite(out["output"]).all() and torch.isfinite(out["loss"])
    out["loss"].backward()
    for name, param in net.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, f"{name} got a zero gradient"
    groups = net.layer_groups()
    assert sum(len(p) for p in groups.values()) == len(list(net.parameters()))
    net.eval()
    with torch.no_grad():
        z = net(x)
    assert torch.isfinite(z).all()
    assert z.shape[0] == 6 and z.dim() == (3 if bundle.shape().extra["per_step"] else 2)


@pytest.mark.parametrize(("data", "model"), [
    ("adding", {"kind": "rnn", "hidden": 8}),
    ("text", {"kind": "transformer", "width": 8, "heads": 2}),
    ("sine", {"kind": "autoregressive", "channels": 8}),
    ("captions", {"kind": "captioner", "hidden": 8}),
], ids=lambda v: v.get("kind") if isinstance(v, dict) else None)
def test_dropout_is_honoured_in_training_and_off_in_evaluation(data, model):
    spec = spec_for(data, model, regularization={"dropout": 0.5})
    bundle, _, net = prepare(spec, [], CPU)
    x = torch.as_tensor(bundle.x_train[:8])
    assert not torch.equal(net(x), net(x)), "dropout should make training passes differ"
    net.eval()
    torch.testing.assert_close(net(x), net(x))


# -- our cells are the same functions as torch's fused modules ------------------------------

def _torch_pair(kind: str):
    if kind == "lstm":
        return nn.LSTM(3, 5, batch_first=True), LSTMCell(3, 5, "no_peepholes")
    if kind == "gru":
        return nn.GRU(3, 5, batch_first=True), GRUCell(3, 5)
    return (nn.RNN(3, 5, nonlinearity=kind, batch_first=True), VanillaCell(3, 5, kind))


@torch.no_grad()
def _copy_weights(fused: nn.Module, cell: nn.Module, kind: str) -> None:
    w_ih, w_hh = fused.weight_ih_l0, fused.weight_hh_l0
    bias = fused.bias_ih_l0 + fused.bias_hh_l0
    if kind == "lstm":  # torch order i, f, g, o
        gates = [cell.input_gate, cell.forget_gate, cell.cell_input, cell.output_gate]
        for gate, wi, wh, b in zip(gates, w_ih.chunk(4), w_hh.chunk(4), bias.chunk(4),
                                   strict=True):
            gate.weight.copy_(wi), gate.recurrent_weight.copy_(wh), gate.bias.copy_(b)
    elif kind == "gru":  # torch order r, z, n; torch's z keeps the old state: our 1 - u
        fused.bias_hh_l0[10:].zero_()  # the lecture's candidate has no bias inside r * (.)
        bias = fused.bias_ih_l0 + fused.bias_hh_l0
        gates = [cell.reset_gate, cell.update_gate, cell.cell_input]
        for sign, gate, wi, wh, b in zip([1, -1, 1], gates, w_ih.chunk(3), w_hh.chunk(3),
                                         bias.chunk(3), strict=True):
            gate.weight.copy_(sign * wi), gate.recurrent_weight.copy_(sign * wh)
            gate.bias.copy_(sign * b)
    else:
        cell.input.weight.copy_(w_ih), cell.input.bias.copy_(bias)
        cell.recurrent.weight.copy_(w_hh)


@pytest.mark.parametrize("kind", ["lstm", "gru", "tanh", "relu"])
def test_our_step_loop_computes_what_torchs_fused_module_computes(kind):
    torch.manual_seed(0)
    fused, cell = _torch_pair(kind)
    _copy_weights(fused, cell, kind)
    x = torch.randn(4, 9, 3)
    expected, _ = fused(x)
    cell.use_fused = False  # the definition: our step-by-step equations
    ours, _ = cell(x)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)
    cell.use_fused = True  # our weights handed to the fused kernel
    torch.testing.assert_close(cell(x)[0], expected, atol=1e-5, rtol=1e-4)


# -- structure: gates as layers, truncation, causality --------------------------------------

def _built(data: str, model: dict[str, Any]):
    spec = spec_for(data, model)
    bundle = load_data(spec.data, spec.task, [])
    return build_model(spec.model, bundle.shape()), bundle


def test_gates_and_recurrent_weights_are_layers_of_their_own():
    lstm, _ = _built("adding", {"kind": "rnn", "hidden": 4, "layers": 2, "bidirectional": True})
    names = lstm.layer_names()
    assert names[:4] == [f"rnn.0.fwd.{g}" for g in ("forget_gate", "input_gate",
                                                    "output_gate", "cell_input")]
    assert "rnn.1.bwd.output_gate" in names and names[-1] == "head"
    cifg, _ = _built("adding", {"kind": "rnn", "hidden": 4, "variant": "coupled_input_forget"})
    assert cifg.layer_names() == ["rnn.0.input_gate", "rnn.0.output_gate", "rnn.0.cell_input",
                                  "head"]
    vanilla, _ = _built("text", {"kind": "rnn", "cell": "vanilla", "hidden": 4})
    assert vanilla.layer_names() == ["embedding", "rnn.0.input", "rnn.0.recurrent", "head"]
    gru, _ = _built("adding", {"kind": "rnn", "cell": "gru", "hidden": 4})
    assert gru.layer_names() == ["rnn.0.reset_gate", "rnn.0.update_gate", "rnn.0.cell_input",
                                 "head"]
    transformer, _ = _built("text", {"kind": "transformer", "width": 8, "heads": 2,
                                     "layers": 1})
    assert transformer.layer_names() == [
        "embedding", "position", "blocks.0.norm1", "blocks.0.attention.qkv",
        "blocks.0.attention.proj", "blocks.0.norm2", "blocks.0.feed_forward.fc",
        "blocks.0.feed_forward.proj", "norm", "head"]


def _input_gradient(model: nn.Module, x: torch.Tensor, step: int) -> torch.Tensor:
    """|dz[step] / dx| per input step, summed over everything else: (T,)."""
    x = x.clone().requires_grad_(True)
    out = model(x)
    (out if out.dim() == 2 else out[:, step]).sum().backward()
    return x.grad.abs().sum(dim=(0, 2))


def test_truncated_bptt_stops_the_error_k_steps_back():
    torch.manual_seed(0)
    full, bundle = _built("adding", {"kind": "rnn", "hidden": 6})
    cut, _ = _built("adding", {"kind": "rnn", "hidden": 6, "bptt": 4})
    cut.load_state_dict(full.state_dict())
    x = torch.as_tensor(bundle.x_train[:4])  # (4, 12, 2)
    torch.testing.assert_close(full(x), cut(x))  # the same forward pass
    g_full, g_cut = _input_gradient(full, x, -1), _input_gradient(cut, x, -1)
    assert (g_full[:8] > 0).all()
    assert (g_cut[:8] == 0).all() and (g_cut[8:] > 0).all()  # only the last chunk of 4


@pytest.mark.parametrize("model", [
    {"kind": "rnn", "hidden": 6},
    {"kind": "transformer", "width": 8, "heads": 2, "layers": 1, "context": 3},
    {"kind": "autoregressive", "channels": 6, "layers": 2, "kernel_size": 2},
], ids=["rnn", "transformer", "autoregressive"])
def test_next_sample_models_see_only_the_past_and_their_window(model):
    net, bundle = _built("sine", model)
    grad = _input_gradient(net, torch.as_tensor(bundle.x_train[:4]), step=10)
    assert (grad[11:] == 0).all(), "a step must not see the future"
    assert grad[10] > 0
    window = {"rnn": 11, "transformer": 3, "autoregressive": 4}[model["kind"]]
    assert (grad[11 - window:11] > 0).all() and (grad[:11 - window] == 0).all()


def test_a_language_model_samples_text_from_its_vocabulary():
    net, bundle = _built("text", {"kind": "rnn", "cell": "gru", "hidden": 8})
    first = net.epoch_artifacts(3)
    assert list(first) == ["samples/epoch_003.txt"]
    sample = first["samples/epoch_003.txt"]
    prompt = "".join(bundle.extra["vocab"][i] for i in bundle.extra["prompt"])
    assert sample.startswith(prompt) and len(sample) == len(prompt) + 200
    assert set(sample) <= set(bundle.extra["vocab"])
    assert net.epoch_artifacts(3) == first  # seeded by the epoch, not the global RNG
    assert net.training  # sampling leaves the train/eval mode as it was
    classifier, _ = _built("sentiment", {"kind": "rnn", "hidden": 4})
    assert classifier.epoch_artifacts(1) == {}


# -- refusals: the builder names the field --------------------------------------------------

@pytest.mark.parametrize(("data", "model", "loc"), [
    ("text", {"kind": "rnn", "bidirectional": True}, ("bidirectional",)),
    ("sine", {"kind": "rnn", "bidirectional": True}, ("bidirectional",)),
    ("text", {"kind": "transformer", "causal": False}, ("causal",)),
    ("text", {"kind": "transformer", "width": 30, "heads": 4}, ("heads",)),
    ("text", {"kind": "transformer", "context": 17}, ("context",)),
    ("digits", {"kind": "rnn"}, ("kind",)),
    ("digits", {"kind": "transformer"}, ("kind",)),
    ("digits", {"kind": "autoregressive"}, ("kind",)),
    ("sentiment", {"kind": "captioner"}, ("kind",)),
    ("adding", {"kind": "rnn", "cell": "gru", "variant": "no_forget_gate"}, ("variant",)),
    ("adding", {"kind": "rnn", "cell": "lstm", "activation": "relu"}, ("activation",)),
    ("adding", {"kind": "rnn", "mode": "many_to_many"}, ("mode",)),
    ("adding_long", {"kind": "transformer"}, ("kind",)),
], ids=lambda v: v if isinstance(v, str) else None)
def test_impossible_sequence_configs_are_refused_with_the_field(data, model, loc):
    with pytest.raises(ModelConfigError) as caught:
        _built(data, model)
    assert caught.value.loc == loc
    assert len(caught.value.msg) > 30


def test_a_user_txt_is_a_character_corpus(tmp_path):
    (tmp_path / "poem.txt").write_text("the cat sat on the mat. " * 20, encoding="utf-8")
    spec = spec_for({"source": "file", "path": "poem.txt", "params": {"length": 8}},
                    {"kind": "rnn", "hidden": 4})
    bundle = load_data(spec.data, "auto", [str(tmp_path)])
    assert bundle.task == "language_model" and bundle.extra["vocab_size"] == 11
    assert bundle.shape().extra["per_step"] and bundle.y_train.dtype == np.int64
    np.testing.assert_array_equal(bundle.x_train[:, 1:], bundle.y_train[:, :-1])
    bad = spec_for({"source": "file", "path": "poem.txt", "params": {"length": 1}},
                   {"kind": "rnn"})
    with pytest.raises(DataError) as caught:
        load_data(bad.data, "auto", [str(tmp_path)])
    assert caught.value.loc == ("data", "params", "length")


def test_datasets_are_what_they_claim():
    adding = load_data(spec_for({"name": "adding", "params": {"n": 4000}}, {"kind": "rnn"}).data,
                       "auto", [])
    assert abs(float(adding.y_train.var()) - 1 / 6) < 0.02  # predicting the mean: MSE 0.167
    assert (adding.x_train[:, :, 1].sum(axis=1) == 2).all()
    copy = load_data(spec_for("copy", {"kind": "rnn"}).data, "auto", [])
    np.testing.assert_array_equal(copy.y_train[:, -3:], copy.x_train[:, :3].astype(np.int64))
    assert (copy.y_train[:, :-3] == 0).all()
    # sentiment: in "A but B" reviews the label does not follow from the bag of words
    raw = {"name": "sentiment", "params": {"n": 3000, "encoding": "bag"}}
    bags = load_data(spec_for(raw, {"kind": "mlp"}).data, "auto", [])
    fit = LogisticRegression(max_iter=500).fit(bags.x_train, bags.y_train[:, 0])
    assert fit.score(bags.x_val, bags.y_val[:, 0]) < 0.6
    assert abs(float(bags.y_train.mean()) - 0.5) < 0.05


# -- learning bars: small seeded CPU runs ---------------------------------------------------

def _adding_run(cell: str) -> float:
    spec = spec_for({"name": "adding", "params": {"n": 2000, "length": 30}},
                    {"kind": "rnn", "cell": cell, "hidden": 16,
                     **({"variant": "no_peepholes"} if cell == "lstm" else {})},
                    optimizer={"name": "adam", "lr": 0.01},
                    training={"epochs": 8, "batch_size": 16})
    return train(spec)[0]["val/mse"]


@pytest.mark.slow
def test_lstm_solves_the_adding_problem_where_a_vanilla_rnn_does_not():
    lstm, vanilla = _adding_run("lstm"), _adding_run("vanilla")
    assert lstm < 0.05, f"LSTM val MSE {lstm:.4f}; predicting the mean scores 0.167"
    assert vanilla > 0.12 and vanilla > 3 * lstm, (vanilla, lstm)


@pytest.mark.slow
def test_an_rnn_and_a_transformer_beat_a_bag_of_words_on_sentiment():
    bow = train(spec_for({"name": "sentiment", "params": {"encoding": "bag", "n": 1500}},
                         {"kind": "mlp", "hidden": [32]},
                         optimizer={"name": "adam", "lr": 0.01},
                         training={"epochs": 8, "batch_size": 32}))[0]["val/accuracy"]
    data = {"name": "sentiment", "params": {"n": 1500}}
    gru = train(spec_for(data, {"kind": "rnn", "cell": "gru", "hidden": 16},
                         training={"epochs": 2, "batch_size": 32}))[0]["val/accuracy"]
    transformer = train(spec_for(data, {"kind": "transformer", "width": 16, "heads": 2},
                                 optimizer={"name": "adam", "lr": 0.003},
                                 training={"epochs": 4, "batch_size": 16}))[0]["val/accuracy"]
    assert bow < 0.62, f"a bag of words should be near chance, got {bow:.3f}"
    assert gru > 0.95 and transformer > 0.9, (gru, transformer)


@pytest.mark.slow
def test_a_character_model_falls_well_below_the_unigram_perplexity():
    spec = spec_for({"name": "text", "params": {"length": 32, "max_chars": 40_000}},
                    {"kind": "rnn", "cell": "lstm", "variant": "no_peepholes", "hidden": 64,
                     "embed_dim": 16}, training={"epochs": 2, "batch_size": 32})
    result, _, bundle = train(spec)
    unigram = bundle.extra["unigram_perplexity"]
    assert result["val/perplexity"] == pytest.approx(math.exp(result["val/loss"]))
    assert result["val/perplexity"] < 0.6 * unigram, (result["val/perplexity"], unigram)


@pytest.mark.slow
def test_the_captioner_spells_most_digits_right():
    spec = spec_for("captions", {"kind": "captioner", "hidden": 32},
                    training={"epochs": 6, "batch_size": 32})
    _, model, bundle = train(spec)
    words = model.caption(torch.as_tensor(bundle.x_val))
    vocab = bundle.extra["vocab"]
    truth = ["".join(vocab[i] for i in row if i > 1) for row in bundle.y_val]
    accuracy = np.mean([w == t for w, t in zip(words, truth, strict=True)])
    assert accuracy > 0.8, f"{accuracy:.3f} of the digits spelled right"


@pytest.mark.slow
def test_the_autoregressive_net_predicts_sine_better_than_the_last_value():
    spec = spec_for({"name": "sine", "params": {"n": 600}},
                    {"kind": "autoregressive", "channels": 16, "layers": 4},
                    optimizer={"name": "adam", "lr": 0.003},
                    training={"epochs": 4, "batch_size": 32})
    result, model, bundle = train(spec)
    last_value = float(((bundle.x_val - bundle.y_val) ** 2).mean())
    assert result["val/mse"] < 0.5 * last_value, (result["val/mse"], last_value)
    rollout = model.epoch_artifacts(1)["samples/epoch_001.txt"].splitlines()
    assert len(rollout) == 16 + 200 and all(math.isfinite(float(v)) for v in rollout)


# -- examples -------------------------------------------------------------------------------

ZOO2_EXAMPLES = sorted(p for p in EXAMPLES.glob("*.yaml")
                       if yaml.safe_load(p.read_text()).get("model", {}).get("kind")
                       in SEQUENCE_KINDS
                       or "sentiment" in p.name)


def test_the_sequence_examples_pass_the_dry_run():
    assert len(ZOO2_EXAMPLES) >= 5
    started = time.perf_counter()
    for path in ZOO2_EXAMPLES:
        text = path.read_text()
        assert text.startswith("#") and "MLflow" in text, f"{path.name} needs its comment"
        check_experiment(ExperimentSpec.model_validate(yaml.safe_load(text)), [])
    assert time.perf_counter() - started < 60


def test_a_data_shape_without_sequences_names_the_fix():
    shape = DataShape((1, 8, 8), 10, "classification", {})
    with pytest.raises(ModelConfigError, match="choose a sequence dataset"):
        build_model(ExperimentSpec.model_validate(
            {"data": {"name": "digits"}, "model": {"kind": "rnn"}}).model, shape)


def test_a_diverged_language_model_samples_no_text_instead_of_crashing():
    """NaN weights (a diverged run's end) leave no distribution to draw from: the sample stops
    at the prompt rather than raising from torch.multinomial in the run's report."""
    model, bundle = _built("text", {"kind": "transformer", "width": 8, "heads": 2,
                                    "layers": 1})
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(float("nan"))
    prompt = torch.zeros(1, model.data.length, dtype=torch.long)
    assert torch.equal(model.generate(prompt, 5), prompt)
    assert model.epoch_artifacts(0) is not None  # the per-epoch sample is drawn the same way
