"""The training engine: the one loop, its callbacks, per-layer norms, optimizers, checkpoints,
random-generator state and the data-parallel collectives."""
