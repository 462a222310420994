"""The regularizers the spec switches on, each a loop callback in a module of its own:
input corruption (bit flips, Gaussian noise), weight and activity penalties, gradient
clipping, weight constraints and early stopping.

A module declares its `REGULARIZER` (the spec fields that switch it on or that it reads as
settings, and how its callback is built), and `registry.REGULARIZERS` lists them in the order
their hooks run. The loop knows none of them: it fires the events of `Callback`. Adding one is
its module, its line in the registry, its spec field and its applicability entry
(`services.contract.applicability`).
"""
