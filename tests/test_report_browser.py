"""The report as a person sees it: opened in headless Chromium (WebDriver), every figure decoded
and laid out, no console errors.

CI installs Debian's ``chromium`` and ``chromium-driver`` (Makefile ``system-deps``), so there the
test runs; it is skipped only on a machine without them outside CI, never in CI.
"""

import os
import shutil

import pytest
from pynwb import NWBHDF5IO

from mimic_nwb.cli import main
from ndx_mimic.testing.mock import mock_session

HAVE_BROWSER = shutil.which("chromium") is not None and shutil.which("chromedriver") is not None
pytestmark = pytest.mark.skipif(
    not HAVE_BROWSER and not os.environ.get("CI"),
    reason="chromium and chromium-driver are not installed (Debian: apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    session = folder / "mock.nwb"
    with NWBHDF5IO(str(session), "w") as io_:
        io_.write(mock_session())
    out = folder / "report.html"
    assert main(["report", str(session), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={tmp_path_factory.mktemp('profile')}",
        "--window-size=1200,3000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def test_every_figure_renders_without_console_errors(report_page, browser):
    browser.get(report_page.resolve().as_uri())
    figures = browser.execute_script(
        "return Array.from(document.images).map(img => ({src: img.src.slice(0, 30), complete: img.complete,"
        " width: img.naturalWidth, height: img.naturalHeight, shown: img.getBoundingClientRect().width}));"
    )
    assert len(figures) >= 8, figures  # keypoints, stac, rollouts, activations, 2 encoding, 2 rsa
    for figure in figures:
        assert figure["src"].startswith("data:image/png;base64"), figure
        assert figure["complete"] and figure["width"] > 300 and figure["height"] > 100, figure
        assert figure["shown"] > 100, figure  # laid out on the page, not hidden
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    sections = browser.execute_script("return Array.from(document.querySelectorAll('h2')).map(h => h.textContent);")
    assert len(sections) >= 6, sections
