"""The training engine: the one loop and its callback events, the spec's regularizers as
callbacks, per-layer norms, evaluation, optimizers, checkpoints, random-generator state and the
data-parallel collectives."""
