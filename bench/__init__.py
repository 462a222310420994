"""Benchmarks: Layerwise against plain-PyTorch, Ray Jobs and Ray Tune baselines, as ratios
measured side by side in one run (`make bench`, or `python -m bench [--tiny]`)."""
