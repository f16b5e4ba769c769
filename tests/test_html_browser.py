"""The HTML index in a real headless browser (Chromium + chromedriver from Debian's packages, driven by selenium):
every link resolves to a local file, every figure renders (naturalWidth > 0), and a screenshot is saved.
Skips, saying why, where no browser is installed (`.ci/run` installs it with apt-get when it can)."""

import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from test_html_export import make_study

from mer_core import html_export

ROOT = Path(__file__).resolve().parents[1]
BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    BROWSER is None or DRIVER is None,
    reason="no headless browser: install Chromium and its driver (apt-get install -y chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


def check_page(driver, index: Path, screenshot: Path) -> dict:
    """Load `index`; assert every link is a local file that exists and every <img> decoded; save a screenshot."""
    driver.get(index.resolve().as_uri())
    hrefs = driver.execute_script("return Array.from(document.querySelectorAll('a[href]'), a => a.href)")
    images = driver.execute_script(
        "return Array.from(document.images, i => [i.src, i.complete, i.naturalWidth, i.naturalHeight])"
    )
    local = [Path(unquote(urlparse(h).path)) for h in hrefs if urlparse(h).scheme == "file"]
    assert local == [Path(unquote(urlparse(h).path)) for h in hrefs], f"links leaving the page's folder tree: {hrefs}"
    assert [p for p in local if not p.is_file()] == [], "links that do not resolve"
    assert [src for src, complete, width, height in images if not (complete and width > 0 and height > 0)] == [], (
        "figures that do not render"
    )
    assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 0
    return {"links": local, "images": images}


def test_index_in_browser_links_resolve_and_figures_render(browser, tmp_path):
    study = make_study(tmp_path / "reports")
    index = html_export.export_site(
        study / "notebooks", study / "tables", study / "figures", study / "html", "The study"
    )
    seen = check_page(browser, index, tmp_path / "index.png")
    assert len(seen["images"]) == 2  # robustness_wa.svg, training_curves.png
    assert {p.name for p in seen["links"]} >= {
        "01_prepare_data.html",
        "02_train-mmin.html",
        "conditions_ua.csv",
        "robustness_wa.svg",
        "robustness_wa.png",
        "training_curves.png",
    }
    page = seen["links"][0]
    browser.get(page.as_uri())
    assert "Notebook 01_prepare_data" in browser.page_source
    assert browser.execute_script("return Array.from(document.images, i => i.naturalWidth)") == [1]


@pytest.mark.parametrize("index", ["reports/html/index.html", "reports/html/extended/index.html"])
def test_committed_index_in_browser(browser, index, tmp_path):
    """The pipeline's own pages (the `html` stages), when they have been written."""
    if not (ROOT / index).is_file():
        pytest.skip(f"{index} is not written yet: run `dvc repro html` (and extended/dvc.yaml's html)")
    seen = check_page(browser, ROOT / index, tmp_path / "index.png")
    assert seen["images"] and any(p.suffix == ".html" for p in seen["links"])
