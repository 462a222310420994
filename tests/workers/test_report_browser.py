"""`report.html` in a real browser: Debian's chromium, headless, driven by Selenium through
Debian's chromedriver (nothing is downloaded at run time). `.ci/run` installs both."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.browser import NEEDS_CHROMIUM, headless_chromium
from tests.workers.test_report import DIAGNOSIS, METRICS, SPEC, _plots
from workers.diagnostics.report import render_report

pytestmark = [pytest.mark.slow, NEEDS_CHROMIUM]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with headless_chromium(browser_log=True) as driver:
        yield driver


def test_the_report_renders_with_every_image_and_no_error_or_request(browser, tmp_path: Path):
    page = render_report(SPEC, METRICS, DIAGNOSIS, _plots())
    assert not re.search(r"https?://", page)  # nothing in the page points off it
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    browser.get(path.as_uri())
    assert browser.find_element("id", "verdict").text == "saturated"
    body = browser.find_element("tag name", "body").text
    assert "model.activation: sigmoid -> relu" in body
    images = browser.execute_script(
        "return Array.from(document.images, i => [i.alt, i.complete, i.naturalWidth]);")
    assert [alt for alt, _, _ in images] == ["grad_norm_heatmap", "activation_stats"]
    assert all(complete and width > 0 for _, complete, width in images), images
    # Every resource the page fetched (data: URIs are not fetched) and every console message
    # of level error: a blocked request would show in both (the page's CSP forbids them).
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);")
    assert fetched == []
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_a_page_that_reaches_out_is_caught(browser, tmp_path: Path):
    """The checks above can fail: an external image is blocked and reported as an error."""
    page = render_report(SPEC, METRICS, DIAGNOSIS, {}).replace(
        "</body>", '<img alt="x" src="http://127.0.0.1:9/x.png"></body>')
    path = tmp_path / "bad.html"
    path.write_text(page, encoding="utf-8")
    browser.get(path.as_uri())
    loaded = browser.execute_script("return document.images[0].naturalWidth;")
    assert loaded == 0
    assert any(e["level"] == "SEVERE" for e in browser.get_log("browser"))


def test_a_report_of_a_kind_without_gradients_shows_its_own_plot(browser, tmp_path: Path):
    from models.report import Curve
    from workers.diagnostics import training_plots
    from workers.tracking.model_report import plot_curve

    energy = plot_curve("hopfield/energy", Curve([0, 1, 2], [-60.0, -62.0, -63.0],
                                                 xlabel="unit update", ylabel="mean energy E"))
    diagnosis = {"verdict": "healthy", "findings": [{"verdict": "no_gradients", "evidence": {
        "recall_accuracy": 1.0, "energy_by_epoch": [-60.0, -63.0], "energy_decreasing": True,
        "load": 0.06, "capacity": 0.138, "over_capacity": False}, "layers": ["weight"]}]}
    page = render_report({"name": "hopfield", "model": {"kind": "hopfield"},
                          "optimizer": {"name": "sgd", "lr": 0.1}}, {}, diagnosis,
                         {"hopfield_energy": training_plots.png_bytes(energy)})
    path = tmp_path / "hopfield.html"
    path.write_text(page, encoding="utf-8")
    browser.get(path.as_uri())
    assert browser.find_element("id", "verdict").text == "healthy"
    body = browser.find_element("tag name", "body").text
    assert "recall restored 100% of the validation patterns exactly" in body
    assert "optimizer." not in body
    images = browser.execute_script(
        "return Array.from(document.images, i => [i.alt, i.complete, i.naturalWidth]);")
    assert [alt for alt, _, _ in images] == ["hopfield_energy"]
    assert all(complete and width > 0 for _, complete, width in images), images
