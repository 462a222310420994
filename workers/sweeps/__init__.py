"""Sweeps on Ray Tune: the driver, one trial's run, warm trial workers, the MLflow parent run
with its summary and plots."""
