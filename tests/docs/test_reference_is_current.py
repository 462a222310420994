"""The generated pages in docs/ are what `make docs` writes from the code now: a field, a route
or a setting changed without regenerating them fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from api import reference

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("docs")
    reference.main([str(out)])
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(out.iterdir())}


def test_every_generated_page_is_committed_as_generated(generated):
    assert set(generated) == {"openapi.json", "rest-api.md", "settings.md", "spec-reference.md"}
    stale = [name for name, text in generated.items()
             if not (reference.DOCS / name).is_file()
             or (reference.DOCS / name).read_text(encoding="utf-8") != text]
    assert not stale, f"docs/{', docs/'.join(stale)} out of date: run make docs"


def test_the_pages_hold_no_machine_paths(generated, tmp_path):
    for name, text in generated.items():
        for local in (str(ROOT), str(tmp_path.parent), str(Path.home())):
            assert local not in text, f"{name} holds the machine path {local}"


def test_the_spec_reference_covers_every_kind_dataset_and_section(generated):
    from models.registry import MODEL_KINDS
    from services.contract.spec import ExperimentSpec
    from services.contract.sweep_spec import SweepSpec
    from workers.data import builtin_datasets

    page = generated["spec-reference.md"]
    for family in MODEL_KINDS:
        assert f"### `{family.kind}` ({family.config_cls.__name__})" in page
        assert all(f"| `{field}` |" in page for field in family.config_cls.model_fields)
    for dataset in builtin_datasets():
        assert f"### `{dataset.name}`" in page
    for spec in (ExperimentSpec, SweepSpec):
        assert all(f"| `{field}` |" in page for field in spec.model_fields)
    assert "`regularization.early_stopping` (EarlyStoppingSpec)" in page
    assert "`model.conv[]` (ConvLayerConfig)" in page
    assert "`scheduler` (name: asha) (AshaScheduler)" in page


def test_the_settings_page_names_every_setting_and_every_variable_the_code_reads(generated):
    import re

    from services.settings import Settings

    page = generated["settings.md"]
    for name in Settings.model_fields:
        assert f"`LAYERWISE_{name.upper()}`" in page
    read = {match for package in ("api", "services", "workers", "models", "bench")
            for path in (ROOT / package).rglob("*.py")
            for match in re.findall(r"\bLAYERWISE_[A-Z0-9_]+\b(?!\*)", path.read_text())}
    assert read, "no LAYERWISE_ variable found in the code"
    missing = sorted(name for name in read if f"`{name}`" not in page)
    assert not missing, f"read in the code, not in docs/settings.md: {missing}"


def test_the_rest_page_lists_every_route(generated):
    import json

    document = json.loads(generated["openapi.json"])
    page = generated["rest-api.md"]
    for path, operations in document["paths"].items():
        for method in operations:
            assert f"| {method.upper()} | `{path}` |" in page
