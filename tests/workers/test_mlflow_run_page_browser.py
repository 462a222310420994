"""A run's page in MLflow's own UI, in a real browser: Debian's chromium, headless, driven by
Selenium through Debian's chromedriver, against a real `mlflow server` a tiny run logged to.
The model-training view, the norm pictures as the first section of its charts, loaded, and
the report one click from the run's description. `.ci/run` installs chromium."""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.utils.browser import NEEDS_CHROMIUM, headless_chromium
from tests.utils.mlflow_server import start_mlflow_server, stop_mlflow_server
from tests.utils.server import free_port
from tests.utils.specs import mlp_spec
from tests.utils.waiting import wait_until
from workers.run import WorkerSettings, run_experiment
from workers.tracking.experiments import run_page_path

pytestmark = [pytest.mark.e2e, pytest.mark.slow, NEEDS_CHROMIUM]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def served_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A vanishing sigmoid net's run, logged through a real `mlflow server`."""
    root = tmp_path_factory.mktemp("mlflow-ui")
    port = free_port()
    server = start_mlflow_server(f"sqlite:///{root / 'mlflow.db'}", port, root)
    try:
        url = f"http://127.0.0.1:{port}"
        reports: list[dict[str, Any]] = []
        run_experiment("job-ui", mlp_spec(
            name="deep-sigmoid", model={"hidden": [32] * 5, "activation": "sigmoid"},
            optimizer={"name": "sgd", "lr": 0.05}, training={"epochs": 3}),
            WorkerSettings(tracking_uri=url, home=str(root / "home"), data_roots=[]),
            reports.append)
        ids = next(r for r in reports if "mlflow_run_id" in r)
        yield {"url": url, "run": ids["mlflow_run_id"],
               "experiment": ids["mlflow_experiment_id"]}
    finally:
        stop_mlflow_server(server)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium("--window-size=1600,1200") as driver:
        driver.set_script_timeout(60)
        yield driver


def _page(run: dict[str, str], tab: str = "") -> str:
    return f"{run['url']}/{run_page_path(run['experiment'], run['run'], tab)}"


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (a local server)
        assert response.status == 200
        return bytes(response.read())


def test_the_run_charts_open_on_the_norm_pictures_and_they_load(browser, served_run):
    browser.get(_page(served_run, "model-metrics"))
    loaded = wait_until(lambda: [src for src, width in browser.execute_script(
        "return Array.from(document.images, i => [i.src, i.complete ? i.naturalWidth : 0]);")
        if "get-artifact" in src and width > 0], 90,
        "the norm pictures to load in the run's Model metrics charts")
    keys = {urllib.parse.unquote(src).split("path=images/", 1)[1].split("+", 1)[0]
            for src in loaded}
    assert keys == {"Across layers~grad_norm_heatmap", "Across layers~update_norms"}
    sections = browser.execute_script(
        "return Array.from(document.querySelectorAll('h1,h2,h3,h4,[role=button]'),"
        " e => e.innerText.split('\\n')[0]);")
    charts = [s for s in sections if s in ("Across layers", "activation", "grad_norm",
                                           "update_norm", "weight_norm")]
    assert charts[0] == "Across layers", sections
    body = browser.find_element("tag name", "body").text
    assert "Model training" in body and "Judges" not in body  # not the GenAI view's sidebar
    full = loaded[0].replace("%2Bcompressed.webp", ".png")  # the full-size image, as a PNG
    assert _get(full).startswith(PNG)


def test_the_runs_description_links_its_report(browser, served_run):
    browser.get(_page(served_run))
    link = wait_until(lambda: next((a for a in browser.find_elements("tag name", "a")
                                    if a.text == "report.html"), None), 60,
                      "the report.html link in the run's description")
    assert link.get_attribute("href").endswith(
        run_page_path(served_run["experiment"], served_run["run"], "artifacts/report.html"))
    report = _get(f"{served_run['url']}/get-artifact?path=report.html"
                  f"&run_uuid={served_run['run']}")
    assert b'id="verdict"' in report and b"vanishing" in report
