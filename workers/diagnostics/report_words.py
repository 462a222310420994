"""The words of `report.html`: what each verdict means, what each baseline predicts, and the
diagnosis's evidence keys, for a person who has not read the code."""

from __future__ import annotations

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


def meaning(verdict: str, evidence: object) -> str:
    """What `verdict` means, in the words of its mechanism when its evidence names one."""
    if isinstance(evidence, dict):
        for (name, key, value), words in PHASE_MEANINGS.items():
            if name == verdict and evidence.get(key) == value:
                return words
    return MEANINGS.get(verdict, "")


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
}
