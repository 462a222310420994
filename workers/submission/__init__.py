"""Submission-time checks that run worker code in the API process: one path for experiments and
sweeps (`pipeline`: static checks, caps, resources, then the dry run of an experiment's data and
model, and of a sweep's base and space)."""
