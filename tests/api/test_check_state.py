"""`check --failed`'s record of the last run: a run replaces it, a rerun updates it, one file
is one entry however it is written, and it stays bounded."""

from __future__ import annotations

import pytest

from api.cli import check_state


def test_a_rerun_updates_the_last_run_and_a_new_run_replaces_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_state.write({"a.yaml": {"outcome": "held"}, "b.yaml": {"outcome": "failed"},
                       "c.yaml": {"outcome": "timed out"}}, merge=False)
    assert check_state.not_held(check_state.read()) == ["b.yaml", "c.yaml"]
    check_state.write({check_state.key("./b.yaml"): {"outcome": "held"}}, merge=True)
    assert check_state.not_held(check_state.read()) == ["c.yaml"]
    assert check_state.key(str(tmp_path / "c.yaml")) == "c.yaml"
    check_state.write({"d.yaml": {"outcome": "refused"}}, merge=False)
    assert list(check_state.read()) == ["d.yaml"]


def test_no_last_run_says_what_to_do_and_the_record_is_bounded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(check_state.NoLastRun, match="run `layerwise check FILE...` first"):
        check_state.read()
    monkeypatch.setattr(check_state, "MAX_FILES", 3)
    check_state.write({f"{n}.yaml": {"outcome": "held" if n % 2 else "failed"}
                       for n in range(6)}, merge=False)
    kept = check_state.read()
    assert sorted(kept) == ["0.yaml", "2.yaml", "4.yaml"]  # what needs a rerun is kept first
