"""User data files cannot exhaust the process that reads them: an .npz is sized from its
headers before anything is loaded, .csv/.txt from the disk, and a bad data.path is a DataError
on ("data", "path") that shows nothing of the server's data roots."""

from __future__ import annotations

import io
import os
import tracemalloc
import zipfile

import numpy as np
import pytest

from services.contract.sections import DataSpec
from services.settings import Settings
from workers.data import files, load_data
from workers.data.bundle import DataError
from workers.data.files import load_file, read_text, resolve_data_path

MB = 1_000_000


def _peak_bytes_while(call) -> int:
    """Peak of Python and numpy allocations (numpy reports its array buffers to tracemalloc)
    during `call`. The process's peak RSS is a high-water mark that earlier tests may already
    have raised, so it could not show growth here; this can."""
    tracemalloc.start()
    try:
        call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def _refusal(call) -> DataError:
    with pytest.raises(DataError) as info:
        call()
    return info.value


@pytest.fixture(scope="module")
def bomb_root(tmp_path_factory: pytest.TempPathFactory):
    """A data root holding bomb.npz: 200 MB of zeros declared (four times the allowed growth
    below; more only costs the test time to compress), 0.2 MB on disk."""
    root = tmp_path_factory.mktemp("bomb")
    np.savez_compressed(root / "bomb.npz", x=np.zeros(25_000_000), y=np.zeros(3))
    assert (root / "bomb.npz").stat().st_size < MB
    return root


def test_a_zip_bomb_npz_is_refused_from_its_headers(bomb_root):
    path = bomb_root / "bomb.npz"
    errors = []
    peak = _peak_bytes_while(lambda: errors.append(_refusal(
        lambda: load_file(path, max_bytes=100 * MB))))
    assert peak < 50 * MB, f"refusing allocated {peak / MB:.0f} MB"
    assert errors[0].loc == ("data", "path")
    assert "200,000," in errors[0].msg and "LAYERWISE_MAX_DATA_BYTES" in errors[0].msg


def test_load_data_applies_the_default_cap(bomb_root, monkeypatch):
    assert files.DEFAULT_MAX_BYTES == Settings.model_fields["max_data_bytes"].default
    monkeypatch.setattr(files, "DEFAULT_MAX_BYTES", 100 * MB)
    error = _refusal(lambda: load_data(DataSpec(source="file", path="bomb.npz"), "auto",
                                       [str(bomb_root)]))
    assert error.loc == ("data", "path") and "over the cap of 100,000,000" in error.msg


def test_the_cap_counts_arrays_and_headers_uncompressed(tmp_path):
    x, y = np.ones((100, 4), np.float32), np.arange(100) % 3
    np.savez_compressed(tmp_path / "ok.npz", x=x, y=y)
    arrays = load_file(tmp_path / "ok.npz", max_bytes=x.nbytes + y.nbytes + 256)
    assert np.array_equal(arrays["x"], x) and np.array_equal(arrays["y"], y)
    # the .npy headers count too, so exactly the data's bytes is over the cap
    with pytest.raises(DataError, match="over the cap"):
        load_file(tmp_path / "ok.npz", max_bytes=x.nbytes + y.nbytes)


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([[1.0], [2.0]], dtype=object), y=np.zeros(2))
    error = _refusal(lambda: load_file(tmp_path / "obj.npz"))
    assert error.loc == ("data", "path") and "Python objects" in error.msg


def test_a_header_that_disagrees_with_the_zip_size_is_refused(tmp_path):
    """A hand-made member declares 800 MB in its .npy header but holds 80 bytes: loading it
    would allocate the declared size before finding the data short."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (100_000_000,)})
    with zipfile.ZipFile(tmp_path / "liar.npz", "w") as archive:
        archive.writestr("x.npy", header.getvalue() + bytes(80))
        archive.writestr("y.npy", header.getvalue() + bytes(80))
    errors = []
    peak = _peak_bytes_while(lambda: errors.append(_refusal(
        lambda: load_file(tmp_path / "liar.npz"))))
    assert peak < 50 * MB and "declares 800,000,128 bytes" in errors[0].msg


def test_csv_and_txt_are_capped_by_their_size_on_disk(tmp_path):
    (tmp_path / "t.csv").write_text("a,target\n" + "".join(f"{i},{i % 2}\n" for i in range(200)))
    (tmp_path / "t.txt").write_text("hello world " * 200)
    for path, read in ((tmp_path / "t.csv", load_file), (tmp_path / "t.txt", read_text)):
        size = path.stat().st_size
        assert read(path, max_bytes=size) is not None
        with pytest.raises(DataError, match=f"is {size:,} bytes, over the cap") as info:
            read(path, max_bytes=size - 1)
        assert info.value.loc == ("data", "path")


def _bad_paths(root, outside):
    return {
        "nul": ("set\0.npz", "NUL byte"),
        "long": ("a/" * 2_500 + "set.npz", "over the limit of 1,024"),
        "absolute": (str(root / "set.npz"), "absolute"),
        "dotdot": ("../" + outside.name + "/secret.npz", "outside the data roots"),
        "long component": ("n" * 300 + ".npz", "cannot be opened"),
        "unencodable": ("\ud800.npz", "cannot be opened"),
    }


@pytest.mark.parametrize("case", ["nul", "long", "absolute", "dotdot", "long component",
                                  "unencodable"])
def test_bad_paths_are_refused_without_showing_the_root(tmp_path, case):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    np.savez(root / "set.npz", x=np.zeros((5, 2)), y=np.zeros(5))
    np.savez(outside / "secret.npz", x=np.zeros((5, 2)), y=np.zeros(5))
    path, message = _bad_paths(root, outside)[case]
    error = _refusal(lambda: resolve_data_path(path, [str(root)]))
    assert error.loc == ("data", "path") and message in error.msg
    for secret in (str(tmp_path), os.path.realpath(tmp_path)):
        assert secret not in error.msg
    assert "LAYERWISE_DATA_ROOTS" in error.msg  # the fix: where paths are read from


def test_a_relative_path_inside_the_root_still_resolves(tmp_path):
    (tmp_path / "sets").mkdir()
    np.savez(tmp_path / "sets" / "a.npz", x=np.zeros((5, 2)), y=np.zeros(5))
    resolved = resolve_data_path("sets/../sets/a.npz", [str(tmp_path)])
    assert resolved == (tmp_path / "sets" / "a.npz").resolve()


@pytest.mark.parametrize("path", ["x" * 5_000, "n" * 300 + ".npz"])
def test_the_dry_run_at_submission_refuses_them_by_field(tmp_path, path):
    """Paths the filesystem refuses were 500s from the API, with the data root in the
    detail."""
    from services.contract.spec import ExperimentSpec
    from services.contract.spec_errors import SpecInvalid
    from tests.utils.specs import mlp_spec
    from workers.submission.pipeline import check_experiment

    spec = ExperimentSpec.model_validate(mlp_spec(data={"source": "file", "name": None,
                                                        "path": path}))
    with pytest.raises(SpecInvalid) as info:
        check_experiment(spec, [str(tmp_path)])
    [error] = info.value.errors
    assert tuple(error.loc) == ("data", "path") and str(tmp_path) not in error.msg
