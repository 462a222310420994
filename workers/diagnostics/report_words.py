"""The words of `report.html`: what each verdict means, what each baseline predicts, the
diagnosis's evidence keys and the plots, for a person who has not read the code. A kind that
learns without gradients (Hopfield storage, an RBM's contrastive divergence) is judged by its own
checks (workers/diagnostics/verdicts/energy.py), and its verdicts are said in their words."""

from __future__ import annotations

import math
from collections.abc import Mapping

# What each verdict means, in one sentence a person who has not read the code understands.
MEANINGS = {
    "healthy": "No problem was found: gradients reach every layer at a similar scale and the "
               "loss went down.",
    "not_learning": "The network is not learning: its loss stays near the baseline's, a "
                    "guess that ignores the inputs.",
    "vanishing": "Gradients vanish: the layers near the input receive gradients far smaller "
                 "than the layers near the output, so they barely change.",
    "exploding": "Gradients explode: their norm grows by orders of magnitude (or stops being "
                 "finite), so the steps overshoot.",
    "dead_units": "ReLU units have died: they output zero for every example, so no gradient "
                  "flows through them and they cannot recover.",
    "saturated": "Activations are saturated: sigmoid-like units sit on their flat ends, where "
                 "the derivative is nearly zero, so little gradient passes through them.",
    "symmetric": "Units are symmetric: units of a layer compute the same function, so they "
                 "get the same gradient and stay copies of each other.",
    "unstable": "Training is unstable: the loss jumps up and down instead of falling "
                "steadily, usually a learning rate that is too large.",
    "slow": "Training is slow: the loss falls, but the steps are so small next to the "
            "weights that it would need far more of them.",
    "overfitting": "The network overfits: the training loss keeps falling while the "
                   "validation loss rises; it learns the training examples by heart.",
    "diverged": "Training diverged: the loss became infinite or not a number.",
    "no_gradients": "No gradients were measured: this model learns without backpropagation "
                    "or the gradient norms were off, so gradient checks do not apply.",
    "bad_data": "The data is at fault: the training split shows a problem (its scale, its "
                "labels, values that are not numbers, rows shared with validation) that no "
                "training setting fixes; standardize it (data.standardize) or fix the file.",
}
# A finding whose evidence names its own mechanism: (verdict, evidence key, value) -> meaning.
PHASE_MEANINGS = {
    ("vanishing", "phase", "through_time"):
        "Gradients vanish through time: the error at the sequence's last step barely reaches "
        "its first steps, so the recurrent net cannot learn what lies further back (a gated "
        "cell, LSTM or GRU, carries it).",
}
NEEDS_MORE_EPOCHS = ("Still improving at a steady pace at its end: about {n} more epochs would "
                     "close 90% of the way to a perfect score (training.epochs).")


# The verdicts of a kind without gradients: {checks} is what its own checks measured.
WITHOUT_GRADIENTS = {
    "healthy": "No problem was found by this kind's own checks (it learns without gradients, "
               "so the gradient and unit checks do not apply): {checks}.",
    # a finding under the verdict: its evidence, listed below it, is what the checks measured
    "no_gradients": "This kind learns without gradients (Hebbian storage or contrastive "
                    "divergence), so the gradient and unit checks do not apply; its own checks "
                    "measured what follows.",
}
# The thresholds (DiagnosisThresholds' names start so) of the checks that do not judge a kind
# without gradients, not shown in its report: the gradient and unit checks, and the curve
# checks the engine drops for it (it keeps not_learning; energy.py reuses unstable_rise).
NOT_OWN_THRESHOLDS = ("vanishing", "exploding", "dead", "saturat", "symmetric", "slow",
                      "overfitting", "spike", "unstable_val", "unstable_rise_fraction")
# A finding of those checks, told by the evidence key it carries: (verdict, key) -> meaning.
OWN_CHECK_MEANINGS = {
    ("unstable", "energy_by_epoch"):
        "The recalled states' energy rose over the epochs: storing patterns should deepen "
        "their minima, so recall is getting worse (too many patterns, or patterns too alike).",
    ("diverged", "energy"): "The recalled states' energy became infinite or not a number.",
    ("diverged", "free_energy"):
        "The RBM's free energy became infinite or not a number: its contrastive divergence "
        "steps are too large.",
    ("not_learning", "reconstruction_error_by_epoch"):
        "The RBM is not learning: its reconstruction error did not fall over the epochs.",
}


