"""Every spec in examples/ is valid and passes the submission-time dry run, and says in a
leading comment what to look at in MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from models.registry import MODEL_KINDS
from services.contract.spec import ExperimentSpec
from services.contract.sweep_spec import SweepSpec
from workers.submission.pipeline import check_experiment

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))


def test_every_model_kind_has_an_example():
    """A kind without a runnable example is a kind nobody has tried from the outside."""
    used = set()
    for path in EXAMPLES:
        document = yaml.safe_load(path.read_text())
        used.add(document.get("base", document)["model"]["kind"])
    assert {family.kind for family in MODEL_KINDS} - used == set()


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_is_a_valid_spec_that_says_what_to_look_at(path: Path):
    text = path.read_text()
    assert text.startswith("#"), f"{path.name} needs a leading comment: what to look at"
    document = yaml.safe_load(text)
    # A sweep file validates its base experiment here; its trials are validated as they run.
    experiment = document["base"] if "space" in document else document
    spec = ExperimentSpec.model_validate(experiment)
    dry_run = check_experiment(spec, [str(path.parents[1] / "data")])
    assert dry_run.param_count > 0


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_states_its_claim_as_expect(path: Path):
    """The claim of the leading comment, checkable: `layerwise check examples/*.yaml`. The
    expectations parse (the spec models), and name metrics the run logs (the dry run above)."""
    document = yaml.safe_load(path.read_text())
    parsed = (SweepSpec if "space" in document else ExperimentSpec).model_validate(document)
    assert parsed.expect, f"{path.name} needs `expect:` stating its claim"
