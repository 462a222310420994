"""The contract every other part reads: the experiment spec, the sweep spec, the errors a spec
gets at submission, which settings apply to which model, and the MLflow names. It imports only
`models` (the model configs are part of the spec), so the API, the workers and the store can
all depend on it."""