def meaning(verdict: str, evidence: object, *, own_checks: object = None) -> str:
    """What `verdict` means, in the words of its mechanism when its evidence names one; with
    `own_checks` (a kind without gradients: the `no_gradients` finding's evidence), in the
    words of what those checks measured."""
    if isinstance(evidence, dict):
        for (name, key, value), words in PHASE_MEANINGS.items():
            if name == verdict and evidence.get(key) == value:
                return words
        for (name, key), words in OWN_CHECK_MEANINGS.items():
            if own_checks is not None and name == verdict and key in evidence:
                return words
    if isinstance(own_checks, Mapping) and verdict in WITHOUT_GRADIENTS:
        return WITHOUT_GRADIENTS[verdict].format(checks=checks_said(own_checks))
    return MEANINGS.get(verdict, "")


def checks_said(own: Mapping[str, object]) -> str:
    """What a kind without gradients' own checks measured, in one clause per check: recall,
    energy and capacity (Hopfield), reconstruction and free energy (RBM)."""
    said = []
    recall = own.get("recall_accuracy")
    # An RBM is judged by its reconstruction, not by exact recall (energy.py): not said for it.
    if isinstance(recall, int | float) and "reconstruction_error_by_epoch" not in own:
        said.append(f"recall restored {recall:.0%} of the validation patterns exactly")
    energy = _finite(own.get("energy_by_epoch"))
    if energy:
        trend = "did not rise" if own.get("energy_decreasing") else "rose"
        said.append(f"the recalled states' mean energy {trend} over the epochs "
                    f"({energy[0]:.4g} to {energy[-1]:.4g})")
    load, capacity = own.get("load"), own.get("capacity")
    if isinstance(load, int | float) and isinstance(capacity, int | float):
        where = "above" if own.get("over_capacity") else "within"
        said.append(f"the capacity check: {load:.3g} patterns stored per unit, {where} the "
                    f"~{capacity:g} per unit Hebbian storage recalls reliably")
    recon = _finite(own.get("reconstruction_error_by_epoch"))
    if recon:
        trend = "fell" if own.get("reconstruction_improving") else "did not fall"
        said.append(f"the reconstruction error {trend} over the epochs "
                    f"({recon[0]:.4g} to {recon[-1]:.4g})")
    free = own.get("free_energy_by_epoch")
    if isinstance(free, list) and free:
        finite = len(_finite(free)) == len(free)
        said.append("the free energy stayed finite" if finite else
                    "the free energy stopped being finite")
    return "; ".join(said) or "nothing (no recall, energy or reconstruction was recorded)"


def _finite(values: object) -> list[float]:
    if not isinstance(values, list):
        return []
    return [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v)]


# Each plot's caption: what it shows and what to look at. The plots a model draws of itself
# (model.after_training) are listed too; a plot not listed is captioned with its name.
PLOT_CAPTIONS = {
    "grad_norm_heatmap": "gradient norm per layer (rows, input at the bottom) by step, on a log "
                         "colour scale: a dark band at the bottom that stays dark is gradients "
                         "vanishing before they reach the first layers; bright rows growing "
                         "brighter are gradients exploding",
    "update_norms": "each layer's update norm by step, and its ratio to the layer's weight "
                    "norm: about 1e-3 is healthy; far below it a layer barely moves (slow), "
                    "far above it the weights are rewritten every step (unstable)",
    "loss_accuracy": "training and validation loss (and accuracy) by epoch: both falling is "
                     "learning; training falling while validation rises is overfitting; flat "
                     "at the baseline is not learning",
    "activation_stats": "per layer, the share of units that are dead (ReLU never on) or "
                        "saturated (sigmoid, tanh at their flat ends) by step: a share that "
                        "climbs toward 1 is the layer going silent",
    "pretraining": "each layer-wise pretraining stage's loss by step: each should fall before "
                   "the next stage starts",
    "fit": "the trained net's function over its 1-D input with the data, and beside it the "
           "hidden units' outputs it sums: where the curve leaves the points it did not fit",
    "sensitivity": "which inputs the prediction depends on most (mean gradient magnitude per "
                   "input): drawn as a picture for images",
    "adversarial": "accuracy as the FGSM step grows, and the sizes of the smallest changes "
                   "(DeepFool) that flip a prediction: a steep fall at a small step, or small "
                   "changes, is a brittle model",
    "adversarial_examples": "each input, DeepFool's smallest change that flips its prediction "
                            "and the changed input, titled with the classes before and after: "
                            "a change nobody would notice is a brittle model",
    "bptt_norms": "the gradient of the loss reaching each time step, from the last back to the "
                  "first: a fall by orders of magnitude is vanishing through time (an LSTM or "
                  "GRU keeps it)",
    "hopfield_recall": "recall: each stored pattern, its corrupted copy and the state recall "
                       "restored",
    "hopfield_energy": "energy: the recalled states' mean energy at each update (each update "
                       "can only lower it)",
    "hopfield_capacity": "capacity: recall accuracy of random patterns as the number stored "
                         "grows (Hebbian storage recalls about 0.138 per unit)",
    "rbm_gibbs_samples": "samples of what the RBM learned (Gibbs chains from random states)",
    "rbm_filters": "the first hidden units' weights",
}


