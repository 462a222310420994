"""The contract (services/contract) and the model kinds it unions import no engine: a fresh
interpreter that imports every contract module has neither torch, MLflow, Ray nor scipy."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import services.contract

ENGINES = ("torch", "mlflow", "ray", "scipy", "matplotlib")


def test_importing_the_contract_pulls_in_no_engine():
    modules = [f"services.contract.{m.name}" for m in pkgutil.iter_modules(
        services.contract.__path__)] + ["models.registry"]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            f"print(','.join(m for m in {ENGINES!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert "services.contract.spec" in modules and len(modules) > 10
    assert out.stdout.strip() == "", f"the contract imports {out.stdout.strip()}"


def test_every_model_kind_has_a_builder_and_the_union_lists_each_kind_in_order():
    from typing import get_args

    from models.builders import BUILDERS
    from models.registry import MODEL_KINDS, AnyModelConfig

    union = get_args(get_args(AnyModelConfig)[0])
    assert [k.config_cls for k in MODEL_KINDS] == list(union)
    assert set(BUILDERS) == {k.kind for k in MODEL_KINDS}
