"""report.html in chromium (issue 24, point 5): at 1280 px nothing runs off the right edge, the
per-fold confusion matrices of a 10-fold run included, and every figure keeps its proportions."""

from __future__ import annotations

from e2e.test_bedside import CHROMIUM, pytestmark  # noqa: F401 (chromium needed; slow)
from evaluation.test_report import write_run
from neopain.evaluation.report import write_report
from neopain.runs import load_run


def test_a_ten_fold_report_fits_a_1280_px_screen(tmp_path):
    from playwright.sync_api import sync_playwright

    run = write_run(tmp_path / "run", folds=10)
    html = write_report(load_run(run))["html"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(html.resolve().as_uri())
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        shapes = page.eval_on_selector_all("figure img", """images => images.map(i => [
            i.getBoundingClientRect().right, i.width / i.height,
            i.naturalWidth / i.naturalHeight])""")
        browser.close()
    assert len(shapes) >= 5
    for right, shown, natural in shapes:
        assert right <= 1280 and abs(shown - natural) < 0.02 * natural, shapes