BASELINES = {"class_prior": "the classes' frequencies, the same for every example",
             "unigram": "the tokens' frequencies, the same at every position",
             "mean_predictor": "the mean target", "mean_input": "the mean input",
             "corrupted_input": "the corrupted input, unchanged"}
# The evidence's keys in words; a key not listed is shown with its underscores as spaces.
EVIDENCE = {
    "metric": "metric judged", "value": "its final value",
    "progress": "share of the way from the baseline to a perfect score",
    "final": "at the end", "by_epoch": "by epoch", "pace_per_epoch": "progress per epoch",
    "epochs_to_90_percent": "epochs it would need to get 90% of the way",
    "rise_share": "share of epochs where the loss rose",
    "spike_epochs": "epochs where the loss jumped", "best_epoch": "best epoch",
    "val_loss_rise": "rise of the validation loss since its best",
    "gap_at_best": "validation minus training loss at the best epoch",
    "gap_at_end": "validation minus training loss at the end",
    "first_last_grad_ratio": "first layer's gradient norm / last layer's (median over steps)",
    "first_last_grad_ratio_start": "the same ratio early in training",
    "phase": "when", "modules": "per activation module",
    "weight_row_spread": "spread between the units' weights, per layer",
    "dead_fraction": "share of ReLU units dead",
    "saturated_fraction": "share of sigmoid-like activations saturated",
    "update_weight_ratio_median": "median update norm / weight norm, per layer",
    "update_weight_ratio": "median update norm / weight norm (slow below 1e-3)",
    "through_time_ratio": "gradient reaching the first time step / the last's",
    "train_far_below_val": "training loss ended under half the validation loss",
    "train_loss_end": "training loss at the end (smoothed)",
    "val_loss_end": "validation loss at the end (smoothed)",
    "val_noise": "the validation loss's own noise (standard deviation)",
    "train_rises": "epochs where the training loss rose",
    "val_rise_share": "share of epochs where the validation loss rose",
    # the own checks of a kind without gradients (verdicts/energy.py)
    "own_checks": "this kind's own checks",
    "recall_accuracy": "share of validation patterns recalled exactly",
    "energy_by_epoch": "the recalled states' mean energy, by epoch",
    "energy_decreasing": "the energy did not rise",
    "load": "patterns stored per unit", "capacity": "patterns per unit Hebbian storage recalls",
    "over_capacity": "stored beyond that capacity",
    "reconstruction_error_by_epoch": "reconstruction error, by epoch",
    "reconstruction_improving": "the reconstruction error fell",
    "free_energy_by_epoch": "free energy, by epoch",
    "energy": "energy at the end", "free_energy": "free energy at the end",
}


# A layer-wise pretraining (the autoencoder kind's `pretraining`), by how its stages learn.
PRETRAINING = {
    "autoencoder": "The encoder was pretrained one layer at a time before fine-tuning: each "
                   "layer, with a temporary decoder, learned by gradient descent to reconstruct "
                   "its input. Each stage's own check is its reconstruction error, which must "
                   "fall.",
    "rbm": "The encoder was pretrained one layer at a time before fine-tuning: each layer was "
           "an RBM trained by contrastive divergence, without gradients (the gradient checks "
           "judge the fine-tuning only). Each stage's own check is its reconstruction error, "
           "which must fall.",
    "supervised": "The encoder was pretrained one layer at a time before fine-tuning: each "
                  "layer, with a temporary output layer, learned the targets. Each stage's own "
                  "check is its loss, which must fall.",
}


def stage_said(stage: Mapping[str, object], method: str) -> str:
    """`layer 0: the reconstruction error fell over its 5 epochs (0.21 to 0.08)`."""
    what = "loss" if method == "supervised" else "reconstruction error"
    values = stage.get("loss_by_epoch")
    values = values if isinstance(values, list) else []
    finite = _finite(values)
    fell = stage.get("fell")
    if len(finite) < len(values):
        trend = "stopped being finite"
    elif fell is None:
        trend = "was measured over one epoch only"
    else:
        trend = "fell" if fell else "did not fall"
    span = f" ({finite[0]:.4g} to {finite[-1]:.4g})" if finite else ""
    epochs = f"its {len(values)} epochs" if len(values) != 1 else "its epoch"
    return f"layer {stage.get('layer')}: the {what} {trend} over {epochs}{span}"
