"""MLflow I/O: one run's params, tags and artifacts, buffered metric logging and how the
metrics reach MLflow, the model's after-training report, and reading runs back to compare."""
